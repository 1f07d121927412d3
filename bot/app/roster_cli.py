"""`python -m bot roster import FILE` and `roster export [FILE]`."""

from __future__ import annotations

import sys
from pathlib import Path

from bot.infra import audit
from bot.infra.clock import SystemClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.infra.messaging import Messenger, build_client
from bot.infra.settings import Settings
from bot.roster import csv_import as roster_csv


def run_roster(settings: Settings, action: str, file: str) -> int:
    """Import or export; returns the exit code (1 when the file has problems)."""
    engine = make_engine(settings.database_url)
    migrate(engine)
    sessions = make_sessions(engine)
    if action == "export":
        with sessions.begin() as session:
            text = roster_csv.export(session)
            audit.record(session, None, "roster.export", "cli", now=SystemClock().now())
        if file == "-":
            sys.stdout.write(text)
        else:
            Path(file).write_text(text, encoding="utf-8")
            print(f"peersupport: wrote {text.count(chr(10)) - 1} supporters to {file}")
        return 0
    settings.require_slack(transport="clock")  # time zones come from Slack's users.info
    try:
        text = sys.stdin.read() if file == "-" else Path(file).read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as error:
        print(f"peersupport: cannot read {file}: {error}", file=sys.stderr)
        return 1
    parsed = roster_csv.parse(text)
    if not parsed.problems:
        zones = roster_csv.look_up_time_zones(parsed, Messenger(build_client(settings)).user_info)
    if parsed.problems:
        print(roster_csv.format_problems(file, parsed.problems), file=sys.stderr)
        print(f"peersupport: nothing was imported; fix the {len(parsed.problems)} problem(s) "
              "above and run the import again.", file=sys.stderr)
        return 1
    with sessions.begin() as session:
        result = roster_csv.import_rows(
            session, parsed, zones, now=SystemClock().now(),
            default_case_cap=settings.default_case_cap,
            default_cooldown_hours=settings.default_cooldown_hours)
    for label, ids in (("added", result.added), ("changed", result.changed),
                       ("unchanged", result.unchanged)):
        print(f"{label} {len(ids)}" + (f": {', '.join(ids)}" if ids else ""))
    return 0
