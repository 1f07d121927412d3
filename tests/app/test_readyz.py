"""/healthz says the process answers; /readyz says the deployment can keep its promises: the
database answers and a clock ticks. A real web process also watches the clock and tells
coordinators when it stopped."""

from __future__ import annotations

import dataclasses
import json
import urllib.error
import urllib.request
from datetime import timedelta
from pathlib import Path

from flask.testing import FlaskClient

from bot.app.runtime import Runtime
from bot.app.slack_app import create_app
from bot.app.web import create_wsgi_app
from bot.infra import health
from bot.infra.clock import ManualClock, SystemClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.sandbox.slack_api import FakeSlack
from tests.app.test_processes import free_port, process, wait_healthy
from tests.conftest import SIGNING_SECRET

LIMIT = timedelta(seconds=945)


def client(runtime: Runtime) -> FlaskClient:
    return create_wsgi_app(runtime, create_app(runtime)).test_client()


def beat(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        health.beat(session, "clock-host:1", runtime.clock.now())


def secrets_of(runtime: Runtime) -> list[str]:
    settings = runtime.settings
    return [settings.slack_bot_token or "", settings.slack_signing_secret or "",
            settings.database_url]


def test_ready_while_the_clock_ticks_and_not_once_it_stopped(runtime: Runtime,
                                                            clock: ManualClock) -> None:
    web = client(runtime)
    beat(runtime)
    ready = web.get("/readyz")
    assert (ready.status_code, ready.text) == (200, "ready")
    clock.advance(LIMIT + timedelta(seconds=1))
    stale = web.get("/readyz")
    assert stale.status_code == 503
    assert stale.text.startswith("not ready: the clock is stale (last ticked 2026-03-02 14:00:00")
    assert "\n" not in stale.text and not any(s in stale.text for s in secrets_of(runtime))
    assert web.get("/healthz").status_code == 200, "liveness does not depend on the clock"
    beat(runtime)
    assert web.get("/readyz").status_code == 200


def test_a_clock_that_never_ticked_is_not_ready_once_the_limit_passed(
        runtime: Runtime, clock: ManualClock) -> None:
    web = client(runtime)
    assert web.get("/readyz").status_code == 200, "nobody has waited for a clock yet"
    runtime.watch_clock()  # a web process's first look starts the wait
    clock.advance(LIMIT + timedelta(seconds=1))
    reply = web.get("/readyz")
    assert reply.status_code == 503 and "no clock has ticked" in reply.text


def test_not_ready_when_the_database_does_not_answer(runtime: Runtime, tmp_path: Path) -> None:
    gone = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}")
    web = client(dataclasses.replace(runtime, engine=gone))
    reply = web.get("/readyz")
    assert reply.status_code == 503
    assert reply.text == "not ready: the database did not answer (OperationalError)"
    assert web.get("/healthz").status_code == 200, "liveness does not depend on the database"


def test_the_web_process_watches_the_clock_and_tells_coordinators(
        tmp_path: Path, fake_slack: FakeSlack) -> None:
    db_url = f"sqlite:///{tmp_path / 'web.sqlite3'}"
    engine = make_engine(db_url)
    migrate(engine)
    with make_sessions(engine).begin() as session:  # the clock stopped an hour ago
        health.beat(session, "gone:1", SystemClock().now() - timedelta(hours=1))
    engine.dispose()
    fake_slack.add_user("UCOORD0001")
    port = free_port()
    with process(tmp_path, "web", fake_slack, db_url, PORT=str(port), WEB_CONCURRENCY="2",
                 PEERSUPPORT_COORDINATORS="UCOORD0001") as child:
        wait_healthy(port, child, tmp_path / "web.log")
        posts = fake_slack.wait_for("chat.postMessage", timeout=20)
        try:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/readyz", timeout=5)
            raise AssertionError("/readyz answered 200 with a stopped clock")
        except urllib.error.HTTPError as error:
            assert error.code == 503
            assert error.read().decode().startswith("not ready: the clock is stale")
    assert [p.args["text"] for p in fake_slack.calls_to("chat.postMessage")] == [
        "The peer support app's clock has stopped"]
    assert posts[0].args["channel"] == fake_slack.dm_channel(["UCOORD0001"])
    assert SIGNING_SECRET not in json.dumps([p.args for p in posts])


def test_metrics_are_served_only_behind_their_token(runtime: Runtime) -> None:
    """GET /metrics is not there until a token is set, refuses a wrong token, and with the
    right one serves Prometheus' text with the request figures read from the database."""
    assert client(runtime).get("/metrics").status_code == 404
    token = "m" * 40
    runtime.settings = runtime.settings.model_copy(update={"metrics_token": token})
    web = client(runtime)
    assert web.get("/metrics").status_code == 401
    assert web.get("/metrics", headers={"Authorization": "Bearer wrong"}).status_code == 401
    scraped = web.get("/metrics", headers={"Authorization": f"Bearer {token}"})
    assert scraped.status_code == 200
    assert scraped.content_type.startswith("text/plain")
    assert "peersupport_database_up 1.0" in scraped.text
    assert token not in scraped.text
