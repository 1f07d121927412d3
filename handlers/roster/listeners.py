"""Roster and availability subcommands: `roster add|remove|list`, `available`, `away [until]`."""

from __future__ import annotations

import shlex

from bot.infra import audit
from bot.infra.messaging import SlackUnreachable
from bot.infra.roles import NotPermitted
from bot.roster import supporters as roster
from bot.roster.supporters import RosterError, SupporterSpec
from bot.roster.timeparse import TimeParseError, parse_until
from handlers.common.blockkit import notice
from handlers.common.invocation import Invocation
from handlers.common.mentions import split_mentions
from handlers.common.services import Services
from handlers.home.listeners import publish_home
from handlers.roster.blocks import roster_changed, roster_list

ROSTER_USAGE = ("Use `/peersupport roster add @name [@name…] [department=\"Emergency\"] "
                "[role=nurse]`, `/peersupport roster remove @name`, or `/peersupport roster list`.")


def roster_command(call: Invocation) -> None:
    """Coordinators add, remove and list supporters."""
    call.ack()
    services: Services = call.context["services"]
    db = call.context["db"]
    try:
        services.roles.require_coordinator(db, call.user_id)
        action, _, rest = call.args.partition(" ")
        if action == "list":
            reply = roster_list(roster.all_supporters(db), services.clock.now())
            audit.record(db, call.user_id, "roster.list", now=services.clock.now())
        elif action in ("add", "remove"):
            reply = _add_or_remove(services, db, action, rest)
        else:
            raise RosterError(ROSTER_USAGE)
    except (NotPermitted, RosterError) as error:
        reply = notice(str(error))
    call.respond(response_type="ephemeral", **reply)


def _add_or_remove(services: Services, db, action: str, text: str) -> dict:  # noqa: ANN001
    user_ids, rest = split_mentions(text)
    if not user_ids:
        raise RosterError("Mention the people, for example `@Alex`. " + ROSTER_USAGE)
    if action == "remove":
        removed, missing = roster.remove(db, user_ids)
        db.flush()
        for user_id in removed:
            publish_home(services, db, user_id)
        return roster_changed((), (), (), removed, missing)
    options = _options(rest)
    zones, unknown = {}, []
    for user_id in user_ids:
        try:
            user = services.messenger.user_info(user_id)
        except SlackUnreachable:
            unknown.append(user_id)
            continue
        if user.get("deleted") or user.get("is_bot"):
            unknown.append(user_id)
        else:
            zones[user_id] = str(user.get("tz") or "UTC")
    if unknown:
        raise RosterError("Not added: " + ", ".join(f"<@{u}>" for u in unknown)
                          + " cannot be found in Slack, or is deactivated or a bot.")
    specs = [SupporterSpec(u, options.get("department", ""), options.get("role", "other"))
             for u in user_ids]
    result = roster.upsert(db, specs, now=services.clock.now(), time_zones=zones,
                           default_case_cap=services.settings.default_case_cap,
                           default_cooldown_hours=services.settings.default_cooldown_hours)
    db.flush()
    for user_id in result.added + result.changed:
        publish_home(services, db, user_id)
    return roster_changed(result.added, result.changed, result.unchanged)


def _options(text: str) -> dict[str, str]:
    try:
        words = shlex.split(text)
    except ValueError:
        raise RosterError("A quote is not closed. " + ROSTER_USAGE) from None
    options: dict[str, str] = {}
    for word in words:
        key, sep, value = word.partition("=")
        if not sep or key not in ("department", "role"):
            raise RosterError(f"I don't understand `{word[:40]}`. " + ROSTER_USAGE)
        options[key] = (roster.normalise_department(value) if key == "department"
                        else roster.normalise_role(value))
    return options


def available_command(call: Invocation) -> None:
    """A supporter says they can take requests from now."""
    call.ack()
    services: Services = call.context["services"]
    try:
        roster.set_available(call.context["db"], call.user_id, now=services.clock.now())
    except RosterError as error:
        call.respond(response_type="ephemeral", **notice(str(error).capitalize() + "."))
        return
    publish_home(services, call.context["db"], call.user_id)
    call.respond(response_type="ephemeral", **notice(
        "You are available. Requests may come to you within your hours."))


def away_command(call: Invocation) -> None:
    """A supporter steps away, until they return or until a time they give."""
    call.ack()
    services: Services = call.context["services"]
    db = call.context["db"]
    now = services.clock.now()
    try:
        supporter = roster.require(db, call.user_id)
        until = None
        if call.args:
            text = call.args.removeprefix("until ").strip()
            until = parse_until(text, now=now, tz=supporter.tz)
        roster.set_away(db, call.user_id, now=now, until=until)
    except (RosterError, TimeParseError) as error:
        message = str(error)
        call.respond(response_type="ephemeral", **notice(message[:1].upper() + message[1:]))
        return
    publish_home(services, db, call.user_id)
    when = (f"until {until.astimezone(until.tzinfo):%A %d %B at %H:%M} ({supporter.tz})"
            if until else "until you say `/peersupport available`")
    call.respond(response_type="ephemeral", **notice(f"You are away {when}. No requests will "
                                                     "come to you meanwhile."))
