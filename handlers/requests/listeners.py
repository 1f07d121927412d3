"""Asking for support, and every button and modal of a request's life."""

from __future__ import annotations

import contextlib
import logging
from collections.abc import Callable
from typing import Any

from slack_bolt import Ack, App, Respond
from slack_sdk.errors import SlackApiError
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.infra import audit
from bot.infra.messaging import SlackAppProblem, SlackUnreachable, TriggerExpired
from bot.infra.models import RequestKind, Supporter, SupportRequest
from bot.infra.roles import NotPermitted
from bot.requests import flows as flow
from bot.requests import service as domain
from bot.requests import teams
from bot.requests.service import AlreadyOpen, Outcome, RequestError, RequestForm
from bot.requests.teams import TeamForm, TeamFormError
from handlers.common.handover import to_the_clock
from handlers.common.ids import Action, Block, Callback
from handlers.common.interaction import reply_privately, submitted, whole_number
from handlers.common.middleware import transactional
from handlers.common.services import Services
from handlers.requests.blocks import (
    FOR_ME,
    FOR_TEAM,
    NOT_SAFE,
    WELCOME,
    close_modal,
    crisis_view,
    offer_ended,
    open_request_modal,
    request_modal,
    team_close_modal,
    team_request_modal,
    team_request_view,
    withdrawn_view,
)

log = logging.getLogger(__name__)

REFUSALS = {
    Outcome.TAKEN: "Another supporter has already taken this request. Thank you for being there.",
    Outcome.ALREADY_YOURS: "You have already accepted this request.",
    Outcome.CANCELLED: "The person withdrew this request. Thank you for being there.",
    Outcome.CLOSED: "This request is already closed.",
    Outcome.NOT_YOURS: "This offer was sent to someone else, so it cannot be answered here.",
    Outcome.NOT_FOUND: "This offer no longer exists.",
    Outcome.EXPIRED: ("Nobody could answer this offer in time, so it went to other supporters. "
                      "Thank you for being there."),
    Outcome.AT_CAP: ("You already have as many open cases as your cap allows, so this one will go "
                     "to someone else. Close a case (or ask a coordinator to raise your cap) to "
                     "take more."),
}
# How a refused offer's message is replaced, so it stops showing buttons that cannot work.
ENDED_AS = {Outcome.TAKEN: "taken", Outcome.CANCELLED: "withdrawn", Outcome.EXPIRED: "expired"}


def register(app: App) -> None:
    """Listen for the request modal, offers, hand-back, close, cancel and escalations."""
    app.shortcut(Callback.REQUEST_SHORTCUT)(on_request_shortcut)
    app.action(Action.REQUEST_SUPPORT)(on_request_button)
    app.action(Action.REQUEST_TEAM_SUPPORT)(on_team_button)
    app.action(Action.REQUEST_FOR)(on_request_for)
    app.view(Callback.REQUEST)(on_request_submitted)
    app.view(Callback.TEAM_REQUEST)(on_team_submitted)
    app.action(Action.CANCEL_REQUEST)(on_cancel)
    app.action(Action.HAND_BACK)(on_hand_back)
    app.action(Action.OPEN_CLOSE)(on_open_close)
    app.view(Callback.CLOSE_REQUEST)(on_close_submitted)
    app.view(Callback.CLOSE_TEAM_REQUEST)(on_team_close_submitted)
    app.action(Action.TAKE_REQUEST)(on_take)
    app.action(Action.PICK_SUPPORTER)(on_pick)


def _departments(db: Session) -> tuple[str, ...]:
    return tuple(d for d in db.scalars(
        select(Supporter.department).distinct().order_by(Supporter.department)) if d)


def _usergroups(services: Services) -> tuple[tuple[str, str], ...]:
    """The workspace's user groups for the team form, or none when Slack cannot say now
    (the form then simply leaves that question out)."""
    if services.messenger.slowed_for() > 0:
        return ()  # rate limited: waiting would outlast the three seconds a form may take
    try:
        groups = services.messenger.usergroups()
    except (SlackApiError, SlackAppProblem, SlackUnreachable, OSError) as error:
        log.info("user groups unavailable for the team form: %s", type(error).__name__)
        return ()
    return tuple(sorted(groups, key=lambda group: group[1].lower()))


def personal_form(db: Session, user_id: str) -> dict:
    """The request modal, or the person's open request instead of a second."""
    existing = domain.open_request_of(db, user_id)
    return open_request_modal(existing) if existing is not None \
        else request_modal(_departments(db))


def team_form(services: Services, db: Session) -> dict:
    """The team form, with the roster's departments and the workspace's user groups."""
    return team_request_modal(_departments(db), _usergroups(services))


def _open(services: Services, user_id: str, trigger_id: str, view: dict) -> None:
    try:
        services.messenger.open_view(trigger_id, view)
    except TriggerExpired:
        # Slack allows three seconds to open a form; when that passed, say so and ask again.
        with contextlib.suppress(SlackUnreachable):
            services.messenger.post_dm(user_id, text=(
                "Slack took too long to open the support form. Please try again: type "
                "`/peersupport` or use the Home tab's Request support button."))


def _replace(services: Services, view_id: str, view: dict) -> None:
    """Replace an open modal; one the person already closed has nothing to replace."""
    try:
        services.messenger.update_view(view_id, view)
    except SlackApiError as error:
        log.info("could not replace a form: %s", error.response.get("error"))


def open_request(services: Services, db: Session, user_id: str, trigger_id: str) -> None:
    """Open the request modal, or show the person their open request instead of a second."""
    _open(services, user_id, trigger_id, personal_form(db, user_id))


def open_team_request(services: Services, db: Session, user_id: str, trigger_id: str) -> None:
    """Open the team form (anyone may call it, whatever requests of their own are open)."""
    _open(services, user_id, trigger_id, team_form(services, db))


@transactional
def on_request_shortcut(ack: Ack, body: dict[str, Any], context: dict[str, Any],
                        db: Session) -> None:
    """The global shortcut."""
    ack()
    open_request(context["services"], db, body["user"]["id"], body["trigger_id"])


@transactional
def on_request_button(ack: Ack, body: dict[str, Any], context: dict[str, Any],
                      db: Session) -> None:
    """The Home tab's Request support button."""
    ack()
    open_request(context["services"], db, body["user"]["id"], body["trigger_id"])


@transactional
def on_team_button(ack: Ack, body: dict[str, Any], context: dict[str, Any], db: Session
                   ) -> None:
    """"Support for my team", on the Home tab (opens the team form) or in a modal that shows
    the person's own request (replaces it with the team form)."""
    ack()
    services: Services = context["services"]
    view = body.get("view")
    if isinstance(view, dict) and view.get("type") == "modal" and view.get("id"):
        _replace(services, str(view["id"]), team_form(services, db))
        return
    open_team_request(services, db, body["user"]["id"], body["trigger_id"])


@transactional
def on_request_for(ack: Ack, body: dict[str, Any], action: dict[str, Any],
                   context: dict[str, Any], db: Session) -> None:
    """The form's "For me" / "For my team" choice: the form is replaced by the other one."""
    ack()
    services: Services = context["services"]
    view = body.get("view")
    selected = action.get("selected_option")
    choice = selected.get("value") if isinstance(selected, dict) else None
    if not isinstance(view, dict) or view.get("type") != "modal" or not view.get("id") \
            or choice not in (FOR_ME, FOR_TEAM):
        return
    form = team_form(services, db) if choice == FOR_TEAM \
        else personal_form(db, body["user"]["id"])
    _replace(services, str(view["id"]), form)


def read_form(values: dict[str, Any]) -> RequestForm:
    """The request form from the modal's state."""
    return RequestForm(
        urgency=submitted(values, Block.URGENCY) or "",
        connection=submitted(values, Block.CONNECTION) or "",
        outside_department=submitted(values, Block.WHO) == "outside",
        same_role=submitted(values, Block.ROLE_MATCH) == "same",
        department=submitted(values, Block.DEPARTMENT),
        role=submitted(values, Block.ROLE),
        followups=WELCOME in (submitted(values, Block.FOLLOWUPS) or []),
        crisis=NOT_SAFE in (submitted(values, Block.SAFETY) or []),
    )


@transactional
def on_request_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                         context: dict[str, Any], db: Session) -> None:
    """Record the request with its offers and messages and commit them, then answer Slack:
    once the person sees the form close, their request cannot be lost."""
    services: Services = context["services"]
    user_id = body["user"]["id"]
    form = read_form(view["state"]["values"])
    try:
        flow.create(services, db, user_id, form, source_key=f"view:{view['id']}")
        db.commit()
    except RequestError as error:
        db.rollback()
        block = Block.ROLE if "role" in str(error) else Block.DEPARTMENT \
            if "department" in str(error) else Block.URGENCY
        ack(response_action="errors", errors={block: str(error)})
        return
    except AlreadyOpen as existing:
        view_of_it = open_request_modal(existing.request)
        db.rollback()
        ack(response_action="update", view=view_of_it)
        return
    if form.crisis:
        ack(response_action="update", view=crisis_view(services.library.crisis_lines()))
    else:
        ack()


def _one_id(value: Any, field: str, message: str) -> str | None:
    if value is None or value == "":
        return None
    if not isinstance(value, str):
        raise TeamFormError(message, field)
    return value


def _chosen_users(values: dict[str, Any], block: str) -> tuple[str, ...]:
    elements = values.get(block)
    element = next(iter(elements.values()), None) if isinstance(elements, dict) else None
    users = element.get("selected_users") if isinstance(element, dict) else None
    if users is None:
        return ()
    if not isinstance(users, list) or not all(isinstance(u, str) for u in users):
        raise TeamFormError("Choose the team's people from the list.", "people")
    return tuple(users)


def read_team_form(values: dict[str, Any]) -> TeamForm:
    """The team form from the modal's state; TeamFormError when the unit is missing, given
    twice over, or anything is not what the form could send."""
    chosen = _one_id(submitted(values, Block.TEAM_UNIT), "unit", "Choose the unit from the list.")
    typed = _one_id(submitted(values, Block.TEAM_UNIT_TYPED), "unit_typed",
                    "Type the unit's name.")
    typed = typed.strip() if typed is not None else None
    if not chosen and not typed:
        raise TeamFormError("Say which unit or team: choose it from the list or type its name.",
                            "unit_typed")
    if chosen and typed and chosen != typed:
        raise TeamFormError("Choose the unit from the list or type its name, not both.",
                            "unit_typed")
    helps = submitted(values, Block.TEAM_HELP)
    helps = helps if isinstance(helps, list) else []
    size, urgency = submitted(values, Block.TEAM_SIZE), submitted(values, Block.URGENCY)
    return TeamForm(
        unit=chosen or typed or "", size=size if isinstance(size, str) else "",
        urgency=urgency if isinstance(urgency, str) else "",
        visit="visit" in helps, group="group" in helps, private="private" in helps,
        people=_chosen_users(values, Block.TEAM_PEOPLE),
        usergroup=_one_id(submitted(values, Block.TEAM_USERGROUP), "usergroup",
                          "Choose the team's group from the list."),
        channel=_one_id(submitted(values, Block.TEAM_CHANNEL), "channel",
                        "Choose a channel the team is in."))


_TEAM_FIELDS = {"unit_typed": Block.TEAM_UNIT_TYPED, "size": Block.TEAM_SIZE,
                "urgency": Block.URGENCY, "help": Block.TEAM_HELP, "people": Block.TEAM_PEOPLE,
                "usergroup": Block.TEAM_USERGROUP, "channel": Block.TEAM_CHANNEL}


def _team_error_block(error: TeamFormError, values: dict[str, Any]) -> str:
    """The question an error is about: for the unit, the one it was given in."""
    if error.field == "unit":
        typed = submitted(values, Block.TEAM_UNIT_TYPED)
        return Block.TEAM_UNIT_TYPED if typed or not submitted(values, Block.TEAM_UNIT) \
            else Block.TEAM_UNIT
    return _TEAM_FIELDS.get(error.field, Block.TEAM_UNIT_TYPED)


@transactional
def on_team_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                      context: dict[str, Any], db: Session) -> None:
    """Record the team request with its offers and messages and commit them, then answer
    Slack with where it stands: once the caller sees that, it cannot be lost."""
    services: Services = context["services"]
    user_id = body["user"]["id"]
    values = view["state"]["values"]
    try:
        form = read_team_form(values)
        request = flow.create_team(services, db, user_id, form, source_key=f"view:{view['id']}")
        shown = team_request_view(request)
        db.commit()
    except TeamFormError as error:
        db.rollback()
        ack(response_action="errors", errors={_team_error_block(error, values): str(error)})
        return
    except RequestError as error:
        db.rollback()
        ack(response_action="errors", errors={Block.TEAM_UNIT_TYPED: str(error)})
        return
    except AlreadyOpen as existing:
        # The same submission again: show what the first made (never someone else's).
        seen = existing.request
        mine = seen.requester_id == user_id and seen.kind == RequestKind.TEAM
        shown = team_request_view(seen) if mine else {}
        db.rollback()
        if not mine:
            ack(response_action="errors", errors={
                Block.TEAM_UNIT_TYPED: "Please send the form again."})
            return
    ack(response_action="update", view=shown)


def _answer_offer(answer: Callable[..., domain.AcceptResult], ack: Ack, body: dict[str, Any],
                  action: dict[str, Any], context: dict[str, Any], db: Session
                  ) -> tuple[Services, domain.AcceptResult]:
    """Acknowledge a supporter's Accept or Decline, then apply it to the offer the button names
    (a forged id: not found)."""
    ack()
    services: Services = context["services"]
    offer_id = whole_number(action.get("value"))
    if offer_id is None:
        return services, domain.AcceptResult(Outcome.NOT_FOUND)
    return services, answer(db, offer_id, body["user"]["id"], now=services.clock.now())


@to_the_clock(Action.ACCEPT_OFFER)
@transactional
def on_accept(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
              context: dict[str, Any], db: Session) -> None:
    """First accept wins; everyone else is thanked."""
    services, result = _answer_offer(domain.accept, ack, body, action, context, db)
    if result.outcome == Outcome.ACCEPTED:
        flow.accepted(services, db, result)
        return
    if result.outcome == Outcome.JOINED:
        return  # a seat of a team request: the offer's message says what happens next
    reply_privately(respond, REFUSALS[result.outcome])
    if result.outcome in ENDED_AS and result.offer is not None:
        respond(replace_original=True, **offer_ended(ENDED_AS[result.outcome]))


@to_the_clock(Action.DECLINE_OFFER)
@transactional
def on_decline(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
               context: dict[str, Any], db: Session) -> None:
    """A supporter cannot take it."""
    services, result = _answer_offer(domain.decline, ack, body, action, context, db)
    if result.outcome == Outcome.DECLINED:
        flow.declined(services, db, result)
    else:
        reply_privately(respond, REFUSALS[result.outcome])


@transactional
def on_cancel(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
              context: dict[str, Any], db: Session) -> None:
    """The requester withdraws their request, from their DM, the modal or the Home tab."""
    ack()
    services: Services = context["services"]
    request_id = whole_number(action.get("value"))
    try:
        if request_id is None:
            raise RequestError("That request no longer exists.")
        request, _withdrawn = domain.cancel(db, request_id, body["user"]["id"],
                                            now=services.clock.now())
    except RequestError as error:
        if body.get("container", {}).get("type") == "message":
            reply_privately(respond, str(error))
        return
    flow.cancelled(services, db, request)
    if body.get("container", {}).get("type") == "view" and "view" in body:
        services.messenger.update_view(body["view"]["id"],
                                       withdrawn_view(request.kind == RequestKind.TEAM))


@transactional
def on_hand_back(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                 context: dict[str, Any], db: Session) -> None:
    """The supporter hands the request back; it is offered to others, without them."""
    ack()
    services: Services = context["services"]
    user_id = body["user"]["id"]
    try:
        request = domain.hand_back(db, whole_number(action.get("value")) or 0, user_id,
                                   now=services.clock.now())
    except RequestError as error:
        reply_privately(respond, str(error))
        return
    flow.handed_back(services, db, request)
    respond(replace_original=True, **offer_ended("handed_back"))


@transactional
def on_open_close(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  context: dict[str, Any], db: Session) -> None:
    """Open the closing questions for a request the clicker is supporting (of a team
    request, any seat holder: the team's questions)."""
    ack()
    request = db.get(SupportRequest, whole_number(action.get("value")) or 0)
    if request is None or not domain.supports(db, request, body["user"]["id"]) \
            or request.state != "assigned":
        reply_privately(respond, "This request is not open with you any more.")
        return
    modal = team_close_modal(request.id) if request.kind == RequestKind.TEAM \
        else close_modal(request.id)
    context["services"].messenger.open_view(body["trigger_id"], modal)


@transactional
def on_close_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: dict[str, Any], db: Session) -> None:
    """Save the aggregate-only answers and close the encounter."""
    services: Services = context["services"]
    values = view["state"]["values"]
    try:
        domain.close(
            db, whole_number(view.get("private_metadata")) or 0, body["user"]["id"],
            now=services.clock.now(), duration=submitted(values, Block.DURATION) or "",
            referred=submitted(values, Block.REFERRED) == "yes",
            need_met=submitted(values, Block.NEED_MET) or "")
    except RequestError as error:
        ack(response_action="errors", errors={Block.DURATION: str(error)})
        return
    ack()


@transactional
def on_team_close_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                            context: dict[str, Any], db: Session) -> None:
    """Save a team's aggregate-only answers and close its support for every seat holder."""
    services: Services = context["services"]
    values = view["state"]["values"]

    def chosen(block: str) -> str:
        value = submitted(values, block)
        return value if isinstance(value, str) else ""

    try:
        request = teams.close_team(
            db, whole_number(view.get("private_metadata")) or 0, body["user"]["id"],
            now=services.clock.now(), people_present=chosen(Block.PEOPLE_PRESENT),
            duration=chosen(Block.DURATION), referred=chosen(Block.REFERRED) == "yes",
            need_met=chosen(Block.NEED_MET))
        flow.closed(services, db, request)  # a group conversation still ahead is called off
        db.commit()  # the form closes once the answers are kept, not before
    except TeamFormError as error:
        db.rollback()
        ack(response_action="errors", errors={Block.PEOPLE_PRESENT: str(error)})
        return
    except RequestError as error:
        db.rollback()
        ack(response_action="errors", errors={Block.DURATION: str(error)})
        return
    ack()


def _coordinator_request(services: Services, db: Session, user_id: str, request_id: int | None
                         ) -> SupportRequest:
    services.roles.require_coordinator(db, user_id)
    request = db.get(SupportRequest, request_id or 0)
    if request is None or request.state not in ("open", "escalated"):
        raise RequestError("This request already has a supporter, or was withdrawn.")
    return request


@transactional
def on_take(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
            context: dict[str, Any], db: Session) -> None:
    """A coordinator takes an escalated request themselves."""
    ack()
    services: Services = context["services"]
    user_id = body["user"]["id"]
    try:
        request = _coordinator_request(services, db, user_id, whole_number(action.get("value")))
        result = domain.take_as_coordinator(db, request.id, user_id, now=services.clock.now())
    except (NotPermitted, RequestError) as error:
        reply_privately(respond, str(error))
        return
    audit.record(db, user_id, "request.take", str(request.id), now=services.clock.now())
    if result.outcome == Outcome.ACCEPTED:  # a team's seat before the last only joins it
        flow.accepted(services, db, result)


@transactional
def on_pick(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
            context: dict[str, Any], db: Session) -> None:
    """A coordinator offers an escalated request to a supporter they pick."""
    ack()
    services: Services = context["services"]
    block_id = str(action.get("block_id", ""))
    picked = action.get("selected_user")
    try:
        request = _coordinator_request(services, db, body["user"]["id"],
                                       whole_number(block_id.removeprefix("alert:")))
        if not isinstance(picked, str):
            raise RequestError("Pick a person.")
        flow.direct_offer(services, db, request, picked)
    except (NotPermitted, RequestError) as error:
        reply_privately(respond, str(error))
        return
    audit.record(db, body["user"]["id"], "request.pick", str(request.id),
                 now=services.clock.now())
    reply_privately(respond, f"Offered to <@{picked}>. You will hear when someone accepts.")

