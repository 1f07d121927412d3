"""The App Home: published when opened and after every change that affects it."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import Any

from slack_bolt import Ack, App
from sqlalchemy.orm import Session

from bot.home.service import build_home
from bot.infra.clock import zone
from bot.roster import supporters as roster
from bot.roster.supporters import RosterError
from handlers.common.ids import Action, Block, Callback
from handlers.common.interaction import submitted, whole_number
from handlers.common.middleware import transactional
from handlers.common.services import Services
from handlers.home.availability import OFF, away_until_modal, hours_block_id, preferences_modal
from handlers.home.blocks import home_view


def register(app: App) -> None:
    """Listen for the Home tab, its buttons and its modals."""
    app.event("app_home_opened")(on_home_opened)
    app.action(Action.SET_AVAILABLE)(on_set_available)
    app.action(Action.SET_AWAY)(on_set_away)
    app.action(Action.OPEN_AWAY_UNTIL)(on_open_away_until)
    app.action(Action.OPEN_PREFERENCES)(on_open_preferences)
    app.view(Callback.AWAY_UNTIL)(on_away_until_submitted)
    app.view(Callback.PREFERENCES)(on_preferences_submitted)


def publish_home(services: Services, session: Session, user_id: str) -> None:
    """Compose and publish one person's Home tab."""
    home = build_home(session, user_id, roles=services.roles, library=services.library,
                      settings=services.settings, now=services.clock.now())
    services.messenger.publish_home(user_id, home_view(home))


@transactional
def on_home_opened(event: dict[str, Any], context: dict[str, Any], db: Session) -> None:
    """Someone opened the app: show them their Home (events are acknowledged by Bolt)."""
    if event.get("tab", "home") == "home" and isinstance(event.get("user"), str):
        publish_home(context["services"], db, event["user"])


def _change_then_publish(context: dict[str, Any], db: Session, user_id: str, change: Any) -> None:
    services: Services = context["services"]
    try:
        change(db, user_id, now=services.clock.now())
    except RosterError:
        pass  # not (or no longer) a supporter: the Home they get back shows it
    publish_home(services, db, user_id)


@transactional
def on_set_available(ack: Ack, body: dict[str, Any], context: dict[str, Any],
                     db: Session) -> None:
    """The 'I'm available' button."""
    ack()
    _change_then_publish(context, db, body["user"]["id"], roster.set_available)


@transactional
def on_set_away(ack: Ack, body: dict[str, Any], context: dict[str, Any], db: Session) -> None:
    """The 'I'm away' button: away until they come back."""
    ack()
    _change_then_publish(context, db, body["user"]["id"], roster.set_away)


@transactional
def on_open_away_until(ack: Ack, body: dict[str, Any], context: dict[str, Any],
                       db: Session) -> None:
    """Open the 'away until' picker, suggesting tomorrow at 08:00 in their zone."""
    ack()
    services: Services = context["services"]
    supporter = roster.get(db, body["user"]["id"])
    if supporter is None:
        return
    tz = zone(supporter.tz)
    tomorrow = services.clock.now().astimezone(tz).date() + timedelta(days=1)
    suggested = datetime.combine(tomorrow, time(8, 0), tzinfo=tz)
    services.messenger.open_view(body["trigger_id"],
                                away_until_modal(int(suggested.timestamp()), supporter.tz))


@transactional
def on_open_preferences(ack: Ack, body: dict[str, Any], context: dict[str, Any],
                        db: Session) -> None:
    """Open the hours and limits modal with the supporter's current settings."""
    ack()
    supporter = roster.get(db, body["user"]["id"])
    if supporter is not None:
        context["services"].messenger.open_view(body["trigger_id"], preferences_modal(supporter))


@transactional
def on_away_until_submitted(ack: Ack, view: dict[str, Any], body: dict[str, Any],
                            context: dict[str, Any], db: Session) -> None:
    """Save 'away until'; a time in the past is refused in the modal itself."""
    services: Services = context["services"]
    epoch = submitted(view["state"]["values"], Block.AWAY_UNTIL)
    try:
        until = datetime.fromtimestamp(int(epoch), tz=zone("UTC"))
        roster.set_away(db, body["user"]["id"], now=services.clock.now(), until=until)
    except (TypeError, ValueError, OverflowError) as error:
        message = str(error) if isinstance(error, RosterError) else "Choose a date and time."
        ack(response_action="errors", errors={Block.AWAY_UNTIL: message})
        return
    ack()
    publish_home(services, db, body["user"]["id"])


def read_hours(values: dict[str, Any]) -> tuple[dict[int, tuple[int, int]], dict[str, str]]:
    """Weekly hours from the modal's state, and errors keyed by block for half-set days."""
    hours: dict[int, tuple[int, int]] = {}
    errors: dict[str, str] = {}
    for weekday in range(7):
        start = submitted(values, hours_block_id(weekday, "start")) or OFF
        end = submitted(values, hours_block_id(weekday, "end")) or OFF
        if start == OFF and end == OFF:
            continue
        if OFF in (start, end):
            errors[hours_block_id(weekday, "end" if start != OFF else "start")] = \
                "Choose both a start and an end, or set both to off duty."
        elif whole_number(start) is None or whole_number(end) is None:
            errors[hours_block_id(weekday, "start")] = "Choose times from the list."
        elif start == end:
            errors[hours_block_id(weekday, "end")] = "The end must differ from the start."
        else:
            hours[weekday] = (int(start), int(end))
    return hours, errors


@transactional
def on_preferences_submitted(ack: Ack, view: dict[str, Any], body: dict[str, Any],
                             context: dict[str, Any], db: Session) -> None:
    """Save weekly hours, the case limit and the rest period; mistakes stay in the modal."""
    services: Services = context["services"]
    values = view["state"]["values"]
    hours, errors = read_hours(values)
    case_cap = whole_number(submitted(values, Block.CASE_CAP))
    if case_cap is None:
        errors[Block.CASE_CAP] = "Enter a whole number."
    cooldown = whole_number(submitted(values, Block.COOLDOWN))
    if cooldown is None:
        errors[Block.COOLDOWN] = "Choose a rest period."
    if not errors:
        try:
            roster.set_preferences(db, body["user"]["id"], now=services.clock.now(), hours=hours,
                                   case_cap=case_cap or 0, cooldown_hours=cooldown or 0)
        except RosterError as error:
            block = Block.COOLDOWN if error.field == "cooldown" else Block.CASE_CAP
            errors[block] = str(error).capitalize() + "."
    if errors:
        ack(response_action="errors", errors=errors)
        return
    ack()
    publish_home(services, db, body["user"]["id"])
