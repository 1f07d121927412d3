"""Direct messages to the bot: each gets one short answer, and what was written is never kept.

The text of a DM is read once, to choose the answer (bot.dm.words), and then dropped: it is
not logged, stored, or put in any button. Simple words do what the slash command's words do,
through the very same subcommand functions.
"""

from __future__ import annotations

import logging
import re
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot.checkins import service as checkins
from bot.dm.words import Intent, classify
from bot.infra.db import after_commit
from bot.infra.models import ContactHours
from bot.library import Moment
from bot.requests import flows as flow
from bot.requests.service import AlreadyOpen, RequestError, RequestForm
from handlers.commands.listeners import SUBCOMMANDS, Invocation
from handlers.common.ids import Action
from handlers.common.interaction import reply_privately
from handlers.common.middleware import transactional
from handlers.common.services import Services
from handlers.dm.blocks import (
    already_open,
    crisis_answer,
    dm_answer,
    reached_out,
    team_answer,
    with_words_hint,
)

log = logging.getLogger(__name__)
USER_ID = re.compile(r"^[UW][A-Z0-9]{2,31}$")
DM_CHANNEL = re.compile(r"^D[A-Z0-9]{2,31}$")
THREAD_TS = re.compile(r"^[0-9]{1,12}\.[0-9]{1,8}$")
# The DM words that run a /peersupport subcommand as it is.
SUBCOMMAND_OF = {Intent.HELP: "help", Intent.RESOURCES: "resources",
                 Intent.CHECKINS: "checkins", Intent.AVAILABLE: "available", Intent.AWAY: "away"}


def register(app: App) -> None:
    """Listen for DMs to the bot and for the crisis answer's button."""
    app.event("message")(on_direct_message)
    app.action(Action.REACH_OUT_NOW)(on_reach_out)


def sender(event: dict[str, Any], bot_user_id: str | None) -> str | None:
    """The person who wrote this DM, or None for anything that gets no answer: messages in
    other conversations, edits, deletions and other subtypes, and bots (the app itself too)."""
    if event.get("channel_type") != "im" or event.get("subtype") is not None \
            or event.get("bot_id") or event.get("bot_profile"):
        return None
    user, channel = event.get("user"), event.get("channel")
    if not isinstance(user, str) or not USER_ID.match(user) or user == bot_user_id:
        return None
    if not isinstance(channel, str) or not DM_CHANNEL.match(channel):
        return None
    return user


class _Captured:
    """Stands in for a subcommand's ack() and respond(): keeps what it would have shown."""

    def __init__(self) -> None:
        self.messages: list[dict[str, Any]] = []

    def __call__(self, *_args: Any, **kwargs: Any) -> None:
        if kwargs.get("text") or kwargs.get("blocks"):
            self.messages.append({"text": kwargs.get("text", ""), "blocks": kwargs.get("blocks")})


@transactional
def on_direct_message(ack: Ack, event: dict[str, Any], context: dict[str, Any],
                      db: Session) -> None:
    """Answer a person's DM once (events are acknowledged by Bolt; ack() here takes a work
    slot); a repeated delivery is dropped when the database is first used."""
    ack()
    user_id = sender(event, context.get("bot_user_id"))
    if user_id is None:
        return
    db.connection()  # checks the delivery key: a copy Slack sent again stops here
    services: Services = context["services"]
    reading = classify(str(event.get("text") or ""))
    if reading.intent == Intent.CRISIS:
        answers = [crisis_answer(services.library.crisis_lines())]
    elif reading.intent == Intent.TEAM:
        answers = [team_answer()]
    elif reading.intent in SUBCOMMAND_OF:
        answers = _as_subcommand(SUBCOMMAND_OF[reading.intent], reading.rest, user_id, context)
    else:
        answers = [_general(services, db, user_id)]
    channel = str(event["channel"])
    thread = event.get("thread_ts")
    thread_ts = thread if isinstance(thread, str) and THREAD_TS.match(thread) else None

    def post() -> None:
        for answer in answers:
            services.messenger.post_message(channel, answer["text"], answer.get("blocks"),
                                           thread_ts=thread_ts)

    # Posted once the roster change an `away` or `available` made is committed.
    after_commit(db, post)
    log.info("answered a direct message (%s)", reading.intent.value)


def _as_subcommand(name: str, rest: str, user_id: str, context: dict[str, Any]
                   ) -> list[dict[str, Any]]:
    captured = _Captured()
    SUBCOMMANDS[name].run(Invocation(ack=captured, respond=captured, user_id=user_id,
                                     channel_id="", trigger_id="", args=rest, context=context))
    return [with_words_hint(message) for message in captured.messages]


def _general(services: Services, db: Session, user_id: str) -> dict[str, Any]:
    surfacing = services.library.for_moment(Moment.REQUEST_WAITING, audience="clinician")
    hours = db.get(ContactHours, user_id)
    tz = hours.tz if hours is not None else services.settings.program_timezone
    return dm_answer(surfacing.resources, services.library.crisis_lines(),
                     checkins.upcoming(db, user_id), tz)


@transactional
def on_reach_out(ack: Ack, body: dict[str, Any], respond: Respond, context: dict[str, Any],
                 db: Session) -> None:
    """'Have someone reach out to me now': the request form's not-safe path, taken only now."""
    ack()
    services: Services = context["services"]
    crisis = services.library.crisis_lines()
    form = RequestForm(urgency="now", connection="slack", crisis=True)
    try:
        flow.create(services, db, body["user"]["id"], form, source_key=None)
        db.commit()
    except AlreadyOpen:
        # Their open request becomes urgent and a coordinator is alerted now, whatever state
        # it is in: someone who says they are not safe is never left to the usual pace. The
        # refused insert wrote nothing, so the transaction (and the click's delivery record in
        # it) carries on: a replay of this click is still recognised.
        request = flow.not_safe(services, db, body["user"]["id"])
        if request is None:  # withdrawn in between: nothing open to raise, ask them again
            reply_privately(respond, "Please press the button again.")
            return
        respond(replace_original=False, **already_open(request, crisis))
        return
    except RequestError as error:
        db.rollback()
        reply_privately(respond, str(error))
        return
    respond(replace_original=True, **reached_out(crisis))
