"""A team member's answers to their private note: talk to a peer supporter, a few check-ins,
or no more notes like this. Each is known to the team only as a count, and each answer is
committed before Slack is answered, so a click is never lost."""

from __future__ import annotations

from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot.infra.duework import JobRegistry
from bot.requests import outreach_answers as answers
from bot.requests.outreach_answers import OutreachError
from bot.requests.service import RequestError
from handlers.common.blockkit import notice
from handlers.common.ids import Action
from handlers.common.interaction import reply_privately, whole_number
from handlers.common.middleware import transactional
from handlers.common.services import Services
from handlers.teams.outreach_blocks import (
    CHECKINS_ALREADY,
    CHECKINS_PLANNED,
    OPTED_IN,
    asked,
    opted_out,
)
from handlers.teams.outreach_effects import register_effects, resources


def register(app: App) -> None:
    """Listen for the buttons of a member's note."""
    app.action(Action.TEAM_TALK)(on_talk)
    app.action(Action.TEAM_CHECKINS)(on_checkins)
    app.action(Action.OUTREACH_OPT_OUT)(on_opt_out)
    app.action(Action.OUTREACH_OPT_IN)(on_opt_in)


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register the outreach's deliveries: its start, each member's note (and its updates), its
    finishing."""
    register_effects(jobs, services)


def _privately(respond: Respond, content: dict[str, Any]) -> None:
    respond(response_type="ephemeral", replace_original=False, **content)


@transactional
def on_talk(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
            context: dict[str, Any], db: Session) -> None:
    """The "Talk to a peer supporter" button: a personal request of the member's own, at once."""
    services: Services = context["services"]
    try:
        result = answers.ask_personal(services, db, whole_number(action.get("value")),
                                      body["user"]["id"])
    except (OutreachError, RequestError) as error:
        ack()
        reply_privately(respond, str(error))
        return
    answer = asked(result.request, resources(services), created=result.created)
    db.commit()  # the request exists before Slack hears the click was taken
    ack()
    _privately(respond, answer)


@transactional
def on_checkins(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                context: dict[str, Any], db: Session) -> None:
    """The "Send me a few check-ins" button: the member's own check-ins, planned once (and moved
    to their own time zone once committed)."""
    services: Services = context["services"]
    try:
        planned = answers.plan_checkins(services, db, whole_number(action.get("value")),
                                        body["user"]["id"])
    except OutreachError as error:
        ack()
        reply_privately(respond, str(error))
        return
    db.commit()
    ack()
    _privately(respond, notice(CHECKINS_PLANNED if planned else CHECKINS_ALREADY))


@transactional
def on_opt_out(ack: Ack, body: dict[str, Any], respond: Respond, context: dict[str, Any],
               db: Session) -> None:
    """The "Don't send me notes like this" button: kept for every team's notes to come."""
    answers.opt_out(db, body["user"]["id"], now=context["services"].clock.now())
    db.commit()
    ack()
    _privately(respond, opted_out())


@transactional
def on_opt_in(ack: Ack, body: dict[str, Any], respond: Respond, db: Session) -> None:
    """"Send them to me after all": the opt-out is undone, for every team's notes to come."""
    answers.opt_in(db, body["user"]["id"])
    db.commit()
    ack()
    _privately(respond, notice(OPTED_IN))
