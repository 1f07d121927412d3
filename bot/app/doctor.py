"""`python -m bot doctor`: every way the support line can be quietly broken, checked at once.

Each check gives one line, `ok    …` or `FAIL  …` with what to do. Nothing here prints a token,
a secret or the database's address, and nothing is changed: no migration, no message sent.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime, timedelta
from urllib.error import URLError

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from sqlalchemy import Engine, func, select
from sqlalchemy.exc import SQLAlchemyError
from sqlalchemy.orm import Session

from bot.infra import health
from bot.infra.clock import Clock, SystemClock
from bot.infra.db import make_engine, make_sessions
from bot.infra.messaging import Messenger, SlackAppProblem, SlackUnreachable, build_client
from bot.infra.models import Pulse, Supporter
from bot.infra.settings import SLACK_APPS_URL, Settings
from bot.library import ContentError, load_library

MIGRATE = "run 'python -m bot migrate'"
SHOWN = 10  # people named on one line at most


@dataclass(frozen=True)
class Check:
    """One check's outcome, as the line the doctor prints."""

    name: str
    ok: bool
    text: str

    @property
    def line(self) -> str:
        """`ok    text` or `FAIL  name: text`."""
        return f"ok    {self.text}" if self.ok else f"FAIL  {self.name}: {self.text}"


def ok(name: str, text: str) -> Check:
    """A passing check; `text` says what was found."""
    return Check(name, True, text)


def fail(name: str, text: str) -> Check:
    """A failing check; `text` says what is wrong and what to do."""
    return Check(name, False, text)


def examine(settings: Settings, *, client: WebClient | None = None, engine: Engine | None = None,
            clock: Clock | None = None) -> list[Check]:
    """Run every check, in order, and return their outcomes."""
    now = (clock or SystemClock()).now()
    messenger = (Messenger(client or build_client(settings), parallel=settings.slack_parallel)
                 if settings.slack_bot_token else None)
    token = _guarded("token", lambda: _token(settings, messenger))
    slack = messenger if token.ok else None
    owned = engine is None
    engine = engine or make_engine(settings.database_url)
    try:
        database = _guarded("database", lambda: _database(engine))
        sessions = make_sessions(engine) if database.ok else None
        checks = [
            token,
            _needs_slack("scopes", slack, _scopes),
            database,
            _guarded("content", lambda: _content(settings)),
            _needs_db("prompt secret", sessions, lambda db: _prompt_secret(settings, db)),
            _needs_slack("coordinators", slack, lambda m: _people(
                m, "coordinators", settings.coordinators, settings.coordinator_group,
                "PEERSUPPORT_COORDINATORS", required=True)),
            _needs_slack("leaders", slack, lambda m: _people(
                m, "leaders", settings.leaders, settings.leader_group, "PEERSUPPORT_LEADERS",
                required=False)),
            _needs_both("roster", slack, sessions, _roster),
            _needs_db("clock", sessions, lambda db: _clock(settings, db, now)),
            _needs_db("outbox", sessions, lambda db: _outbox(db, now)),
        ]
    finally:
        if owned:
            engine.dispose()
    return checks


def run_doctor(settings: Settings, print_line: Callable[[str], None] = print) -> int:
    """Print one line per check; 0 when all pass, else 1."""
    # The lines say everything; the app's own log lines would only repeat them on stderr.
    logging.disable(logging.ERROR)
    try:
        checks = examine(settings)
    finally:
        logging.disable(logging.NOTSET)
    for check in checks:
        print_line(check.line)
    return 0 if all(check.ok for check in checks) else 1


# -- the checks ------------------------------------------------------------------------------

def _token(settings: Settings, messenger: Messenger | None) -> Check:
    if messenger is None:
        return fail("token", f"SLACK_BOT_TOKEN is not set; put the app's Bot User OAuth Token "
                    f"(xoxb-...) from {SLACK_APPS_URL} (OAuth & Permissions) in the environment")
    identity = messenger.auth_test()
    return ok("token", f"token works (bot {identity.get('user', '?')} in {identity.get('team', '?')})")


def _scopes(messenger: Messenger) -> Check:
    granted = messenger.granted_scopes()
    if not granted:
        return fail("scopes", "Slack did not say which scopes the token has (no x-oauth-scopes "
                    "header); check that SLACK_API_URL reaches Slack itself")
    missing = [scope for scope in health.SLACK_SCOPES if scope not in granted]
    if missing:
        return fail("scopes", f"missing {', '.join(missing)}; add them to the app (update it from "
                    f"manifest.yml at {SLACK_APPS_URL}, or add them under OAuth & Permissions), "
                    "then reinstall it to the workspace")
    return ok("scopes", f"scopes: all {len(health.SLACK_SCOPES)} that manifest.yml asks for are granted")


def _database(engine: Engine) -> Check:
    with engine.connect() as connection:
        current, newest = health.migration_state(connection)
    if current == newest:
        return ok("database", f"database reachable, at the newest migration ({newest})")
    if current is None:
        return fail("database", f"no migration applied (the newest is {newest}); {MIGRATE}")
    return fail("database", f"at migration {current}, the newest is {newest}; {MIGRATE} (if "
                f"{current} is newer, this code is older than the database: deploy the new "
                "release)")


def _content(settings: Settings) -> Check:
    try:
        library = load_library(settings.content_dir)
    except ContentError as error:
        return fail("content", _first_line(str(error)))
    return ok("content", f"content loads ({len(library.all_entries)} entries)")


def _prompt_secret(settings: Settings, db: Session) -> Check:
    prompts = db.scalar(select(func.count()).select_from(Pulse).where(Pulse.active)) or 0
    if settings.pulse_secret:
        return ok("prompt secret", "prompt secret is set")
    if prompts:
        some = "1 wellbeing prompt exists" if prompts == 1 else f"{prompts} wellbeing prompts exist"
        return fail("prompt secret", f"{some} but PEERSUPPORT_PULSE_SECRET is not set, so nobody "
                    "can answer them; set it again to the value it had (see docs/operations.md)")
    return ok("prompt secret", "prompt secret: not needed (no wellbeing prompts)")


def _people(messenger: Messenger, what: str, listed: Sequence[str], group: str | None,
            variable: str, *, required: bool) -> Check:
    people = set(listed)
    if group is not None:
        people |= set(messenger.usergroup_members(group))
    if not people:
        if required:
            return fail(what, f"none configured; set {variable} (or the user group), or "
                        "nobody hears of requests left waiting or of a stopped clock")
        return ok(what, f"{what}: none configured")
    gone = _inactive(messenger, sorted(people))
    if gone:
        where = f"{variable}{' or the user group' if group else ''}"
        return fail(what, f"{_named(gone)}; take them out of {where}, or reactivate them")
    return ok(what, f"{what}: {len(people)}, each active in Slack")


def _roster(messenger: Messenger, db: Session) -> Check:
    supporters = list(db.scalars(select(Supporter.user_id).order_by(Supporter.user_id)))
    if not supporters:
        return fail("roster", "nobody is on it, so no request can be offered to anyone; import it "
                    "with 'python -m bot roster import FILE.csv'")
    gone = _inactive(messenger, supporters)
    if gone:
        return fail("roster", f"{_named(gone)}; remove them with '/peersupport roster remove' (or "
                    "a roster import), so requests are not offered to them")
    count = f"{len(supporters)} supporter{'s' if len(supporters) != 1 else ''}"
    return ok("roster", f"roster: {count}, each active in Slack")


def _clock(settings: Settings, db: Session, now: datetime) -> Check:
    status = health.clock_status(db, now=now, limit=health.limit_for(settings))
    if status.ticked_at is None:
        return fail("clock", "no clock has ticked on this database; start 'python -m bot clock' "
                    "(or 'run', which includes it): check-ins, offer timeouts and escalations "
                    "wait on it")
    ago = _duration(now - status.ticked_at)
    if status.stale:
        return fail("clock", f"last ticked {ago} ago ({status.ticked_at:%Y-%m-%d %H:%M} UTC), "
                    f"more than the {_duration(status.limit)} allowed; check that the clock "
                    "process runs and read its log: check-ins, offer timeouts and escalations "
                    "wait on it")
    return ok("clock", f"clock ticked {ago} ago")


def _outbox(db: Session, now: datetime) -> Check:
    found = health.refusals(db, now=now, since=now - health.REFUSED_WINDOW)
    if not found.refused and not found.held_back:
        return ok("outbox", "outbox: Slack refused no message in the past day")
    parts = []
    if found.refused:
        parts.append(f"Slack refused {found.refused} message{'s' if found.refused != 1 else ''} "
                     "for good in the past day (the log says why for each)")
    if found.held_back:
        parts.append(f"{found.held_back} more {'are' if found.held_back != 1 else 'is'} held "
                     f"back because Slack refuses the app ({', '.join(found.errors)}): fix the "
                     "token or scopes and they go out")
    return fail("outbox", "; ".join(parts))


# -- helpers ---------------------------------------------------------------------------------

def _inactive(messenger: Messenger, user_ids: Sequence[str]) -> list[tuple[str, str]]:
    """(user id, what is wrong) for each person who is deactivated or not in the workspace."""

    def look(user_id: str) -> tuple[str, str] | None:
        try:
            profile = messenger.user_info(user_id)
        except SlackUnreachable:
            return user_id, "not in this workspace"
        return (user_id, "deactivated") if profile.get("deleted") else None

    return [found for found in messenger.in_parallel(look, list(user_ids)) if found is not None]


def _named(gone: list[tuple[str, str]]) -> str:
    shown = ", ".join(f"{user_id} ({what})" for user_id, what in gone[:SHOWN])
    more = f" and {len(gone) - SHOWN} more" if len(gone) > SHOWN else ""
    return f"{len(gone)} cannot be reached in Slack: {shown}{more}"


def _duration(delta: timedelta) -> str:
    seconds = max(0, int(delta.total_seconds()))
    if seconds < 120:
        return f"{seconds} s"
    if seconds < 120 * 60:
        return f"{seconds // 60} min"
    if seconds < 48 * 3600:
        return f"{seconds // 3600} h"
    return f"{seconds // 86400} days"


def _first_line(text: str) -> str:
    return text.strip().splitlines()[0] if text.strip() else "unknown error"


def describe(error: Exception) -> str:
    """What went wrong, in a few words and never with a secret: Slack's error code, the
    network's reason, the database driver's first line, or the error's type."""
    if isinstance(error, SlackAppProblem):
        return f"Slack refused the app: {error.error}"
    if isinstance(error, SlackApiError):
        return f"Slack answered {error.response.get('error', 'an error')}"
    if isinstance(error, URLError):
        return f"Slack could not be reached: {error.reason}"
    if isinstance(error, SQLAlchemyError):
        orig = getattr(error, "orig", None)
        return _first_line(str(orig)) if orig is not None else type(error).__name__
    if isinstance(error, OSError):
        return f"{type(error).__name__}: {error.strerror or 'connection failed'}"
    return type(error).__name__


def _guarded(name: str, check: Callable[[], Check]) -> Check:
    try:
        return check()
    except Exception as error:  # noqa: BLE001 - a doctor reports every failure as a line
        return fail(name, f"{describe(error)}{_advice(name, error)}")


def _advice(name: str, error: Exception) -> str:
    if name == "token" and isinstance(error, SlackAppProblem):
        return (f"; copy the Bot User OAuth Token again from {SLACK_APPS_URL} (OAuth & "
                "Permissions)")
    if name == "token" and isinstance(error, URLError | OSError):
        return "; check the network (and HTTPS_PROXY), or SLACK_API_URL if it is set"
    if name == "database":
        return "; check DATABASE_URL, that the server runs, and the credentials"
    return ""


def _needs_slack(name: str, messenger: Messenger | None,
                 check: Callable[[Messenger], Check]) -> Check:
    if messenger is None:
        return fail(name, "not checked, since the token does not work")
    return _guarded(name, lambda: check(messenger))


def _needs_db(name: str, sessions: Callable[[], Session] | None,
              check: Callable[[Session], Check]) -> Check:
    if sessions is None:
        return fail(name, "not checked, since the database is not ready")

    def run() -> Check:
        with sessions() as db:
            return check(db)

    return _guarded(name, run)


def _needs_both(name: str, messenger: Messenger | None, sessions: Callable[[], Session] | None,
                check: Callable[[Messenger, Session], Check]) -> Check:
    if messenger is None:
        return fail(name, "not checked, since the token does not work")
    return _needs_db(name, sessions, lambda db: check(messenger, db))
