"""A clock told to stop (SIGTERM from a supervisor, Ctrl-C) while it drains a backlog stops
cleanly: it exits 0, logs no error, and leaves every item done or pending, none held by a lease."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from collections import Counter
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

import pytest
from sqlalchemy import Engine, select

from bot.infra.clock import SystemClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.infra.duework import schedule
from bot.infra.models import DueWork, WorkState
from bot.sandbox.slack_api import FakeSlack
from tests.app.test_processes import ROOT, free_port, wait_healthy
from tests.conftest import SIGNING_SECRET
from tests.socket_mode_server import SocketModeServer

SLOW = "test.slow"
ITEMS = 1500
# `python -m bot COMMAND`, with one kind added for the test: a job that takes a little while, so
# a stop lands in the middle of a drain. Everything else is the real command's code.
LAUNCHER = f"""
import sys, time
import handlers
from bot.infra.duework import JobKind

app_jobs = handlers.register_jobs

def register_jobs(jobs, services):
    app_jobs(jobs, services)
    jobs.register(JobKind({SLOW!r}, lambda ctx: time.sleep(ctx.payload["seconds"])))

handlers.register_jobs = register_jobs
from bot.cli import main
sys.exit(main(sys.argv[1:]))
"""


def seed_backlog(db_url: str) -> Engine:
    engine = make_engine(db_url)
    migrate(engine)
    now = SystemClock().now()
    with make_sessions(engine).begin() as session:
        for n in range(ITEMS):
            schedule(session, SLOW, now, now=now, payload={"n": n, "seconds": 0.01})
    return engine


def slow_items(engine: Engine) -> list[DueWork]:
    with make_sessions(engine)() as session:
        return list(session.scalars(select(DueWork).where(DueWork.kind == SLOW)))


@contextmanager
def started(tmp_path: Path, command: str, fake: FakeSlack, db_url: str, **env: str
            ) -> Iterator[tuple[subprocess.Popen, Path]]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PEERSUPPORT_"))}
    clean.update({
        "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET":
        SIGNING_SECRET, "SLACK_API_URL": fake.api_url, "DATABASE_URL": db_url,
        "PEERSUPPORT_TICK_SECONDS": "0.2", **env,
    })
    log = tmp_path / f"{command}.log"
    with open(log, "w") as out:
        child = subprocess.Popen([sys.executable, "-c", LAUNCHER, command], cwd=tmp_path,
                                 env=clean, stdout=out, stderr=subprocess.STDOUT,
                                 start_new_session=True)
        try:
            yield child, log
        finally:
            if child.poll() is None:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()


def wait_until_draining(engine: Engine, child: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        assert child.poll() is None, log.read_text()
        if Counter(item.state for item in slow_items(engine))[WorkState.DONE] >= 30:
            return
        time.sleep(0.05)
    raise AssertionError("the clock never started on the backlog:\n" + log.read_text())


def stop_and_check(engine: Engine, child: subprocess.Popen, log: Path, number: int) -> None:
    os.killpg(child.pid, number)
    stopped_at = time.monotonic()
    code = child.wait(timeout=30)
    took = time.monotonic() - stopped_at
    output = log.read_text()
    assert code == 0, output
    assert "Traceback" not in output and "RuntimeError" not in output, output
    assert " ERROR " not in output, output
    items = slow_items(engine)
    count = Counter(item.state for item in items)
    assert set(count) <= {WorkState.DONE, WorkState.PENDING}, count
    assert count[WorkState.DONE] >= 30 and count[WorkState.PENDING] > 0, "stopped mid-drain"
    assert took < 10, f"it stopped in {took:.1f} s, not after the whole backlog"
    for item in items:
        if item.state == WorkState.PENDING:
            # Given back unstarted: the attempt returned, no claim or lease left on it.
            assert (item.attempts, item.claim_token, item.lease_until) == (0, None, None)
        else:
            assert item.attempts == 1


@pytest.mark.parametrize("number", [signal.SIGTERM, signal.SIGINT], ids=["SIGTERM", "SIGINT"])
def test_clock_stops_cleanly_in_the_middle_of_a_backlog(tmp_path: Path, fake_slack: FakeSlack,
                                                       number: int) -> None:
    db_url = f"sqlite:///{tmp_path / 'clock.sqlite3'}"
    engine = seed_backlog(db_url)
    with started(tmp_path, "clock", fake_slack, db_url) as (child, log):
        wait_until_draining(engine, child, log)
        stop_and_check(engine, child, log, number)
    assert "clock stopped" in log.read_text()
    engine.dispose()


def test_run_process_stops_its_scheduler_cleanly_with_gunicorn(tmp_path: Path,
                                                               fake_slack: FakeSlack) -> None:
    db_url = f"sqlite:///{tmp_path / 'run.sqlite3'}"
    engine = seed_backlog(db_url)
    port = free_port()
    with started(tmp_path, "run", fake_slack, db_url, PORT=str(port)) as (child, log):
        wait_healthy(port, child, log)
        wait_until_draining(engine, child, log)
        stop_and_check(engine, child, log, signal.SIGTERM)
    engine.dispose()


def test_run_process_over_socket_mode_stops_cleanly(tmp_path: Path, fake_slack: FakeSlack) -> None:
    db_url = f"sqlite:///{tmp_path / 'socket.sqlite3'}"
    engine = seed_backlog(db_url)
    with SocketModeServer() as slack_socket:
        fake_slack.socket_url = slack_socket.url
        with started(tmp_path, "run", fake_slack, db_url,
                     SLACK_APP_TOKEN="xapp-1-test") as (child, log):
            assert slack_socket.connected.wait(timeout=30), log.read_text()
            wait_until_draining(engine, child, log)
            stop_and_check(engine, child, log, signal.SIGTERM)
    engine.dispose()
