"""The Procfile's processes, started for real: gunicorn serving signed requests, and the clock."""

from __future__ import annotations

import json
import os
import signal
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from sqlalchemy import select

from bench import seeds
from bench.fanout import _form
from bot.infra import wakeup
from bot.infra.clock import SystemClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.infra.duework import schedule
from bot.infra.models import DueWork, Offer, SupportRequest, WorkState
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action, Callback
from tests.conftest import SIGNING_SECRET, Database, eventually
from tests.socket_mode_server import SocketModeServer

ROOT = Path(__file__).resolve().parents[2]
FORM = _form()  # a request for anyone, now, over Slack


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


@contextmanager
def process(tmp_path: Path, command: str, fake: FakeSlack, db_url: str, **env: str
            ) -> Iterator[subprocess.Popen]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PEERSUPPORT_"))}
    clean.update({
        "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-test", "SLACK_SIGNING_SECRET":
        SIGNING_SECRET, "SLACK_API_URL": fake.api_url, "DATABASE_URL": db_url, **env,
    })
    log = open(tmp_path / f"{command}.log", "w")  # noqa: SIM115 - closed below
    child = subprocess.Popen([sys.executable, "-m", "bot", command], cwd=tmp_path, env=clean,
                             stdout=log, stderr=subprocess.STDOUT, start_new_session=True)
    try:
        yield child
    finally:
        if child.poll() is None:
            os.killpg(child.pid, signal.SIGTERM)
            try:
                child.wait(timeout=20)
            except subprocess.TimeoutExpired:
                os.killpg(child.pid, signal.SIGKILL)
                child.wait()
        log.close()


def wait_healthy(port: int, child: subprocess.Popen, log: Path) -> None:
    deadline = time.monotonic() + 30
    while time.monotonic() < deadline:
        assert child.poll() is None, log.read_text()
        try:
            with urllib.request.urlopen(f"http://127.0.0.1:{port}/healthz", timeout=1) as reply:
                if reply.status == 200:
                    return
        except OSError:
            time.sleep(0.1)
    raise AssertionError("server did not become healthy:\n" + log.read_text())


def wait_for_state(db_url: str, state: WorkState, timeout: float = 20) -> DueWork:
    sessions = make_sessions(make_engine(db_url))
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        with sessions() as session:
            item = session.scalars(select(DueWork)).first()
            if item is not None and item.state == state:
                return item
        time.sleep(0.1)
    raise AssertionError(f"due work never reached {state}")


def seed_due_item(db_url: str) -> None:
    engine = make_engine(db_url)
    migrate(engine)
    now = SystemClock().now()
    with make_sessions(engine).begin() as session:
        # No process registers this kind, so a clock that ticks marks it failed: visible proof.
        schedule(session, "kind-from-the-future", now, now=now)
    engine.dispose()


def test_web_process_serves_signed_requests_under_gunicorn(tmp_path: Path,
                                                           fake_slack: FakeSlack) -> None:
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'web.sqlite3'}"
    with process(tmp_path, "web", fake_slack, db_url, PORT=str(port), WEB_CONCURRENCY="2") as child:
        wait_healthy(port, child, tmp_path / "web.log")
        driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, fake_slack)
        for _ in range(4):  # more than one worker answers
            reply = driver.command("UCLIN00001", "help")
            assert reply.status == 200
            assert reply.json()["response_type"] == "ephemeral"
        bad = driver.post_raw("command=%2Fpeersupport", "application/x-www-form-urlencoded",
                              sign=False)
        assert bad.status == 401
    assert "gunicorn" in (tmp_path / "web.log").read_text().lower()


def test_run_process_serves_http_and_ticks_the_scheduler(tmp_path: Path,
                                                         fake_slack: FakeSlack) -> None:
    port = free_port()
    db_url = f"sqlite:///{tmp_path / 'run.sqlite3'}"
    seed_due_item(db_url)
    with process(tmp_path, "run", fake_slack, db_url, PORT=str(port),
                 PEERSUPPORT_TICK_SECONDS="0.2") as child:
        wait_healthy(port, child, tmp_path / "run.log")
        driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET, fake_slack)
        assert driver.command("UCLIN00001", "help").status == 200
        item = wait_for_state(db_url, WorkState.FAILED)
    assert item.last_error == "unknown kind"


def test_clock_process_claims_due_work(tmp_path: Path, fake_slack: FakeSlack) -> None:
    db_url = f"sqlite:///{tmp_path / 'clock.sqlite3'}"
    seed_due_item(db_url)
    with process(tmp_path, "clock", fake_slack, db_url, PEERSUPPORT_TICK_SECONDS="0.2") as clock:
        item = wait_for_state(db_url, WorkState.FAILED)
        # Below the web processes it may share the machine with (their acknowledgements first).
        assert niceness(clock.pid) == max(10, os.nice(0))
    assert item.attempts == 1


def niceness(pid: int) -> int:
    return int(Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[16])


def test_run_process_over_socket_mode_answers_and_ticks(tmp_path: Path,
                                                        fake_slack: FakeSlack) -> None:
    db_url = f"sqlite:///{tmp_path / 'socket.sqlite3'}"
    seed_due_item(db_url)
    with SocketModeServer() as slack_socket:
        fake_slack.socket_url = slack_socket.url
        with process(tmp_path, "run", fake_slack, db_url, SLACK_APP_TOKEN="xapp-1-test",
                     PEERSUPPORT_TICK_SECONDS="0.2"):
            assert slack_socket.connected.wait(timeout=30), (tmp_path / "run.log").read_text()
            ack = slack_socket.send("slash_commands", {
                "command": "/peersupport", "text": "help", "user_id": "UCLIN00001",
                "channel_id": "C0GENERAL1", "team_id": "T0PEERSUP", "trigger_id": "1.2.3",
                "response_url": fake_slack.response_url(), "api_app_id": "APEERSUP1"})
            item = wait_for_state(db_url, WorkState.FAILED)
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "/peersupport help" in json.dumps(ack["payload"]["blocks"])
    assert item.last_error == "unknown kind"
    opened = fake_slack.calls_to("apps.connections.open")
    assert opened and opened[0].token == "xapp-1-test"


def test_socket_process_answers_over_socket_mode(tmp_path: Path, fake_slack: FakeSlack) -> None:
    """`python -m bot socket`, the Slack app alone over Socket Mode, connects and answers."""
    db_url = f"sqlite:///{tmp_path / 'socket.sqlite3'}"
    with SocketModeServer() as slack_socket:
        fake_slack.socket_url = slack_socket.url
        with process(tmp_path, "socket", fake_slack, db_url, SLACK_APP_TOKEN="xapp-1-test"):
            assert slack_socket.connected.wait(timeout=30), (tmp_path / "socket.log").read_text()
            ack = slack_socket.send("slash_commands", {
                "command": "/peersupport", "text": "help", "user_id": "UCLIN00001",
                "channel_id": "C0GENERAL1", "team_id": "T0PEERSUP", "trigger_id": "1.2.3",
                "response_url": fake_slack.response_url(), "api_app_id": "APEERSUP1"})
    assert ack["payload"]["response_type"] == "ephemeral"
    assert "/peersupport help" in json.dumps(ack["payload"]["blocks"])


def test_the_clock_sends_what_the_web_commits_and_a_killed_clock_loses_nothing(
        tmp_path: Path, fake_slack: FakeSlack, pg_database: Database) -> None:
    """On PostgreSQL the web process commits and answers; the clock, woken by NOTIFY, sends the
    offers. Killed outright, the clock leaves nothing unsent: the web process sees it went
    quiet and sends the next request's offers (and any it had handed over) itself."""
    seeds.supporters(pg_database.engine, fake_slack, 3)
    url = pg_database.process_url
    sessions = make_sessions(pg_database.engine)

    def offers_out(requester: int) -> list[str]:
        with sessions() as session:
            offers = session.scalars(select(Offer).where(Offer.request_id == requester)).all()
            return [o.ts for o in offers if o.ts]

    def assigned_to(requester: int) -> str | None:
        with sessions() as session:
            request = session.get(SupportRequest, requester)
            return request.supporter_id if request and request.state == "assigned" else None

    def senders() -> set[str]:
        with sessions() as session:
            return {(token or "").split(":")[0] for token in session.scalars(
                select(DueWork.claim_token).where(DueWork.kind == "effect.offer.post"))}

    with process(tmp_path, "clock", fake_slack, url, PEERSUPPORT_TICK_SECONDS="300") as clock:
        with sessions() as session:
            assert eventually(lambda: wakeup.listening(session, now=SystemClock().now()),
                              timeout=30), (tmp_path / "clock.log").read_text()
        port = free_port()
        with process(tmp_path, "web", fake_slack, url, PORT=str(port)) as web:
            wait_healthy(port, web, tmp_path / "web.log")
            driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET,
                                 fake_slack)
            assert driver.view_submission("UCLIN00001", Callback.REQUEST, FORM,
                                          view_id="VPROC0001").status == 200
            assert eventually(lambda: len(offers_out(1)) == 3, timeout=20)
            assert senders() == {"deliver"}, "the clock's listener sent them"

            # An Accept is recorded by the web and applied by the clock, which builds no Bolt
            # app of its own: the listener is known to it all the same.
            with sessions() as session:
                offer = session.scalars(select(Offer).where(Offer.request_id == 1)).first()
            assert driver.block_action(offer.supporter_id, Action.ACCEPT_OFFER, str(offer.id),
                                       block_id="offer").status == 200
            assert eventually(lambda: assigned_to(1) == offer.supporter_id, timeout=20), \
                (tmp_path / "clock.log").read_text()
            with sessions() as session:
                [click] = session.scalars(select(DueWork).where(DueWork.kind == "effect.click"))
            assert click.claim_token.startswith("deliver") and click.state == WorkState.DONE

            os.killpg(clock.pid, signal.SIGKILL)  # no clean stop: it still counts as listening
            clock.wait()
            assert driver.view_submission("UCLIN00002", Callback.REQUEST, FORM,
                                          view_id="VPROC0002").status == 200
            assert eventually(lambda: len(offers_out(2)) == 3, timeout=40), \
                (tmp_path / "web.log").read_text()
    offers = fake_slack.calls_to("chat.postMessage")
    accept_posts = [c for c in offers if Action.ACCEPT_OFFER in json.dumps(c.args.get("blocks"))]
    assert len(accept_posts) == 6, "every offer posted exactly once"
