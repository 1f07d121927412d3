"""Check-in answers, `/peersupport checkins`, snooze, cancel and the person's hours."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot.checkins import flows as checkin_flows
from bot.checkins import service as checkins
from bot.checkins.service import CheckInError
from bot.infra.db import after_commit
from bot.infra.models import CheckIn, ContactHours
from bot.library import Moment
from bot.requests import flows as flow
from bot.requests.service import AlreadyOpen, RequestError
from bot.roster import supporters as roster
from handlers.checkins.blocks import (
    another_session_asked,
    answered,
    checkin_list,
    hours_modal,
    struggling_alert,
    struggling_note,
)
from handlers.common.blockkit import notice
from handlers.common.handover import to_the_clock
from handlers.common.ids import CHECKIN_ANSWERS, Action, Block, Callback
from handlers.common.interaction import reply_privately, submitted, whole_number
from handlers.common.invocation import Invocation
from handlers.common.middleware import transactional
from handlers.common.services import Services


def register(app: App) -> None:
    """Listen for check-in answers and the check-in list's buttons and modal."""
    app.action(Action.TALK_AGAIN)(on_talk_again)
    app.action(Action.ANOTHER_SESSION)(on_another_session)
    app.action(Action.CHECKIN_SNOOZE)(on_snooze)
    app.action(Action.CHECKIN_CANCEL)(on_cancel_one)
    app.action(Action.CHECKIN_HOURS)(on_open_hours)
    app.view(Callback.CHECKIN_HOURS)(on_hours_submitted)
    app.action(Action.STOP_REMINDERS)(on_stop_reminders)
    app.event("user_change")(on_user_change)


def _list(services: Services, db: Session, user_id: str) -> dict:
    return checkin_list(checkins.upcoming(db, user_id), db.get(ContactHours, user_id),
                        services.clock.now())


def checkins_command(call: Invocation) -> None:
    """`/peersupport checkins`: the person's coming check-ins."""
    call.ack()
    call.respond(response_type="ephemeral",
                 **_list(call.context["services"], call.context["db"], call.user_id))


@to_the_clock(CHECKIN_ANSWERS)
@transactional
def on_answer(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
              context: dict[str, Any], db: Session) -> None:
    """One click answers the check-in; the message changes to show what the answer brings."""
    ack()
    services: Services = context["services"]
    choice = str(action.get("action_id", "")).rsplit(":", 1)[-1]
    checkin_id = whole_number(action.get("value")) or 0
    try:
        checkin = checkins.answer(db, checkin_id, body["user"]["id"], choice,
                                  now=services.clock.now())
    except CheckInError as error:
        reply_privately(respond, str(error))
        return
    surfacing = services.library.for_moment(
        Moment.CHECKIN_STRUGGLING, audience="clinician") if choice == "struggling" else None
    role = checkins.role_of(db, checkin)
    respond(replace_original=True, **answered(choice, checkin_id, surfacing, role))
    checkin_flows.after_answer(services, db, checkin, alert=struggling_alert,
                               note=struggling_note)
    if choice == "talk_again":
        _talk_again(services, db, checkin, respond)


def _talk_again(services: Services, db: Session, checkin: CheckIn, respond: Respond) -> None:
    try:
        flow.talk_again(services, db, checkin)
    except AlreadyOpen:
        reply_privately(respond, "You already have a request open; a supporter will be in touch.")
    except RequestError as error:
        reply_privately(respond, str(error))


@transactional
def on_talk_again(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  context: dict[str, Any], db: Session) -> None:
    """'Talk with a peer supporter again', offered after a 'struggling' answer."""
    ack()
    checkin = db.get(CheckIn, whole_number(action.get("value")) or 0)
    if checkin is None or checkin.user_id != body["user"]["id"]:
        reply_privately(respond, "That button is not yours.")
        return
    _talk_again(context["services"], db, checkin, respond)
    respond(replace_original=True, **answered("talk_again", checkin.id,
                                              role=checkins.role_of(db, checkin)))


@transactional
def on_another_session(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                       respond: Respond, context: dict[str, Any], db: Session) -> None:
    """A team's caller: 'The team could use another session'. One request per check-in, however
    often it is clicked; only the caller may."""
    ack()
    services: Services = context["services"]
    try:
        request = flow.another_session(services, db, whole_number(action.get("value")) or 0,
                                       body["user"]["id"])
    except AlreadyOpen as already:
        respond(replace_original=True, **another_session_asked(already.request_id, again=True))
        return
    except (CheckInError, RequestError) as error:
        reply_privately(respond, str(error))
        return
    request_id = request.id
    # Said once the new request is committed: never before it exists.
    after_commit(db, lambda: respond(replace_original=True, **another_session_asked(request_id)))


def _change(change: Any, ack: Ack, body: dict[str, Any], action: dict[str, Any],
            respond: Respond, context: dict[str, Any], db: Session) -> None:
    ack()
    services: Services = context["services"]
    user_id = body["user"]["id"]
    try:
        change(db, whole_number(action.get("value")) or 0, user_id, now=services.clock.now())
    except CheckInError as error:
        reply_privately(respond, str(error))
        return
    db.flush()
    respond(replace_original=True, response_type="ephemeral", **_list(services, db, user_id))


@transactional
def on_snooze(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
              context: dict[str, Any], db: Session) -> None:
    """Move one coming check-in a day later."""
    _change(checkins.snooze, ack, body, action, respond, context, db)


@transactional
def on_cancel_one(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  context: dict[str, Any], db: Session) -> None:
    """Cancel one coming check-in."""
    _change(checkins.cancel_one, ack, body, action, respond, context, db)


@transactional
def on_open_hours(ack: Ack, body: dict[str, Any], context: dict[str, Any], db: Session) -> None:
    """Open the hours modal."""
    ack()
    services: Services = context["services"]
    hours = checkins.hours_of(db, body["user"]["id"], default_tz=services.settings.program_timezone,
                              now=services.clock.now())
    services.messenger.open_view(body["trigger_id"], hours_modal(hours))


@transactional
def on_hours_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: dict[str, Any], db: Session) -> None:
    """Save the hours and move coming check-ins into them."""
    services: Services = context["services"]
    values = view["state"]["values"]

    def minute(block: str) -> int:
        value = whole_number(submitted(values, block))
        return -1 if value is None else value

    try:
        checkins.set_hours(db, body["user"]["id"], start=minute(Block.HOURS_FROM),
                           end=minute(Block.HOURS_UNTIL), now=services.clock.now(),
                           default_tz=services.settings.program_timezone)
    except CheckInError as error:
        ack(response_action="errors", errors={Block.HOURS_UNTIL: str(error)})
        return
    ack()


@transactional
def on_stop_reminders(ack: Ack, body: dict[str, Any], respond: Respond,
                      context: dict[str, Any], db: Session) -> None:
    """A supporter turns off check-in reminders."""
    ack()
    supporter = roster.get(db, body["user"]["id"])
    if supporter is not None:
        supporter.checkin_reminders = False
    respond(replace_original=True, **notice(
        "No more check-in reminders. You can still message the people you support."))


@transactional
def on_user_change(event: dict[str, Any], context: dict[str, Any], db: Session) -> None:
    """Someone's Slack profile changed (events are acknowledged by Bolt): a departure or a new
    time zone reaches their check-ins."""
    user = event.get("user")
    if isinstance(user, dict):
        checkin_flows.profile_changed(context["services"], db, user)
        if user.get("deleted") is True and isinstance(user.get("id"), str):
            flow.requester_left(context["services"], db, user["id"])
