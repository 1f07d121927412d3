"""`python -m bot [run|web|clock|socket|migrate|doctor|roster|demo|sandbox]`: start-up, with one clear line
and exit 2 for any mistake on the command line or in the settings; with no Slack settings at all,
the bare command plays the demo instead."""

from __future__ import annotations

import argparse
import logging
import math
import os
import sys
import textwrap
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple, NoReturn
from urllib.error import URLError

from slack_bolt.error import BoltError
from slack_sdk.errors import SlackApiError
from sqlalchemy.exc import OperationalError

from bot.infra.settings import DEFAULT_SLACK_API_URL, Settings, SettingsError
from bot.library import ContentError

if TYPE_CHECKING:
    from apscheduler.schedulers.background import BackgroundScheduler
    from slack_bolt import App

    from bot.app.runtime import Runtime
    from bot.app.scheduler import Watch
    from bot.infra.duework import DueWorkEngine

log = logging.getLogger("peersupport")


class Command(NamedTuple):
    """What one subcommand does, the settings it reads and its exit codes, for its --help."""

    summary: str
    settings: str
    exits: str


_SERVES = ("0 after a clean stop (SIGTERM or Ctrl-C; due work already started is finished); "
           "2 for a missing or invalid setting, or a database or Slack that cannot be reached")
COMMANDS = {
    "run": Command(
        "everything in one process: migrations, the Slack app and the scheduler (default)",
        "SLACK_BOT_TOKEN, and SLACK_APP_TOKEN for Socket Mode or else SLACK_SIGNING_SECRET and "
        "PORT for HTTP; DATABASE_URL", _SERVES),
    "web": Command(
        "the HTTP server alone (several workers); pair it with a 'clock' process",
        "SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET, DATABASE_URL, PORT, WEB_CONCURRENCY", _SERVES),
    "clock": Command(
        "the due-work scheduler alone",
        "SLACK_BOT_TOKEN, DATABASE_URL, PEERSUPPORT_TICK_SECONDS", _SERVES),
    "socket": Command(
        "the Slack app over Socket Mode, without the scheduler",
        "SLACK_BOT_TOKEN, SLACK_APP_TOKEN, DATABASE_URL", _SERVES),
    "migrate": Command(
        "apply database migrations and exit",
        "DATABASE_URL",
        "0 when the database is up to date; 2 for an invalid DATABASE_URL or a database that "
        "cannot be reached"),
    "doctor": Command(
        "check the Slack token and scopes, the database, content, people, the clock and "
        "messages Slack refuses, one line each",
        "SLACK_BOT_TOKEN, DATABASE_URL, and what the checks look at (PEERSUPPORT_COORDINATORS, "
        "PEERSUPPORT_LEADERS, PEERSUPPORT_CONTENT_DIR, PEERSUPPORT_PULSE_SECRET)",
        "0 when every check passes; 1 when one fails (its line starts with FAIL and says what to "
        "do); 2 for an invalid setting"),
    "roster": Command(
        "import or export the supporter roster as CSV",
        "DATABASE_URL; import also SLACK_BOT_TOKEN (each supporter's time zone comes from Slack)",
        "0 done; 1 the file has problems, each listed as FILE:LINE: problem, and nothing was "
        "imported; 2 for a file that cannot be read or written, or a missing or invalid setting"),
    "demo": Command(
        "play the whole program in a local Slack sandbox (no workspace or tokens needed)",
        "none: SLACK_* and DATABASE_URL are ignored; the sandbox has its own database",
        "0 when every outcome came about; 1 when one did not; 2 for an invalid option"),
    "sandbox": Command(
        "act as anyone in a local Slack sandbox from the terminal (no workspace needed)",
        "none: SLACK_* and DATABASE_URL are ignored; the sandbox has its own database",
        "0 when you quit; 2 for an invalid option"),
}
SETTINGS_NOTE = ("Settings come from the environment and from .env in the current directory; "
                 ".env.example lists every one.")
NO_TOKENS = ("peersupport: no Slack tokens are set (SLACK_BOT_TOKEN, SLACK_SIGNING_SECRET), so this "
             "is the demo in a local sandbox; to connect a real workspace see 'Create the Slack "
             "app' in README.md.")


class _Parser(argparse.ArgumentParser):
    """An argument parser whose every mistake is one line on stderr and exit 2."""

    def error(self, message: str) -> NoReturn:
        """Print one line naming the mistake and where help is, then exit 2."""
        self.exit(2, f"{self.prog}: {message}; see '{self.prog} --help'.\n")


class _HelpFormatter(argparse.HelpFormatter):
    """Wraps each line of a description or epilog on its own, so the lines stay apart."""

    def _fill_text(self, text: str, width: int, indent: str) -> str:
        return "\n".join(textwrap.fill(line, width, initial_indent=indent, subsequent_indent=indent)
                         for line in text.splitlines())


def program_name(argv0: str | None = None) -> str:
    """How the user started us: `peersupport` from the console script, else `python -m bot`."""
    path = Path(argv0 if argv0 is not None else (sys.argv[0] if sys.argv else ""))
    return "python -m bot" if path.stem in ("__main__", "") else path.name


def version() -> str:
    """The installed package's version, or pyproject.toml's when run from a plain checkout."""
    from importlib.metadata import PackageNotFoundError
    from importlib.metadata import version as installed

    try:
        return installed("peersupport")
    except PackageNotFoundError:
        import tomllib

        pyproject = Path(__file__).resolve().parents[1] / "pyproject.toml"
        try:
            return str(tomllib.loads(pyproject.read_text())["project"]["version"])
        except (OSError, KeyError, tomllib.TOMLDecodeError):
            return "unknown"


def _epilog(command: Command) -> str:
    return f"settings: {command.settings}.\n{SETTINGS_NOTE}\nexit codes: {command.exits}."


def _parser(prog: str | None = None) -> _Parser:
    parser = _Parser(prog=prog or program_name(), formatter_class=_HelpFormatter,
                     description="Peer support Slack app: a clinician asks for support, a trained "
                     "peer supporter answers, and the program checks in afterwards.",
                     epilog=f"{SETTINGS_NOTE}\nEach COMMAND --help says what it needs and its "
                     "exit codes; any mistake is one line on stderr and exit 2.")
    parser.add_argument("--version", action="version", version=f"peersupport {version()}")
    commands = parser.add_subparsers(dest="command", metavar="COMMAND")
    for name, command in COMMANDS.items():
        sub = commands.add_parser(name, help=command.summary, description=command.summary[0]
                                  .upper() + command.summary[1:] + ".", epilog=_epilog(command),
                                  formatter_class=_HelpFormatter)
        if name == "roster":
            _roster_actions(sub)
        if name == "demo":
            _demo_options(sub)
    return parser


def _roster_actions(parser: argparse.ArgumentParser) -> None:
    actions = parser.add_subparsers(dest="action", metavar="ACTION", required=True)
    importer = actions.add_parser(
        "import", help="add or update supporters from a CSV file with the columns "
        "user_id,department,role", formatter_class=_HelpFormatter,
        description="Add or update supporters from a CSV file whose first line is "
        "user_id,department,role. Every line is checked first, and Slack is asked for each "
        "person's time zone; if any line has a problem, every problem is listed and nothing is "
        "imported. Supporters not in the file are left as they are.",
        epilog=_epilog(COMMANDS["roster"]))
    importer.add_argument("file", metavar="FILE", type=_readable_file,
                          help="the CSV file ('-' for standard input)")
    exporter = actions.add_parser(
        "export", help="write the roster as CSV", formatter_class=_HelpFormatter,
        description="Write the roster as CSV in the format import reads, so exporting and "
        "importing again changes nothing.", epilog=_epilog(COMMANDS["roster"]))
    exporter.add_argument("file", metavar="FILE", nargs="?", default="-", type=_writable_file,
                          help="where to write it (default: standard output)")


def _demo_options(parser: argparse.ArgumentParser) -> None:
    from bot.sandbox.demo import DEFAULT_CHART

    parser.add_argument("--chart", default=DEFAULT_CHART, metavar="PATH", type=_writable_file,
                        help=f"where to write the results chart (default: {DEFAULT_CHART})")
    parser.add_argument("--quiet", action="store_true",
                        help="print only the steps and the outcomes, not what people see")
    parser.add_argument("--pace", type=_seconds, default=None, metavar="SECONDS",
                        help="pause after each step (default: 0.3 in a terminal, else 0)")


def _seconds(text: str) -> float:
    try:
        seconds = float(text)
    except ValueError:
        seconds = math.nan
    if not 0 <= seconds <= 60:  # also refuses nan
        raise argparse.ArgumentTypeError(f"must be a number of seconds from 0 to 60, got {text!r}")
    return seconds


def _writable_file(text: str) -> str:
    # Checked before anything runs, so a bad path does not surface only after the work is done.
    if text == "-":
        return text
    path = Path(text).expanduser()
    folder = path.parent
    if path.is_dir():
        raise argparse.ArgumentTypeError(f"{text} is a folder; give a file name in it")
    if not folder.is_dir():
        raise argparse.ArgumentTypeError(f"the folder {folder} does not exist; create it or "
                                         "choose another path")
    if not os.access(folder, os.W_OK | os.X_OK) or (path.exists() and not os.access(path, os.W_OK)):
        raise argparse.ArgumentTypeError(f"cannot write {text}: permission denied; choose a "
                                         "path you can write to")
    return str(path)


def _readable_file(text: str) -> str:
    if text == "-":
        return text
    path = Path(text).expanduser()
    if not path.is_file():
        what = "is a folder" if path.is_dir() else "does not exist"
        raise argparse.ArgumentTypeError(f"{text} {what}; give the CSV file's path")
    if not os.access(path, os.R_OK):
        raise argparse.ArgumentTypeError(f"cannot read {text}: permission denied")
    return str(path)


def main(argv: Sequence[str] | None = None) -> int:
    """Parse the command line, build settings once, and run the chosen process."""
    parser = _parser()
    args = parser.parse_args(argv)
    command = args.command or "run"
    if command in ("demo", "sandbox"):
        # The sandbox needs no settings at all: SLACK_* and the rest are ignored on purpose.
        return _sandbox(command, args)
    settings: Settings | None = None
    try:
        settings = Settings.from_env(os.environ)
        if args.command is None and not any(_configured(settings)):
            # Only the bare command falls back to the demo; `run`, `web`, `clock` and `socket`
            # named explicitly (as a Procfile does) still fail loudly without their tokens, and
            # so does the bare command when some Slack settings are given but not all.
            print(NO_TOKENS, flush=True)
            return _sandbox("demo", parser.parse_args(["demo"]))
        _check_sqlite_folder(settings.database_url)
        from bot.infra.logs import configure_logging

        configure_logging(settings.log_level, settings.log_format)
        if command == "roster":
            from bot.app.roster_cli import run_roster

            return run_roster(settings, args.action, args.file)
        return _COMMANDS[command](settings)
    except (SettingsError, ContentError) as error:
        return _fail(str(error))
    except OperationalError as error:
        reason = str(error.orig).splitlines()[0] if error.orig else type(error).__name__
        return _fail(f"DATABASE_URL could not be used ({reason}); check the address, that the "
                     "server is running, and the credentials.")
    except (BoltError, SlackApiError) as error:
        code = error.response.get("error") if isinstance(error, SlackApiError) else None
        detail = code or str(error).splitlines()[0]
        return _fail(f"Slack refused the SLACK_BOT_TOKEN ({detail}); copy the Bot User OAuth "
                     "Token again from https://api.slack.com/apps (OAuth & Permissions).")
    except URLError as error:
        return _fail(_unreachable_slack(settings, error))
    except OSError as error:
        # A file the process needs (the SQLite database's folder, an export target) failed
        # between the checks up front and its use.
        where = f" ({error.filename})" if error.filename else ""
        return _fail(f"{error.strerror or error}{where}.")


def _fail(message: str) -> int:
    print(f"peersupport: {message}", file=sys.stderr)
    return 2


def _unreachable_slack(settings: Settings | None, error: URLError) -> str:
    address = settings.slack_api_url if settings else DEFAULT_SLACK_API_URL
    if address == DEFAULT_SLACK_API_URL:
        proxy = any(os.environ.get(name) for name in ("HTTPS_PROXY", "https_proxy"))
        fix = ("check the network and the proxy set in HTTPS_PROXY" if proxy
               else "check the network, and set HTTPS_PROXY if it needs a proxy")
    else:
        fix = "check the address and the network, or leave SLACK_API_URL unset to use Slack's own"
    return f"could not reach Slack at {address} ({error.reason}); {fix}."


def _check_sqlite_folder(url: str) -> None:
    """Refuse a SQLite file whose folder is missing or read-only, before anything opens it."""
    if not url.startswith("sqlite:///"):
        return
    from sqlalchemy.engine import make_url

    database = make_url(url).database
    if not database or database == ":memory:" or database.startswith("file:"):
        return
    folder = Path(database).expanduser().parent
    if not folder.is_dir():
        raise SettingsError(f"DATABASE_URL points into the folder {folder}, which does not "
                            "exist: create it, or use a path such as sqlite:///peersupport.sqlite3.")
    if not os.access(folder, os.W_OK | os.X_OK):
        raise SettingsError(f"DATABASE_URL points into the folder {folder}, which this user "
                            "cannot write (SQLite keeps its journal and a lock file beside the "
                            "database): choose a writable folder.")


def _configured(settings: Settings) -> tuple[bool, ...]:
    return (bool(settings.slack_bot_token), bool(settings.slack_signing_secret),
            bool(settings.slack_app_token))


def _sandbox(command: str, args: argparse.Namespace) -> int:
    from bot.infra.logs import configure_logging

    configure_logging("WARNING")  # the story is the output; app logs would only interleave
    if command == "sandbox":
        from bot.sandbox.shell import run_shell

        return run_shell()
    from bot.sandbox.demo import play

    pace = args.pace if args.pace is not None else (0.3 if sys.stdout.isatty() else 0.0)
    return play(chart=Path(args.chart), quiet=args.quiet, pace=pace)


def _doctor(settings: Settings) -> int:
    from bot.app.doctor import run_doctor

    return run_doctor(settings)


def _migrate(settings: Settings) -> int:
    from bot.infra.db import make_engine, migrate

    migrate(make_engine(settings.database_url))
    print("peersupport: database is up to date")
    return 0


def _run(settings: Settings) -> int:
    transport = "socket" if settings.socket_mode else "http"
    settings.require_slack(transport=transport)
    from bot.app.runtime import build_runtime
    from bot.app.scheduler import build_scheduler, start_in_gunicorn_worker
    from bot.app.slack_app import create_app
    from handlers import bootstrap_jobs

    runtime = build_runtime(settings)
    bolt = create_app(runtime)
    bootstrap_jobs(runtime.services)
    engine = runtime.duework()
    scheduler = build_scheduler(engine, settings.tick_seconds)
    if settings.socket_mode:
        return _run_socket_mode(runtime, bolt, scheduler, engine)
    from bot.app.web import serve

    # One worker, and the scheduler inside it: one process serves Slack and runs the clock.
    serve(runtime, bolt, workers=1,
          in_worker=lambda: start_in_gunicorn_worker(scheduler, engine))
    return 0


def _run_socket_mode(runtime: Runtime, bolt: App, scheduler: BackgroundScheduler,
                     engine: DueWorkEngine) -> int:
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app.scheduler import StopSignal, stop_scheduler

    stop = StopSignal()
    watch, sweep = _start_socket_process(runtime)
    scheduler.start()
    log.info("connecting to Slack over Socket Mode")
    handler = SocketModeHandler(bolt, runtime.settings.slack_app_token)
    handler.connect()  # not start(): that would block this thread past any stop signal
    stop.wait()
    log.info("stopping: finishing the due work already started")
    watch.stop()
    sweep.stop()
    stop_scheduler(scheduler, engine)
    handler.close()
    return 0


def _web(settings: Settings) -> int:
    settings.require_slack(transport="http")
    from bot.app.runtime import build_runtime
    from bot.app.slack_app import create_app
    from bot.app.web import serve

    runtime = build_runtime(settings)
    serve(runtime, create_app(runtime), workers=settings.web_workers)
    return 0


def _clock(settings: Settings) -> int:
    settings.require_slack(transport="clock")
    from bot.app.runtime import build_runtime, freeze_startup_heap
    from bot.app.scheduler import run_clock
    from bot.infra.metrics import start_clock_metrics
    from handlers import bootstrap_jobs

    yield_to_web(settings.clock_nice)
    runtime = build_runtime(settings)
    bootstrap_jobs(runtime.services)
    start_clock_metrics(settings, runtime.sessions, runtime.clock)
    freeze_startup_heap()
    listens = runtime.listens()
    log.info("clock started: ticking every %.1f s%s", settings.tick_seconds,
             "; sending messages as soon as they are committed" if listens else "")
    run_clock(runtime.duework(), settings.tick_seconds,  # until SIGTERM or SIGINT
              listen=runtime.listen if listens else None)
    return 0


def yield_to_web(niceness: int) -> None:
    """Lower this process's processor priority to `niceness` (never raise it): a clock sharing
    a machine with web processes then leaves them the processors first, and still gets them
    whenever they are idle."""
    current = os.nice(0)
    if niceness > current:
        os.nice(niceness - current)
        log.info("clock running at niceness %d, below the web processes", niceness)


def _socket(settings: Settings) -> int:
    settings.require_slack(transport="socket")
    from slack_bolt.adapter.socket_mode import SocketModeHandler

    from bot.app.runtime import build_runtime
    from bot.app.slack_app import create_app

    runtime = build_runtime(settings)
    bolt = create_app(runtime)
    _start_socket_process(runtime)  # daemon threads: they end with the process
    SocketModeHandler(bolt, settings.slack_app_token).start()
    return 0


def _start_socket_process(runtime: Runtime) -> tuple[Watch, Watch]:
    """What a Socket Mode process starts before connecting, once its app is built: its metrics,
    its start-up heap frozen, and the two watches a web process runs in each worker (the
    clock's heartbeat, the outbox sweep), returned so a caller may stop them."""
    from bot.app.runtime import SWEEP_SECONDS, freeze_startup_heap
    from bot.app.scheduler import Watch
    from bot.infra.metrics import start_clock_metrics

    start_clock_metrics(runtime.settings, runtime.sessions, runtime.clock)
    freeze_startup_heap()
    return (Watch(runtime.watch_clock).start(),
            Watch(runtime.sweep_outbox, SWEEP_SECONDS, "outbox-sweep").start())


_COMMANDS = {"run": _run, "web": _web, "clock": _clock, "socket": _socket, "migrate": _migrate,
             "doctor": _doctor}
