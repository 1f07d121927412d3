"""The app's own health: the clock's heartbeat and when it counts as stopped, coordinators told
once when it stops and once when it is back (however many web processes watch), messages Slack
keeps refusing, and what coordinators see of it."""

from __future__ import annotations

import json
import os
import threading
from datetime import datetime, timedelta
from pathlib import Path

import yaml
from sqlalchemy import func, select

from bot.app.runtime import Runtime, build_runtime
from bot.app.scheduler import Watch, tick
from bot.infra import health
from bot.infra.clock import ManualClock
from bot.infra.duework import schedule
from bot.infra.messaging import build_client
from bot.infra.models import ClockHeartbeat, DueWork, WorkState
from bot.infra.outbox import MESSAGE
from bot.sandbox.slack_api import FakeSlack
from handlers.common.blockkit import to_dicts
from handlers.home.health_blocks import clock_back_message, clock_stopped_message, health_blocks
from tests.blockkit import VIEW_BLOCKS, assert_within_limits
from tests.conftest import START, Database, run_together

ROOT = Path(__file__).resolve().parents[2]
COORDINATORS = ("UCOORD0001", "UCOORD0002")
LIMIT = timedelta(seconds=945)  # the sandbox settings' 3 ticks of 15 s plus 900 s of grace


def beat(runtime: Runtime, at: datetime | None = None) -> None:
    with runtime.sessions.begin() as session:
        health.beat(session, "clock-host:123", at or runtime.clock.now())


def dms(fake: FakeSlack, user_id: str) -> list[str]:
    channel = fake.dm_channel([user_id])
    return [m["text"] for m in fake.messages.get(channel, [])] if channel else []


def coordinated(runtime: Runtime, fake: FakeSlack) -> Runtime:
    runtime.roles.coordinators = frozenset(COORDINATORS)
    for user_id in COORDINATORS:
        fake.add_user(user_id)
    return runtime


def another_process(runtime: Runtime, database: Database, clock: ManualClock) -> Runtime:
    """A second web process on the same database, Slack and clock."""
    settings = runtime.settings
    other = build_runtime(settings, clock=clock, client=build_client(settings, timeout=5),
                          engine=database.new_engine(), run_migrations=False)
    other.roles.coordinators = runtime.roles.coordinators
    return other


# -- the rule ----------------------------------------------------------------------------------


def test_the_clock_is_stopped_once_older_than_three_ticks_and_the_grace() -> None:
    assert health.stale_limit(15, 900) == LIMIT
    assert health.stale_limit(0.2, 0) == timedelta(seconds=0.6)
    last = START
    assert not health.is_stale(last, START + LIMIT, LIMIT)
    assert health.is_stale(last, START + LIMIT + timedelta(seconds=1), LIMIT)
    assert not health.is_stale(None, START + timedelta(days=30), LIMIT), "nobody looked yet"


def test_the_scopes_checked_are_the_manifests() -> None:
    manifest = yaml.safe_load((ROOT / "manifest.yml").read_text())
    assert sorted(health.SLACK_SCOPES) == sorted(manifest["oauth_config"]["scopes"]["bot"]), \
        "manifest.yml's bot scopes changed: list them in bot.infra.health.SLACK_SCOPES too"
    assert len(set(health.SLACK_SCOPES)) == len(health.SLACK_SCOPES)


def test_each_tick_of_the_clock_records_its_heartbeat(runtime: Runtime, clock: ManualClock
                                                      ) -> None:
    engine = runtime.duework()
    tick(engine)
    clock.advance(15)
    tick(engine)
    with runtime.sessions() as session:
        status = health.clock_status(session, now=clock.now(), limit=LIMIT)
        rows = session.scalar(select(func.count()).select_from(ClockHeartbeat))
    assert status.ticked_at == clock.now() and not status.stale
    assert status.process.endswith(f":{os.getpid()}")
    assert rows == 1


# -- telling coordinators ----------------------------------------------------------------------


def test_a_stopped_clock_is_told_once_then_once_when_back(
        runtime: Runtime, fake_slack: FakeSlack, clock: ManualClock, database: Database) -> None:
    coordinated(runtime, fake_slack)
    other = another_process(runtime, database, clock)
    beat(runtime)
    assert runtime.watch_clock() is None
    clock.advance(LIMIT)
    assert runtime.watch_clock() is None, "at the limit exactly it is not late yet"
    clock.advance(1)
    assert runtime.watch_clock() == "stopped"
    for user_id in COORDINATORS:
        assert dms(fake_slack, user_id) == ["The peer support app's clock has stopped"]
    # Every other look, by this process or another, in a minute or in hours, tells nobody.
    for _ in range(3):
        assert other.watch_clock() is None and runtime.watch_clock() is None
        clock.advance(timedelta(hours=1))
    assert all(len(dms(fake_slack, user_id)) == 1 for user_id in COORDINATORS)

    beat(runtime)
    assert other.watch_clock() == "back"
    assert runtime.watch_clock() is None and other.watch_clock() is None
    for user_id in COORDINATORS:
        assert dms(fake_slack, user_id) == ["The peer support app's clock has stopped",
                                            "The peer support app's clock is running again"]

    # A second stop is a new episode: told again, once.
    clock.advance(LIMIT + timedelta(seconds=1))
    assert runtime.watch_clock() == "stopped" and other.watch_clock() is None
    assert [len(dms(fake_slack, user_id)) for user_id in COORDINATORS] == [3, 3]
    other.engine.dispose()


def test_a_clock_that_never_ticked_is_told_after_the_limit(
        runtime: Runtime, fake_slack: FakeSlack, clock: ManualClock) -> None:
    coordinated(runtime, fake_slack)
    assert runtime.watch_clock() is None  # the first look starts the wait
    clock.advance(LIMIT + timedelta(seconds=1))
    assert runtime.watch_clock() == "stopped"
    message = fake_slack.messages[fake_slack.dm_channel([COORDINATORS[0]])][0]
    assert f"has not run since <!date^{int(START.timestamp())}^" in json.dumps(message["blocks"])


def test_a_clock_back_before_anyone_was_told_tells_nobody(
        runtime: Runtime, fake_slack: FakeSlack, clock: ManualClock) -> None:
    coordinated(runtime, fake_slack)
    beat(runtime)
    clock.advance(LIMIT * 2)
    beat(runtime)  # it ticked again before any web process looked
    assert runtime.watch_clock() is None
    assert all(dms(fake_slack, user_id) == [] for user_id in COORDINATORS)


def test_watchers_looking_at_once_tell_each_coordinator_once(
        database: Database, clock: ManualClock) -> None:
    with database.sessions.begin() as session:
        health.beat(session, "clock-host:1", START)
    now = START + LIMIT + timedelta(minutes=1)

    def look(_index: int, go) -> str | None:  # noqa: ANN001
        sessions = database.sessions
        go()
        with sessions.begin() as session:
            return health.watch_clock(session, now=now, limit=LIMIT, coordinators=COORDINATORS,
                                      stopped=clock_stopped_message, back=clock_back_message)

    changes = run_together(look, range(6))
    assert changes.count("stopped") == 1 and changes.count(None) == 5
    with database.sessions() as session:
        told = session.scalars(select(DueWork.key).where(DueWork.kind == MESSAGE)).all()
    assert sorted(told) == [f"clock:stopped:1:{user_id}" for user_id in COORDINATORS]


def test_the_watch_keeps_looking_after_a_failed_look() -> None:
    looks: list[int] = []
    done = threading.Event()

    def check() -> None:
        looks.append(1)
        if len(looks) == 1:
            raise RuntimeError("database briefly down")
        if len(looks) == 3:
            done.set()

    watch = Watch(check, every=0.01).start()
    try:
        assert done.wait(5), "the watch stopped after a failure"
    finally:
        watch.stop()


# -- messages Slack refuses ------------------------------------------------------------------


def test_refusals_count_messages_failed_for_good_and_held_back_by_slack(
        database: Database) -> None:
    now = START
    old = now - timedelta(minutes=10)
    with database.sessions.begin() as session:
        for key, state, error, created in (
                ("failed", WorkState.FAILED, "SlackApiError", old),
                ("scope", WorkState.PENDING, "slack: missing_scope", old),
                ("revoked", WorkState.PENDING, "slack: token_revoked", old),
                ("busy", WorkState.PENDING, "slack: ratelimited", old),
                ("just-now", WorkState.PENDING, "slack: missing_scope", now),
                ("delivered", WorkState.DONE, "slack: missing_scope", old)):
            schedule(session, MESSAGE, now, now=created, key=key, payload={})
            row = session.scalars(select(DueWork).where(DueWork.key == key)).one()
            row.state, row.last_error = state, error
            row.finished_at = now - timedelta(hours=1) if state != WorkState.PENDING else None
        schedule(session, "not-a-message", now, now=old, key="timer", payload={})
        session.scalars(select(DueWork).where(DueWork.key == "timer")).one().state = "failed"
    with database.sessions() as session:
        found = health.refusals(session, now=now, since=now - timedelta(days=1))
        later = health.refusals(session, now=now, since=now - timedelta(minutes=30))
    assert (found.refused, found.held_back) == (1, 2)
    assert found.errors == ("missing_scope", "token_revoked")
    assert later.refused == 0, "refused before the look-back is not counted"


# -- what coordinators see ---------------------------------------------------------------------


def status(ticked_at: datetime | None, *, stale: bool, since: datetime | None = START
           ) -> health.ClockStatus:
    return health.ClockStatus(ticked_at, "host:1", since if ticked_at is None else ticked_at,
                              LIMIT, stale=stale, told=False)


def section(clock: health.ClockStatus, refusals: health.Refusals | None = None) -> str:
    blocks = to_dicts(health_blocks(health.Health(
        clock=clock, refusals=refusals or health.Refusals(0, 0, ()), now=START)))
    assert_within_limits(blocks, max_blocks=VIEW_BLOCKS)
    return json.dumps(blocks, ensure_ascii=False)


def test_the_health_section_says_whether_the_clock_runs() -> None:
    token = f"<!date^{int(START.timestamp())}^{{date_short_pretty}} at {{time}}|Mon 2 Mar 2026, 14:00 UTC>"
    running = section(status(START, stale=False))
    assert "The app's clock is running" in running and token in running
    stopped = section(status(START, stale=True))
    assert "*The app's clock has stopped* (last ran" in stopped and token in stopped
    assert "restart its clock process" in stopped
    assert "has not run yet" in section(status(None, stale=False, since=None))
    never = section(status(None, stale=True))
    assert "has stopped* (has not run since" in never


def test_the_health_section_names_what_slack_refuses() -> None:
    shown = section(status(START, stale=False), health.Refusals(4, 2, ("missing_scope",)))
    assert "*Slack is refusing the app:* 2 messages held back (`missing_scope`)" in shown
    assert "python -m bot doctor" in shown
    assert "Slack is refusing" not in section(status(START, stale=False),
                                              health.Refusals(4, 0, ()))


def test_the_clock_messages_fit_and_say_what_waits() -> None:
    stopped = clock_stopped_message(status(START, stale=True))
    back = clock_back_message(status(START + timedelta(hours=2), stale=False))
    for message in (stopped, back):
        assert message["text"]
        assert_within_limits(message["blocks"])
    text = json.dumps(stopped)
    assert "check-ins" in text and "escalations" in text and "New requests still go out" in text
    assert "running again" in back["text"]
    assert f"<!date^{int(START.timestamp()) + 7200}^" in json.dumps(back)
