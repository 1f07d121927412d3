"""Who sends a committed message: a clock that PostgreSQL wakes at once while one listens, the
process that recorded it otherwise, and a web process's sweep for one handed to a clock that
died before sending it."""

from __future__ import annotations

from collections.abc import Iterator
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.app.runtime import SWEEP_AFTER, SWEEP_BEHIND_LISTENER, Runtime, build_runtime
from bot.infra import outbox, wakeup
from bot.infra.clock import ManualClock
from bot.infra.messaging import build_client
from bot.infra.models import DueWork, WorkState
from bot.sandbox.slack_api import FakeSlack
from bot.sandbox.world import sandbox_settings
from tests.conftest import Database, eventually

PERSON = "UCLIN00001"


def a_runtime(database: Database, fake: FakeSlack, clock: ManualClock, **settings: str
              ) -> Runtime:
    """A process's runtime on the shared database (as a web process or a clock has)."""
    config = sandbox_settings(fake, database.url).model_copy(
        update={"delivery": "auto", **settings})
    runtime = build_runtime(config, clock=clock, client=build_client(config, timeout=5),
                            engine=database.new_engine(), run_migrations=False)
    runtime.listening_kept = 0.0  # look every time: the tests change who listens
    return runtime


@pytest.fixture
def web(pg_database: Database, fake_slack: FakeSlack, clock: ManualClock) -> Iterator[Runtime]:
    runtime = a_runtime(pg_database, fake_slack, clock)
    yield runtime
    runtime.engine.dispose()


@pytest.fixture
def clock_process(pg_database: Database, fake_slack: FakeSlack, clock: ManualClock
                  ) -> Iterator[Runtime]:
    runtime = a_runtime(pg_database, fake_slack, clock)
    yield runtime
    runtime.engine.dispose()


def record_message(runtime: Runtime, key: str) -> None:
    """What any click leads to: a message recorded in the transaction that commits it."""
    with runtime.sessions.begin() as session:
        outbox.message(session, PERSON, {"text": "A note for you."}, key=key,
                       now=runtime.clock.now())


def item(runtime: Runtime, key: str) -> DueWork:
    with runtime.sessions() as session:
        return session.scalars(select(DueWork).where(DueWork.key == key)).one()


def posted(fake: FakeSlack) -> int:
    return len(fake.calls_to("chat.postMessage"))


def test_a_listening_clock_sends_what_a_web_process_commits(
        web: Runtime, clock_process: Runtime, fake_slack: FakeSlack) -> None:
    listener = clock_process.listen()
    try:
        assert eventually(web.hands_over), "the web process sees a clock listening"
        record_message(web, "note:1")
        assert eventually(lambda: item(web, "note:1").state == WorkState.DONE)
        sent_by = item(web, "note:1").claim_token or ""
        assert sent_by.startswith("deliver:"), "the clock's listener sent it, not the web"
        assert posted(fake_slack) == 1
    finally:
        listener.stop()
    assert not web.hands_over(), "a clean stop says so: the web sends its own at once"
    record_message(web, "note:2")
    assert item(web, "note:2").state == WorkState.DONE
    assert (item(web, "note:2").claim_token or "").startswith("now:")
    assert posted(fake_slack) == 2


def test_a_rolled_back_transaction_wakes_nobody_and_sends_nothing(
        web: Runtime, clock_process: Runtime, fake_slack: FakeSlack) -> None:
    listener = clock_process.listen()
    try:
        assert eventually(web.hands_over)
        session = web.sessions()
        with session.begin():
            outbox.message(session, PERSON, {"text": "Never."}, key="note:gone",
                           now=web.clock.now())
            session.rollback()
        record_message(web, "note:kept")  # committed after: it alone goes out
        assert eventually(lambda: item(web, "note:kept").state == WorkState.DONE)
    finally:
        listener.stop()
    assert posted(fake_slack) == 1


def test_a_message_handed_to_a_clock_that_died_is_swept_up_by_the_web(
        web: Runtime, clock: ManualClock, fake_slack: FakeSlack) -> None:
    # A clock said it listens, then was killed before the message came: nobody is woken, and
    # for a few seconds more it still counts as listening.
    with web.sessions.begin() as session:
        wakeup.say_listening(session, clock.now())
    record_message(web, "note:1")
    assert item(web, "note:1").state == WorkState.PENDING, "handed over, not sent here"
    assert web.sweep_outbox() == 0, "a woken clock claims it within moments: left to it"

    clock.advance(SWEEP_AFTER.total_seconds())
    assert web.hands_over(), "the dead clock still counts as listening"
    assert web.sweep_outbox() == 0, "a listening clock may just be behind: left to it"
    clock.advance(wakeup.FRESH.total_seconds() - SWEEP_AFTER.total_seconds())
    assert not web.hands_over(), "it has not said it listens for too long"
    assert web.sweep_outbox() == 1, "so what it never took is sent from here"
    assert item(web, "note:1").state == WorkState.DONE
    assert posted(fake_slack) == 1
    assert web.sweep_outbox() == 0, "sent once"


def test_a_listening_clock_far_behind_gets_help_from_the_web(
        web: Runtime, clock: ManualClock, fake_slack: FakeSlack) -> None:
    with web.sessions.begin() as session:
        wakeup.say_listening(session, clock.now())
    record_message(web, "note:1")
    clock.advance(SWEEP_BEHIND_LISTENER.total_seconds() - 1)
    with web.sessions.begin() as session:
        wakeup.say_listening(session, clock.now())  # alive, still working through a burst
    assert web.sweep_outbox() == 0
    clock.advance(1)
    assert web.hands_over() and web.sweep_outbox() == 1, "a minute behind: the web sends it"
    assert posted(fake_slack) == 1


def test_the_sweep_leaves_a_message_just_committed_to_whoever_sends_it(
        web: Runtime, clock: ManualClock, fake_slack: FakeSlack) -> None:
    with web.sessions.begin() as session:
        wakeup.say_listening(session, clock.now() - wakeup.FRESH)  # gone quiet already
        outbox.message(session, PERSON, {"text": "Soon."}, key="note:1", now=clock.now())
        session.info.pop(outbox.DELIVER_NOW, None)  # the one sending it is still on its way
    assert web.sweep_outbox() == 0, "younger than the sweep's wait"
    clock.advance(SWEEP_AFTER.total_seconds())
    assert web.sweep_outbox() == 1
    assert posted(fake_slack) == 1


def test_sqlite_and_the_web_setting_never_hand_over(
        sqlite_database: Database, pg_database: Database, fake_slack: FakeSlack,
        clock: ManualClock) -> None:
    embedded = a_runtime(sqlite_database, fake_slack, clock)
    told_to = a_runtime(pg_database, fake_slack, clock, delivery="web")
    for runtime in (embedded, told_to):
        with runtime.sessions.begin() as session:
            wakeup.say_listening(session, clock.now())
        assert not runtime.hands_over()
        record_message(runtime, "note:1")
        assert item(runtime, "note:1").state == WorkState.DONE, "sent by its own process"
        runtime.engine.dispose()
    assert posted(fake_slack) == 2


def test_a_burst_of_commits_is_sent_once_each(
        web: Runtime, clock_process: Runtime, fake_slack: FakeSlack) -> None:
    listener = clock_process.listen()
    try:
        assert eventually(web.hands_over)
        for n in range(40):
            record_message(web, f"note:{n}")
        assert eventually(lambda: posted(fake_slack) >= 40, timeout=20)
        assert eventually(lambda: all(item(web, f"note:{n}").state == WorkState.DONE
                                      for n in range(40)))
    finally:
        listener.stop()
    assert posted(fake_slack) == 40


def test_a_listener_clock_far_ahead_counts_as_nobody(
        web: Runtime, clock: ManualClock, fake_slack: FakeSlack) -> None:
    """Hosts whose clocks disagree by more than the freshness window must not leave messages
    handed to a listener that may be long gone: the web sends its own."""
    with web.sessions.begin() as session:
        wakeup.say_listening(session, clock.now() + wakeup.FRESH + timedelta(seconds=1))
    assert not web.hands_over()
    record_message(web, "note:1")
    assert item(web, "note:1").state == WorkState.DONE
    with web.sessions.begin() as session:
        wakeup.say_listening(session, clock.now() + timedelta(seconds=2))  # a little ahead
    assert web.hands_over()
