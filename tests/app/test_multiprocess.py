"""Two web processes under gunicorn and a clock process on one PostgreSQL database, with random
concurrent traffic; then the clock is killed with SIGKILL and restarted. The invariants are
checked from the database and from everything the Slack stand-in received."""

from __future__ import annotations

import os
import random
import signal
import threading
import time
from collections import Counter
from datetime import UTC, datetime
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.db import make_sessions
from bot.infra.models import (
    CheckIn,
    DueWork,
    Offer,
    OfferState,
    PulseAnswer,
    RequestState,
    SupportRequest,
    WorkState,
)
from bot.pulses import service as pulses
from bot.roster.supporters import SupporterSpec, upsert
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack
from handlers.checkins.blocks import METADATA_TYPE
from handlers.common.ids import Action, Block, Callback
from handlers.requests.blocks import NOT_SAFE, WELCOME
from tests.app.test_processes import free_port, process, wait_healthy
from tests.conftest import SIGNING_SECRET, Database, eventually

SECRET = "p" * 40
REQUESTERS = [f"UREQUEST{i:02d}" for i in range(12)]
SUPPORTERS = [f"USUPPORT{i:02d}" for i in range(8)]
TRAFFIC_SECONDS = 8


def daytime_zone() -> str:
    """A zone where it is now mid-day, so check-ins fall inside people's default hours."""
    now = datetime.now(UTC)
    for name in ("UTC", "Europe/Berlin", "Asia/Dubai", "Asia/Kolkata", "Asia/Tokyo",
                 "Pacific/Auckland", "Pacific/Kiritimati", "America/Sao_Paulo",
                 "America/New_York", "America/Chicago", "America/Los_Angeles",
                 "Pacific/Honolulu", "Pacific/Pago_Pago"):
        if 10 <= now.astimezone(ZoneInfo(name)).hour < 16:
            return name
    return "UTC"


def choice(value: str) -> dict:
    return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}


def accept_buttons(fake: FakeSlack) -> list[tuple[str, str]]:
    """(supporter channel, offer id) for every offer posted so far."""
    found = []
    for call in fake.calls_to("chat.postMessage"):
        for block in call.args.get("blocks") or []:
            for element in block.get("elements", []) if block.get("type") == "actions" else []:
                if element.get("action_id") == Action.ACCEPT_OFFER:
                    found.append((call.args["channel"], element["value"]))
    return found


def traffic(drivers: list[SlackDriver], fake: FakeSlack, run_id: int, seconds: float,
            seed: int) -> None:
    rng = random.Random(seed)
    deadline = time.monotonic() + seconds
    views = iter(range(seed * 100000, seed * 100000 + 100000))
    dm_owner = {}

    def driver() -> SlackDriver:
        return rng.choice(drivers)

    while time.monotonic() < deadline:
        for user, channel in list(fake._conversations.items()):
            if len(user) == 1:
                dm_owner[channel] = next(iter(user))
        move = rng.random()
        if move < 0.25:
            requester = rng.choice(REQUESTERS)
            values = {Block.URGENCY: choice("now"), Block.CONNECTION: choice("slack"),
                      Block.WHO: choice("anyone"), Block.ROLE_MATCH: choice("any"),
                      Block.FOLLOWUPS: {Action.FIELD: {"type": "checkboxes", "selected_options":
                                                       [{"value": WELCOME}]}},
                      Block.SAFETY: {Action.FIELD: {"type": "checkboxes", "selected_options": (
                          [{"value": NOT_SAFE}] if rng.random() < 0.05 else [])}}}
            driver().view_submission(requester, Callback.REQUEST, values,
                                     view_id=f"VMP{next(views)}")
        elif move < 0.6:
            buttons = accept_buttons(fake)
            if buttons:
                channel, offer = rng.choice(buttons)
                owner = dm_owner.get(channel, rng.choice(SUPPORTERS))
                action = Action.ACCEPT_OFFER if rng.random() < 0.7 else Action.DECLINE_OFFER
                driver().block_action(owner, action, offer)
        elif move < 0.7:
            driver().block_action(rng.choice(REQUESTERS), Action.CANCEL_REQUEST,
                                  str(rng.randint(1, 40)))
        elif move < 0.75:
            driver().block_action(rng.choice(SUPPORTERS), Action.HAND_BACK,
                                  str(rng.randint(1, 40)))
        elif move < 0.9:
            driver().block_action(rng.choice(REQUESTERS + SUPPORTERS),
                                  f"{Action.PULSE_ANSWER}:{rng.randint(0, 4)}", str(run_id),
                                  channel_id="C0PULSE001")
        else:
            for call in fake.calls_to("chat.postMessage"):
                meta = call.args.get("metadata") or {}
                if meta.get("event_type") == METADATA_TYPE and rng.random() < 0.5:
                    owner = dm_owner.get(call.args["channel"], rng.choice(REQUESTERS))
                    driver().block_action(owner, f"{Action.CHECKIN_ANSWER}:better",
                                          str(meta["event_payload"]["checkin_id"]))
                    break


def check_invariants(db: Database, fake: FakeSlack) -> None:
    sessions = make_sessions(db.new_engine())
    with sessions() as session:
        for request in session.scalars(select(SupportRequest)):
            accepted = session.scalars(select(Offer).where(
                Offer.request_id == request.id, Offer.state == OfferState.ACCEPTED)).all()
            assert len(accepted) <= 1, f"request {request.id} accepted twice"
            if request.state == RequestState.ASSIGNED and accepted:
                assert accepted[0].supporter_id == request.supporter_id
            if request.state in (RequestState.OPEN, RequestState.ESCALATED):
                timers = session.scalars(select(DueWork).where(
                    DueWork.state.in_([WorkState.PENDING, WorkState.RUNNING]))).all()
                assert any((t.payload or {}).get("request_id") == request.id for t in timers), \
                    f"request {request.id} has no timer"
        answers = session.scalars(select(PulseAnswer)).all()
        assert len(answers) == len({(a.run_id, a.responder) for a in answers})
        assert len(answers) <= len(REQUESTERS) + len(SUPPORTERS), "one answer per person"
        sent = session.scalars(select(CheckIn.id).where(CheckIn.sent_at.is_not(None))).all()
    offers_posted = Counter(value for _, value in accept_buttons(fake))
    assert max(offers_posted.values(), default=1) == 1, "an offer was posted twice"
    checkin_posts = Counter(
        (c.args.get("metadata") or {}).get("event_payload", {}).get("checkin_id")
        for c in fake.calls_to("chat.postMessage")
        if (c.args.get("metadata") or {}).get("event_type") == METADATA_TYPE)
    assert max(checkin_posts.values(), default=1) == 1, "a check-in was posted twice"
    effect_posts = Counter(
        (c.args.get("metadata") or {}).get("event_payload", {}).get("effect")
        for c in fake.calls_to("chat.postMessage")
        if (c.args.get("metadata") or {}).get("event_type") == "peersupport_effect")
    assert max(effect_posts.values(), default=1) == 1, "a message of the outbox was posted twice"
    assert set(checkin_posts) >= set(sent), "every check-in marked sent was posted"


def checkins_sent(sessions: sessionmaker[Session]) -> int:
    with sessions() as session:
        return len(session.scalars(select(CheckIn).where(CheckIn.sent_at.is_not(None))).all())


def test_two_web_processes_and_a_killed_clock_keep_every_promise(
        pg_database: Database, fake_slack: FakeSlack, tmp_path: Path) -> None:
    zone = daytime_zone()
    for user in REQUESTERS + SUPPORTERS + ["UCOORD0001"]:
        fake_slack.add_user(user, tz=zone)
    sessions = make_sessions(pg_database.engine)
    now = datetime.now(UTC)
    with sessions.begin() as session:
        upsert(session, [SupporterSpec(s, "ICU", "nurse") for s in SUPPORTERS], now=now,
               time_zones={s: zone for s in SUPPORTERS}, default_case_cap=3,
               default_cooldown_hours=0)
        pulse = pulses.create(session, "ULEADER001", pulses.PulseSpec(
            question="How are you?", scale="five_point", options=("1", "2", "3", "4", "5"),
            channel_id="C0PULSE001", department="", recurrence="once", weekday=0, minute=0,
            tz="UTC", open_hours=24), now=now)
        run_id = pulses.open_run(session, pulse, now=now).id
    env = {"PEERSUPPORT_PULSE_SECRET": SECRET, "PEERSUPPORT_CHECKIN_DAYS": "0.00005",
           "PEERSUPPORT_OFFER_TIMEOUT": "10", "PEERSUPPORT_TICK_SECONDS": "0.2",
           "PEERSUPPORT_COORDINATORS": "UCOORD0001", "PEERSUPPORT_LEADERS": "ULEADER001",
           "WEB_CONCURRENCY": "1", "PEERSUPPORT_DEFAULT_COOLDOWN_HOURS": "0",
           # What the killed clock held is retaken by the next once its lease runs out.
           "PEERSUPPORT_DUEWORK_LEASE_SECONDS": "10"}
    url = pg_database.process_url
    ports = [free_port(), free_port()]
    with process(tmp_path / "a", "web", fake_slack, url, PORT=str(ports[0]), **env) as web_a, \
            process(tmp_path / "b", "web", fake_slack, url, PORT=str(ports[1]), **env) as web_b:
        wait_healthy(ports[0], web_a, tmp_path / "a" / "web.log")
        wait_healthy(ports[1], web_b, tmp_path / "b" / "web.log")
        drivers = [SlackDriver(f"http://127.0.0.1:{p}/slack/events", SIGNING_SECRET, fake_slack)
                   for p in ports]
        with process(tmp_path / "c1", "clock", fake_slack, url, **env) as clock:
            workers = [threading.Thread(target=traffic, args=(drivers, fake_slack, run_id,
                                                               TRAFFIC_SECONDS, seed))
                       for seed in range(4)]
            for worker in workers:
                worker.start()
            time.sleep(TRAFFIC_SECONDS / 2)
            os.killpg(clock.pid, signal.SIGKILL)  # mid-run, without warning
            clock.wait()
            for worker in workers:
                worker.join()
        check_invariants(pg_database, fake_slack)
        with process(tmp_path / "c2", "clock", fake_slack, url, **env):
            traffic(drivers, fake_slack, run_id, TRAFFIC_SECONDS / 2, seed=99)
            # Let the new clock pick up what the dead one left, including check-ins it held
            # when it was killed (their lease runs out first).
            eventually(lambda: checkins_sent(sessions) > 0, timeout=25)
            time.sleep(3)
        check_invariants(pg_database, fake_slack)
    with sessions() as session:
        states = Counter(r.state for r in session.scalars(select(SupportRequest)))
        answered = len(session.scalars(select(PulseAnswer)).all())
        sent = len(session.scalars(select(CheckIn).where(CheckIn.sent_at.is_not(None))).all())
    print(f"requests by state {dict(states)}, prompt answers {answered}, check-ins sent {sent}, "
          f"offers posted {len(accept_buttons(fake_slack))}")
    # The traffic really exercised the promises it checks.
    assert states[RequestState.ASSIGNED] + states[RequestState.CLOSED] > 0
    assert len(accept_buttons(fake_slack)) > 5 and answered > 5 and sent > 0


@pytest.fixture(autouse=True)
def _dirs(tmp_path: Path) -> None:
    for name in ("a", "b", "c1", "c2"):
        (tmp_path / name).mkdir()
