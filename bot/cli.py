"""`python -m bot [run|web|clock|socket|migrate|roster|demo|sandbox]`: start-up, with one clear line
for any bad setting; with no Slack settings at all, the bare command plays the demo instead."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence
from typing import TYPE_CHECKING
from urllib.error import URLError

from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import OperationalError

from bot.library import ContentError
from bot.settings import Settings, SettingsError

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler
    from slack_bolt import App

    from bot.duework import DueWorkEngine

log = logging.getLogger("peersupport")

COMMANDS = {
    "run": "everything in one process: migrations, the Slack app and the scheduler (default)",
    "web": "the HTTP server alone (several workers); pair it with a 'clock' process",
    "clock": "the due-work scheduler alone",
    "socket": "the Slack app over Socket Mode, without the scheduler",
    "migrate": "apply database migrations and exit",
    "roster": "import or export the supporter roster as CSV",
    "demo": "play the whole program in a local Slack sandbox (no workspace or tokens needed)",
    "sandbox": "act as anyone in a local Slack sandbox from the terminal (no workspace needed)",
}
NO_TOKENS = ("peersupport: no Slack tokens are set (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET), so this "
             "is the demo in a local sandbox; to connect a real workspace see 'Create the Slack "
             "app' in README.md.")


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(prog="python -m bot", description="Peer support Slack app")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, text in COMMANDS.items():
        sub = commands.add_parser(name, help=text, description=text)
        if name == "roster":
            actions = sub.add_subparsers(dest="action", metavar="ACTION", required=True)
            importer = actions.add_parser("import", help="add or update supporters from a CSV "
                                          "file with the columns user_id,department,role")
            importer.add_argument("file", help="the CSV file ('-' for standard input)")
            exporter = actions.add_parser("export", help="write the roster as CSV")
            exporter.add_argument("file", nargs="?", default="-",
                                  help="where to write it (default: standard output)")
        if name == "demo":
            _demo_options(sub)
    return parser


def _demo_options(parser: argparse.ArgumentParser) -> None:
    from bot.sandbox.demo import DEFAULT_CHART

    parser.add_argument("--chart", default=DEFAULT_CHART, metavar="PATH",
                        help=f"where to write the results chart (default: {DEFAULT_CHART})")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the steps and the outcomes, not what people see")
    parser.add_argument("--pace", type=float, default=None, metavar="SECONDS",
                        help="pause after each step (default: 0.3 in a terminal, else 0)")


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build settings once, and run the chosen process."""
    args = _parser().parse_args(argv)
    command = args.command or "run"
    if command in ("demo", "sandbox"):
        # The sandbox needs no settings at all: SLACK_* and the rest are ignored on purpose.
        return _sandbox(command, args)
    try:
        settings = Settings.from_env(os.environ)
        if args.command is None and not any(_configured(settings)):
            # Only the bare command falls back to the demo; `run`, `web`, `clock` and `socket`
            # named explicitly (as a Procfile does) still fail loudly without their tokens, and
            # so does the bare command when some Slack settings are given but not all.
            print(NO_TOKENS, flush=True)
            return _sandbox("demo", _parser().parse_args(["demo"]))
        from bot.logs import configure_logging

        configure_logging(settings.log_level)
        if command == "roster":
            from bot.roster_cli import run_roster

            return run_roster(settings, args.action, args.file)
        return _COMMANDS[command](settings)
    except (SettingsError, ContentError) as error:
        print(f"peersupport: {error}", file=sys.stderr)
        return 2
    except OperationalError as error:
        reason = str(error.orig).splitlines()[0] if error.orig else type(error).__name__
        print(f"peersupport: DATABASE_URL could not be used ({reason}); check the address, "
              "that the server is running, and the credentials.", file=sys.stderr)
        return 2
    except (BoltError, SlackApiError) as error:
        code = error.response.get("error") if isinstance(error, SlackApiError) else None
        detail = code or str(error).splitlines()[0]
        print(f"peersupport: Slack refused the SLACK_BOT_TOKEN ({detail}); copy the Bot User "
              "OAuth Token again from https://api.slack.com/apps (OAuth & Permissions).",
              file=sys.stderr)
        return 2
    except URLError as error:
        print(f"peersupport: could not reach Slack at SLACK_API_URL ({error.reason}); check the "
              "network, or leave SLACK_API_URL unset to use Slack's own address.", file=sys.stderr)
        return 2


def _configured(settings: Settings) -> tuple[bool, ...]:
    return (bool(settings.slack_bot_token), bool(settings.slack_signing_secret),
            bool(settings.slack_app_token))


def _sandbox(command: str, args: argparse.Namespace) -> int:
    from bot.logs import configure_logging

    configure_logging("WARNING")  # the story is the output; app logs would only interleave
    if command == "sandbox":
        from bot.sandbox.shell import run_shell

        return run_shell()
    from pathlib import Path

    from bot.sandbox.demo import play

    pace = args.pace if args.pace is not None else (0.3 if sys.stdout.isatty() else 0.0)
    return play(chart=Path(args.chart), quiet=args.quiet, pace=pace)


def _migrate(settings: Settings) -> int:
    from bot.db import make_engine, migrate

    migrate(make_engine(settings.database_url))
    print("peersupport: database is up to date")
    return 0


def _run(settings: Settings) -> int:
    transport = "socket" if settings.socket_mode else "http"
    settings.require_slack(transport=transport)
    from bot.app import create_app
    from bot.runtime import build_runtime
    from bot.scheduler import build_scheduler, start_in_gunicorn_worker
    from handlers.jobs import bootstrap_jobs

    runtime = build_runtime(settings)
    bolt = create_app(runtime)
    bootstrap_jobs(runtime)
    engine = runtime.duework()
    scheduler = build_scheduler(engine, settings.tick_seconds)
    if settings.socket_mode:
        return _run_socket_mode(bolt, settings, scheduler, engine)
    from bot.web import serve

    # One worker, and the scheduler inside it: one process serves Slack and runs the clock.
    serve(runtime, bolt, workers=1,
          in_worker=lambda: start_in_gunicorn_worker(scheduler, engine))
    return 0


def _run_socket_mode(bolt: App, settings: Settings, scheduler: BackgroundScheduler,
                     engine: DueWorkEngine) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.scheduler import StopSignal, stop_scheduler

    stop = StopSignal()
    scheduler.start()
    log.info("connecting to Slack over Socket Mode")
    handler = SocketModeHandler(bolt, settings.slack_app_token)
    handler.connect()  # not start(): that would block this thread past any stop signal
    stop.wait()
    log.info("stopping: finishing the due work already started")
    stop_scheduler(scheduler, engine)
    handler.close()
    return 0


def _web(settings: Settings) -> int:
    settings.require_slack(transport="http")
    from bot.app import create_app
    from bot.runtime import build_runtime
    from bot.web import serve

    runtime = build_runtime(settings)
    serve(runtime, create_app(runtime), workers=settings.web_workers)
    return 0


def _clock(settings: Settings) -> int:
    settings.require_slack(transport="clock")
    from bot.runtime import build_runtime
    from bot.scheduler import run_clock
    from handlers.jobs import bootstrap_jobs

    runtime = build_runtime(settings)
    bootstrap_jobs(runtime)
    log.info("clock started: ticking every %.1f s", settings.tick_seconds)
    run_clock(runtime.duework(), settings.tick_seconds)  # until SIGTERM or SIGINT
    return 0


def _socket(settings: Settings) -> int:
    settings.require_slack(transport="socket")
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app import create_app
    from bot.runtime import build_runtime

    runtime = build_runtime(settings)
    SocketModeHandler(create_app(runtime), settings.slack_app_token).start()
    return 0


_COMMANDS = {"run": _run, "web": _web, "clock": _clock, "socket": _socket, "migrate": _migrate}
