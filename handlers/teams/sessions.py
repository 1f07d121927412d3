"""A team's group conversation in Slack: Propose times (a supporter's form), Pick (the caller),
Reschedule and Call it off (anyone involved), Post this in the channel (the caller); and how
its messages are delivered and its reminder runs."""

from __future__ import annotations

from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot.infra.db import after_commit
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import TriggerExpired, retry_on_slack_trouble
from bot.requests import sessions as domain
from bot.requests.sessions import MAX_TIMES, SESSION_REMINDER, SessionError
from handlers.common.ids import Action, Block, Callback
from handlers.common.interaction import reply_privately, submitted, whole_number
from handlers.common.middleware import transactional
from handlers.common.services import Services
from handlers.teams.session_blocks import (
    picked_note,
    propose_modal,
    set_aside_note,
    version_of,
)
from handlers.teams.session_effects import register_effects

UNREADABLE_TIME = "Choose a date and a time with the picker."


def register(app: App) -> None:
    """Listen for the group conversation's buttons and its proposal form."""
    app.action(Action.PROPOSE_TIMES)(on_propose_times)
    app.view(Callback.PROPOSE_TIMES)(on_times_submitted)
    app.action(Action.PICK_TIME)(on_pick_time)
    app.action(Action.RESCHEDULE_SESSION)(on_reschedule)
    app.action(Action.CANCEL_SESSION)(on_call_off)
    app.action(Action.POST_INVITATION)(on_post_invitation)


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register how the group conversation's messages are delivered, and its reminder."""
    register_effects(jobs, services)

    def remind(ctx: JobContext) -> None:
        domain.reminder_due(ctx.session, int(ctx.payload["request_id"]),
                            int(ctx.payload["version"]), now=ctx.now)

    # However late the clock runs it, while the time is still ahead (reminder_due checks).
    jobs.register(JobKind(SESSION_REMINDER, retry_on_slack_trouble(remind), always_run=True))


# -- proposing ---------------------------------------------------------------------------------

@transactional
def on_propose_times(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                     context: dict[str, Any], db: Session) -> None:
    """A supporter opens the form to propose times, if they may."""
    ack()
    services: Services = context["services"]
    request_id = whole_number(action.get("value"))
    try:
        domain.check_can_propose(db, request_id, body["user"]["id"])
    except SessionError as error:
        reply_privately(respond, str(error))
        return
    assert request_id is not None
    try:
        services.messenger.open_view(body["trigger_id"], propose_modal(request_id))
    except TriggerExpired:
        reply_privately(respond, "Slack took too long to open the form. Please press Propose "
                                 "times again.")


def _time(values: dict[str, Any], number: int) -> datetime | None:
    """The time chosen in one picker (Slack sends UTC epoch seconds), or None if left empty."""
    value = submitted(values, f"{Block.SESSION_TIME}:{number}")
    if value is None:
        return None
    seconds = value if isinstance(value, int) and not isinstance(value, bool) \
        else whole_number(value)
    if seconds is None or not 0 <= seconds <= 2**31 - 1:
        raise SessionError(UNREADABLE_TIME, f"time:{number}")
    return datetime.fromtimestamp(seconds, UTC)


def _block_of(field: str | None) -> str:
    if field == "place":
        return Block.SESSION_PLACE
    if field and field.startswith("time:"):
        return f"{Block.SESSION_TIME}:{field.removeprefix('time:')}"
    return f"{Block.SESSION_TIME}:1"


@transactional
def on_times_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: dict[str, Any], db: Session) -> None:
    """Record the proposals and commit them, then close the form; a problem is shown on the
    field it is about, and nothing changes."""
    services: Services = context["services"]
    values = view["state"]["values"]
    try:
        times = [_time(values, number) for number in range(1, MAX_TIMES + 1)]
        place = submitted(values, Block.SESSION_PLACE)
        if place is not None and not isinstance(place, str):
            raise SessionError("Say where in a few words.", "place")
        domain.propose(db, whole_number(view.get("private_metadata")), body["user"]["id"],
                       times, place, now=services.clock.now())
        db.commit()
    except SessionError as error:
        db.rollback()
        ack(response_action="errors", errors={_block_of(error.field): str(error)})
        return
    ack()


# -- picking, rescheduling, calling off, posting -----------------------------------------------

def _replace_after_commit(db: Session, respond: Respond, content: dict[str, Any]) -> None:
    """Once the change is committed, the clicked message loses its buttons (for everyone)."""
    after_commit(db, lambda: respond(replace_original=True, **content))


@transactional
def on_pick_time(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                 context: dict[str, Any], db: Session) -> None:
    """The caller picks one of the proposed times."""
    ack()
    services: Services = context["services"]
    try:
        moved = domain.pick(db, whole_number(action.get("value")), body["user"]["id"],
                            now=services.clock.now())
    except SessionError as error:
        reply_privately(respond, str(error))
        return
    assert moved.team.session_at is not None
    _replace_after_commit(db, respond, picked_note(moved.team.session_at))


def _set_aside(change: Callable[..., domain.Moved], called_off: bool, ack: Ack,
               body: dict[str, Any], action: dict[str, Any], respond: Respond,
               context: dict[str, Any], db: Session) -> None:
    """Reschedule or Call it off: the change is made if still current, and the clicked message
    loses its buttons."""
    ack()
    services: Services = context["services"]
    user_id = body["user"]["id"]
    try:
        change(db, whole_number(action.get("value")), user_id,
               version_of(action.get("block_id")), now=services.clock.now())
    except SessionError as error:
        reply_privately(respond, str(error))
        return
    _replace_after_commit(db, respond, set_aside_note(user_id, called_off=called_off))


@transactional
def on_reschedule(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  context: dict[str, Any], db: Session) -> None:
    """The caller or a supporter asks for other times."""
    _set_aside(domain.reschedule, False, ack, body, action, respond, context, db)


@transactional
def on_call_off(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                context: dict[str, Any], db: Session) -> None:
    """The caller or a supporter calls the group conversation off."""
    _set_aside(domain.cancel, True, ack, body, action, respond, context, db)


@transactional
def on_post_invitation(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       respond: Respond, context: dict[str, Any], db: Session) -> None:
    """The caller asks for the invitation to be posted in the team's channel."""
    ack()
    services: Services = context["services"]
    try:
        moved = domain.post_invitation(db, whole_number(action.get("value")),
                                       body["user"]["id"], version_of(action.get("block_id")),
                                       now=services.clock.now())
    except SessionError as error:
        reply_privately(respond, str(error))
        return
    channel = moved.team.channel_id
    after_commit(db, lambda: reply_privately(respond, f"Posting it in <#{channel}> now. Thank you."))
