"""Shared fixtures: real databases (SQLite, and PostgreSQL when TEST_DATABASE_URL is set), the
loopback Slack stand-in checked against Slack's spec, and the real app served over HTTP."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import re
import threading
import time
import uuid
from collections.abc import Callable, Iterator, Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl

import pytest
from sqlalchemy import Engine, text

from bot.app.runtime import Runtime, build_runtime
from bot.infra.clock import ManualClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.infra.logs import configure_logging, formatter
from bot.infra.messaging import build_client
from bot.sandbox.server import AppServer
from bot.sandbox.slack_api import FakeSlack
from bot.sandbox.spec import WebApiSpec, load_default_spec
from bot.sandbox.world import SIGNING_SECRET as SIGNING_SECRET  # noqa: F401 - used by tests
from bot.sandbox.world import sandbox_settings as make_settings

PG_URL = os.environ.get("TEST_DATABASE_URL")
IN_CI = os.environ.get("CI", "").lower() in ("1", "true", "yes")
START = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)


def pytest_report_header(config: pytest.Config) -> list[str]:
    if PG_URL:
        return [f"PostgreSQL: database tests also run on {_redacted(PG_URL)}"]
    return ["PostgreSQL: SKIPPED (TEST_DATABASE_URL is not set): database tests ran on SQLite only"]


_POSTGRESQL_LEFT_OUT = pytest.StashKey[int]()  # how many PostgreSQL tests were left out


def _needs_postgresql(item: pytest.Item) -> bool:
    """A test that can only run on PostgreSQL: its PostgreSQL case, a PostgreSQL-only fixture,
    or a skip mark that names PostgreSQL."""
    callspec = getattr(item, "callspec", None)
    if callspec is not None and "postgresql" in callspec.params.values():
        return True
    if "pg_database" in getattr(item, "fixturenames", ()):
        return True
    return any(mark.args and mark.args[0] is True and "PostgreSQL" in str(mark.kwargs.get("reason"))
               for mark in item.iter_markers("skipif"))


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    # Without a PostgreSQL server its tests are left out and counted in one line at the end,
    # rather than each printed as a skip.
    if PG_URL:
        return
    left_out = [item for item in items if _needs_postgresql(item)]
    if left_out:
        items[:] = [item for item in items if not _needs_postgresql(item)]
        config.hook.pytest_deselected(items=left_out)
    config.stash[_POSTGRESQL_LEFT_OUT] = len(left_out)


def pytest_terminal_summary(terminalreporter: pytest.TerminalReporter,
                            config: pytest.Config) -> None:
    if not PG_URL:
        count = config.stash.get(_POSTGRESQL_LEFT_OUT, 0)
        terminalreporter.write_line(
            f"PostgreSQL was skipped ({count} tests not run): set TEST_DATABASE_URL (as .ci/run "
            "does) to test it too.", yellow=True)


def pytest_configure(config: pytest.Config) -> None:
    if IN_CI and not PG_URL:
        raise pytest.UsageError("CI must test PostgreSQL: TEST_DATABASE_URL is not set")


def _redacted(url: str) -> str:
    head, _, tail = url.rpartition("@")
    return f"...@{tail}" if head else url


def _to_psycopg(url: str) -> str:
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


BACKENDS = ["sqlite", pytest.param("postgresql", marks=pytest.mark.skipif(
    not PG_URL, reason="PostgreSQL skipped: TEST_DATABASE_URL is not set"))]


class Database:
    """A migrated, empty database of one backend, private to one test."""

    def __init__(self, backend: str, url: str, engine: Engine, schema: str | None = None):
        self.backend = backend
        self.url = url
        self.engine = engine
        self.schema = schema
        self.sessions = make_sessions(engine)

    @property
    def process_url(self) -> str:
        """A DATABASE_URL another process can use to reach this very database (and schema)."""
        if self.schema is None:
            return self.url
        return f"{self.url}?options=-csearch_path%3D{self.schema}"

    def new_engine(self) -> Engine:
        """A second, independent engine on the same database (as another process would have)."""
        return _engine_for(self.url, self.schema)


def _engine_for(url: str, schema: str | None) -> Engine:
    if schema is None:
        return make_engine(url)
    return make_engine(url, connect_args={"options": f"-csearch_path={schema}"})


@contextlib.contextmanager
def open_database(backend: str, tmp_path: Path) -> Iterator[Database]:
    """An empty migrated database: a SQLite file, or a fresh schema on the PostgreSQL server."""
    if backend == "sqlite":
        url = f"sqlite:///{tmp_path / 'peersupport.sqlite3'}"
        engine = make_engine(url)
        migrate(engine)
        try:
            yield Database("sqlite", url, engine)
        finally:
            engine.dispose()
        return
    if not PG_URL:
        pytest.skip("PostgreSQL skipped: TEST_DATABASE_URL is not set")
    url = _to_psycopg(PG_URL)
    schema = f"t_{uuid.uuid4().hex[:12]}"
    admin = make_engine(url)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = _engine_for(url, schema)
    try:
        migrate(engine)
        yield Database("postgresql", url, engine, schema)
    finally:
        engine.dispose()
        with admin.begin() as connection:
            # A session a test left open would hold its locks and make this wait forever:
            # fail in seconds, saying why, instead.
            connection.execute(text("SET LOCAL lock_timeout = '20s'"))
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@pytest.fixture(params=BACKENDS)
def database(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[Database]:
    """The same test on SQLite and on PostgreSQL."""
    with open_database(request.param, tmp_path) as db:
        yield db


@pytest.fixture
def pg_database(tmp_path: Path) -> Iterator[Database]:
    """PostgreSQL only, for the concurrency proofs SQLite's single writer cannot make."""
    with open_database("postgresql", tmp_path) as db:
        yield db


@pytest.fixture
def sqlite_database(tmp_path: Path) -> Iterator[Database]:
    """SQLite only."""
    with open_database("sqlite", tmp_path) as db:
        yield db


@pytest.fixture(scope="session")
def slack_spec() -> WebApiSpec | None:
    """Slack's published Web API spec from ../shared, required in CI."""
    spec = load_default_spec()
    if spec is None and IN_CI:
        raise AssertionError("Slack's API specs (../shared/slack-api-specs) are missing in CI")
    return spec


@pytest.fixture
def fake_slack(slack_spec: WebApiSpec | None) -> Iterator[FakeSlack]:
    """The loopback Slack Web API; the test fails if any call broke Slack's spec."""
    fake = FakeSlack(slack_spec).start()
    try:
        yield fake
    finally:
        fake.stop()
    assert not fake.violations, f"calls that break Slack's Web API spec: {fake.violations}"


@pytest.fixture
def clock() -> ManualClock:
    return ManualClock(START)


@pytest.fixture
def runtime(database: Database, fake_slack: FakeSlack, clock: ManualClock) -> Runtime:
    """A runtime on the test database, the stand-in and the manual clock."""
    settings = make_settings(fake_slack, database.url)
    return build_runtime(settings, clock=clock, client=build_client(settings, timeout=5),
                         engine=database.engine, run_migrations=False)


def run_together(work: Callable[[Any, Callable[[], Any]], Any], items: Sequence[Any], *,
                 timeout: float = 120) -> list[Any]:
    """Run work(item, go) for every item on its own thread; each calls go() to wait until all
    are ready, so they really race. Re-raises the first error; returns results in item order."""
    barrier = threading.Barrier(len(items))
    results: list[Any] = [None] * len(items)
    errors: list[BaseException] = []

    def run(index: int, item: Any) -> None:
        try:
            results[index] = work(item, barrier.wait)
        except BaseException as error:  # noqa: BLE001 - re-raised below, in the test's thread
            errors.append(error)

    threads = [threading.Thread(target=run, args=pair) for pair in enumerate(items)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=timeout)
    if errors:
        raise errors[0]
    return results


def eventually(check, timeout: float = 5.0):  # noqa: ANN001, ANN201
    """Poll `check` until it returns a truthy value (listeners commit just after they answer)."""
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result or time.monotonic() > deadline:
            return result
        time.sleep(0.02)


TYPED_KEYS = {"text", "value", "private_metadata"}
_ID_LIKE = re.compile(r"^[A-Za-z0-9._:/=-]*$")


def typed_strings(body: str) -> set[str]:
    """What a person could have typed in a request body: command text, input values."""
    found: set[str] = set()

    def walk(node: object, key: str = "") -> None:
        if isinstance(node, dict):
            for name, value in node.items():
                walk(value, name)
        elif isinstance(node, list):
            for value in node:
                walk(value, key)
        elif isinstance(node, str) and key in TYPED_KEYS and len(node) >= 8 \
                and not _ID_LIKE.match(node):
            found.add(node)

    try:
        form = dict(parse_qsl(body, keep_blank_values=True))
    except ValueError:
        form = {}
    if "payload" in form:
        try:
            walk(json.loads(form["payload"]))
        except (ValueError, RecursionError):  # a hostile body may be malformed or nest deeply
            pass
    elif body.lstrip().startswith("{"):  # an Events API callback: a DM's text, for one
        try:
            walk(json.loads(body))
        except (ValueError, RecursionError):
            pass
    else:
        walk(form)
    return found


LEADER = "ULEAD00001"
PULSE_SECRET = "s" * 40


@pytest.fixture
def leader_server(app_server: AppServer) -> AppServer:
    """The app with a leader (LEADER) and wellbeing prompts switched on."""
    runtime = app_server.runtime
    object.__setattr__(runtime.settings, "pulse_secret", PULSE_SECRET)
    runtime.roles.leaders = frozenset({LEADER})
    app_server.slack.fake.add_user(LEADER, tz="America/New_York")
    return app_server


@pytest.fixture
def app_server(runtime: Runtime, fake_slack: FakeSlack,
               caplog: pytest.LogCaptureFixture) -> Iterator[AppServer]:
    """The app over HTTP, with debug logging on; at the end, no log record may contain
    anything a person typed in any request the test sent."""
    configure_logging("DEBUG")
    caplog.set_level(logging.DEBUG)
    server = AppServer(runtime, fake_slack)
    try:
        yield server
    finally:
        server.stop()
    typed = set().union(*(typed_strings(body) for body in server.slack.sent))
    records = caplog.get_records("setup") + caplog.get_records("call") + caplog.records
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in records)
    # And as an operator's log shows them, in each LOG_FORMAT (JSON decoded again).
    as_text, as_json = formatter("text"), formatter("json")
    logged += "".join(f"\n{as_text.format(r)}\n" + " ".join(
        str(v) for v in json.loads(as_json.format(r)).values()) for r in records)
    leaked = sorted(t for t in typed if t in logged)
    assert not leaked, f"typed text reached the logs: {leaked[:3]}"
