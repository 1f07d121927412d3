"""Slack failing while a request is placed, and a web process killed just after it answered a
form: the request exists, and every message it implies arrives exactly once."""

from __future__ import annotations

import json
import os
import signal
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.infra.db import make_engine, make_sessions
from bot.infra.models import DueWork, RequestState, SupportRequest, WorkState
from bot.infra.outbox import PREFIX
from bot.roster.supporters import SupporterSpec, upsert
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action, Block, Callback
from handlers.requests.blocks import OFFER_ENDINGS, WELCOME
from handlers.requests.effects import MAX_ATTEMPTS
from tests.app.test_processes import free_port, process, wait_healthy
from tests.conftest import SIGNING_SECRET, AppServer, Database, eventually
from tests.requests.test_requests_http import (
    REQUESTER,
    SUPPORTERS,
    add_supporters,
    ask,
    checked,
    choice,
    offer_value,
    posted_offers,
    request_row,
    tick,
)


def delivered(fake: FakeSlack) -> list[dict]:
    """Every message Slack accepted (refused calls are not messages), with its channel."""
    with fake._lock:
        return [{**m, "channel": channel} for channel, messages in fake.messages.items()
                for m in messages]


def group_posts(fake: FakeSlack) -> list[dict]:
    """Messages delivered in group DMs (the introductions)."""
    return [m for m in delivered(fake) if m["channel"].startswith("G")]


def effect_posts(fake: FakeSlack) -> Counter:
    """How many times each outbox effect's message was delivered (by its metadata's id)."""
    return Counter((m.get("metadata") or {}).get("event_payload", {}).get("effect")
                   for m in delivered(fake)
                   if (m.get("metadata") or {}).get("event_type") == "peersupport_effect")


@pytest.mark.parametrize("status", [500, 429])
def test_the_introduction_survives_slack_failing_and_arrives_once(
        app_server: AppServer, status: int) -> None:
    add_supporters(app_server, SUPPORTERS[0])
    ask(app_server)
    posted_offers(app_server, 1)
    fake = app_server.slack.fake
    value = offer_value(app_server, SUPPORTERS[0])
    # Every post and group DM fails for a while, past slack_sdk's own retries.
    fake.fail("chat.postMessage", status=status, retry_after=1, times=8)
    fake.fail("conversations.open", status=status, retry_after=1, times=4)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER, value)
    assert eventually(lambda: request_row(app_server).state == RequestState.ASSIGNED)
    app_server.settle()
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:  # the clock retries, after Retry-After or a back-off
        tick(app_server, 60)
        if group_posts(fake) and _sent_all(app_server):
            break
        time.sleep(0.2)  # Retry-After is kept in real seconds
    intros = group_posts(fake)
    assert len(intros) == 1, "introduced exactly once"
    cases = [m for m in delivered(fake) if "Before you meet" in json.dumps(m.get("blocks"))]
    assert len(cases) == 1, "the supporter's case message exactly once"
    assert max(effect_posts(fake).values()) == 1, "no message of the outbox posted twice"
    assert _sent_all(app_server)
    assert request_row(app_server).intro_channel == intros[0]["channel"]


def _sent_all(app_server: AppServer) -> bool:
    with app_server.runtime.sessions() as session:
        return not session.scalars(select(DueWork.id).where(
            DueWork.kind.like(PREFIX + "%"),
            DueWork.state.in_([WorkState.PENDING, WorkState.RUNNING]))).all()


def test_a_form_answered_just_before_the_web_process_dies_is_not_lost(
        pg_database: Database, fake_slack: FakeSlack, tmp_path: Path) -> None:
    url = pg_database.process_url
    for user in [REQUESTER, *SUPPORTERS[:2], "UCOORD0001"]:
        fake_slack.add_user(user)
    with make_sessions(pg_database.engine).begin() as session:
        upsert(session, [SupporterSpec(s, "ICU", "nurse") for s in SUPPORTERS[:2]],
               now=datetime.now(UTC), time_zones={}, default_case_cap=2,
               default_cooldown_hours=0)
    env = {"PEERSUPPORT_COORDINATORS": "UCOORD0001", "WEB_CONCURRENCY": "1",
           "PEERSUPPORT_TICK_SECONDS": "0.2", "PEERSUPPORT_DUEWORK_LEASE_SECONDS": "5"}
    (tmp_path / "web1").mkdir()
    (tmp_path / "web2").mkdir()
    (tmp_path / "clock").mkdir()
    port = free_port()
    with process(tmp_path / "web1", "web", fake_slack, url, PORT=str(port), **env) as web:
        wait_healthy(port, web, tmp_path / "web1" / "web.log")
        driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET,
                             fake_slack)
        values = {Block.URGENCY: choice("now"), Block.CONNECTION: choice("slack"),
                  Block.WHO: choice("anyone"), Block.ROLE_MATCH: choice("any"),
                  Block.FOLLOWUPS: checked(WELCOME), Block.SAFETY: checked()}
        reply = driver.view_submission(REQUESTER, Callback.REQUEST, values, view_id="VKILL0001")
        os.killpg(web.pid, signal.SIGKILL)  # the moment the person saw their form close
        web.wait()
    assert reply.status == 200
    engine = make_engine(url)
    sessions = make_sessions(engine)
    with sessions() as session:
        requests = session.scalars(select(SupportRequest)).all()
        assert len(requests) == 1, "committed before Slack had its answer"
    port = free_port()
    with process(tmp_path / "clock", "clock", fake_slack, url, **env), \
            process(tmp_path / "web2", "web", fake_slack, url, PORT=str(port), **env) as web2:
        wait_healthy(port, web2, tmp_path / "web2" / "web.log")
        # The clock delivers what the dead process had not (or finds what it had posted).
        offers = fake_slack.wait_for("chat.postMessage", lambda c: Action.ACCEPT_OFFER in
                                     json.dumps(c.args.get("blocks")), count=2, timeout=20)
        offer = offers[0]
        supporter = next(u for u in SUPPORTERS[:2]
                         if fake_slack.dm_channel([u]) == offer.args["channel"])
        value = next(e["value"] for b in offer.args["blocks"] if b.get("type") == "actions"
                     for e in b["elements"] if e["action_id"] == Action.ACCEPT_OFFER)
        driver = SlackDriver(f"http://127.0.0.1:{port}/slack/events", SIGNING_SECRET,
                             fake_slack)
        driver.block_action(supporter, Action.ACCEPT_OFFER, value)
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline and not group_posts(fake_slack):
            time.sleep(0.1)
        time.sleep(1)  # anything doubled would have arrived by now
    assert len(group_posts(fake_slack)) == 1, "introduced exactly once"
    offer_texts = ("A colleague has asked for peer support", *OFFER_ENDINGS.values())
    offers_posted = [m for m in delivered(fake_slack) if m.get("text") in offer_texts]
    assert len(offers_posted) == 2, "each supporter's offer exactly once"
    assert max(effect_posts(fake_slack).values()) == 1
    with sessions() as session:
        request = session.scalars(select(SupportRequest)).one()
        assert (request.state, request.supporter_id) == (RequestState.ASSIGNED, supporter)
    engine.dispose()


def test_a_message_slack_keeps_refusing_is_shown_to_coordinators_and_blocks_nothing(
        app_server: AppServer) -> None:
    from bot.infra import outbox
    from tests.home.test_home import COORDINATOR, open_home
    runtime, fake = app_server.runtime, app_server.slack.fake
    fake.add_user("UREFUSED01")
    fake.fail("chat.postMessage", "invalid_blocks", times=MAX_ATTEMPTS)
    with runtime.sessions.begin() as session:
        outbox.message(session, "UREFUSED01", {"text": "a note"}, key="test:refused",
                       now=runtime.clock.now())
    for _ in range(MAX_ATTEMPTS):  # each attempt is refused; the pause grows between them
        tick(app_server, 3600)
    with runtime.sessions() as session:
        item = session.scalars(select(DueWork).where(DueWork.key == "test:refused")).one()
    assert item.state == WorkState.FAILED
    with runtime.sessions.begin() as session:
        outbox.message(session, "UREFUSED01", {"text": "the next note"}, key="test:next",
                       now=runtime.clock.now())
    assert [m["text"] for m in delivered(fake)] == ["the next note"]
    assert "1 message Slack kept refusing this week" in open_home(app_server, COORDINATOR)


def test_a_message_whose_post_timed_out_is_found_again_not_repeated(
        app_server: AppServer) -> None:
    runtime, fake = app_server.runtime, app_server.slack.fake
    runtime.messenger.client.timeout = 1  # seconds: every Slack call of the app times out
    fake.fail("chat.postMessage", delay=1.5)  # Slack posts the alert, but answers too late
    ask(app_server)  # nobody on the roster: the coordinator is alerted
    app_server.settle()
    for _ in range(3):
        tick(app_server, 120)
    alerts = [m for m in delivered(fake) if Action.TAKE_REQUEST in json.dumps(m.get("blocks"))]
    assert len(alerts) == 1, "posted once; the retry found it"
    assert max(effect_posts(fake).values()) == 1
