"""The due-work engine on real databases, driven by a manual clock."""

from __future__ import annotations

import threading
from collections import Counter
from datetime import timedelta

import pytest
from sqlalchemy import func, select, update

from bot.infra.clock import ManualClock
from bot.infra.db import make_sessions
from bot.infra.duework import (
    DueWorkEngine,
    JobContext,
    JobKind,
    JobRegistry,
    RetryLater,
    cancel,
    schedule,
)
from bot.infra.models import DueWork, WorkState
from tests.conftest import Database, run_together


class Recorder:
    """A job kind's body that records each run, thread-safely."""

    def __init__(self) -> None:
        self.runs: list[int] = []
        self.payloads: list[dict] = []
        self._lock = threading.Lock()

    def __call__(self, ctx: JobContext) -> None:
        with self._lock:
            self.runs.append(ctx.item_id)
            self.payloads.append(dict(ctx.payload))


def make_engine(db: Database, clock: ManualClock, *kinds: JobKind, **options) -> DueWorkEngine:
    registry = JobRegistry()
    for kind in kinds:
        registry.register(kind)
    return DueWorkEngine(db.sessions, registry, clock, **options)


def add(db: Database, clock: ManualClock, kind: str, in_seconds: float, **extra) -> None:
    with db.sessions.begin() as session:
        schedule(session, kind, clock.now() + timedelta(seconds=in_seconds), now=clock.now(),
                 **extra)


def states(db: Database) -> Counter:
    with db.sessions() as session:
        return Counter(session.scalars(select(DueWork.state)))


def test_work_runs_when_due_and_not_before(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("ping", recorder))
    add(database, clock, "ping", 60, payload={"request_id": 7})

    assert engine.tick().claimed == 0
    clock.advance(59)
    assert engine.tick().claimed == 0
    clock.advance(1)
    report = engine.tick()

    assert (report.claimed, report.done) == (1, 1)
    assert recorder.payloads == [{"request_id": 7}]
    assert engine.tick().claimed == 0, "a finished item never runs again"
    assert states(database) == Counter({WorkState.DONE: 1})


def test_same_key_is_scheduled_once(database: Database, clock: ManualClock) -> None:
    with database.sessions.begin() as session:
        first = schedule(session, "ping", clock.now(), now=clock.now(), key="checkin:1:day1")
        second = schedule(session, "ping", clock.now(), now=clock.now(), key="checkin:1:day1")
    assert (first, second) == (True, False)
    with database.sessions() as session:
        assert session.scalar(select(func.count()).select_from(DueWork)) == 1


def test_items_run_in_due_order_in_batches(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("ping", recorder), batch_size=2)
    for seconds, label in [(30, "c"), (10, "a"), (20, "b")]:
        add(database, clock, "ping", seconds, payload={"label": label})
    clock.advance(30)

    assert engine.tick().claimed == 2
    assert engine.tick().claimed == 1
    assert [p["label"] for p in recorder.payloads] == ["a", "b", "c"]


def test_one_claim_starts_its_items_in_the_order_they_were_recorded(
        database: Database, clock: ManualClock) -> None:
    """A message's post recorded first but handed to a later tick, and its update recorded
    after it but due sooner, meet in one claim: the post starts first, so the update never
    waits on a post queued behind it."""
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("ping", recorder))
    for seconds, label in [(30, "post"), (10, "update"), (20, "other")]:
        add(database, clock, "ping", seconds, payload={"label": label})
    clock.advance(30)

    assert engine.tick().claimed == 3
    assert [p["label"] for p in recorder.payloads] == ["post", "update", "other"]


def test_retry_later_runs_again_after_the_delay(database: Database, clock: ManualClock) -> None:
    calls: list[int] = []

    def rate_limited_once(ctx: JobContext) -> None:
        calls.append(ctx.attempt)
        if len(calls) == 1:
            raise RetryLater(30, "ratelimited")

    engine = make_engine(database, clock, JobKind("dm", rate_limited_once))
    add(database, clock, "dm", 0)
    assert engine.tick().retried == 1
    clock.advance(29)
    assert engine.tick().claimed == 0
    clock.advance(1)
    assert engine.tick().done == 1
    assert calls == [1, 1], "a rate limit gives its attempt back"


def test_failing_work_backs_off_then_fails_visibly(database: Database, clock: ManualClock) -> None:
    def broken(ctx: JobContext) -> None:
        raise RuntimeError("secret text must not be stored")

    engine = make_engine(database, clock, JobKind("dm", broken, max_attempts=3))
    add(database, clock, "dm", 0)
    assert engine.tick().retried == 1
    clock.advance(29)
    assert engine.tick().claimed == 0, "the first retry waits 30 seconds"
    clock.advance(1)
    assert engine.tick().retried == 1
    clock.advance(60)
    assert engine.tick().failed == 1
    clock.advance(3600)
    assert engine.tick().claimed == 0
    with database.sessions() as session:
        item = session.scalars(select(DueWork)).one()
    assert (item.state, item.attempts, item.last_error) == (WorkState.FAILED, 3, "RuntimeError")


def test_job_database_work_rolls_back_when_it_fails(database: Database, clock: ManualClock) -> None:
    def schedules_then_fails(ctx: JobContext) -> None:
        schedule(ctx.session, "follow", ctx.now, now=ctx.now, key="follow-up")
        raise RuntimeError("boom")

    engine = make_engine(database, clock, JobKind("dm", schedules_then_fails))
    add(database, clock, "dm", 0)
    engine.tick()
    with database.sessions() as session:
        assert session.scalar(select(DueWork).where(DueWork.key == "follow-up")) is None


def test_claim_of_a_dead_process_is_retaken_after_its_lease(database: Database,
                                                            clock: ManualClock) -> None:
    recorder = Recorder()
    dead = make_engine(database, clock, JobKind("ping", recorder), lease=timedelta(minutes=5))
    alive = make_engine(database, clock, JobKind("ping", recorder), lease=timedelta(minutes=5))
    add(database, clock, "ping", 0)

    _, claimed = dead.claim()  # claimed, then the process "dies" before running it
    assert len(claimed) == 1
    clock.advance(timedelta(minutes=4))
    assert alive.tick().claimed == 0, "a live lease is respected"
    clock.advance(timedelta(minutes=2))
    assert alive.tick().done == 1
    assert len(recorder.runs) == 1


def test_a_job_that_outlives_its_lease_does_not_finish_twice(database: Database,
                                                             clock: ManualClock) -> None:
    recorder = Recorder()
    other = make_engine(database, clock, JobKind("ping", recorder), lease=timedelta(seconds=60))

    def slow(ctx: JobContext) -> None:
        clock.advance(120)  # the job takes longer than its lease...
        assert other.tick().done == 1  # ...so another clock retakes and finishes it
        schedule(ctx.session, "marker", ctx.now, now=ctx.now, key="slow-side-effect")

    slow_engine = make_engine(database, clock, JobKind("ping", slow), lease=timedelta(seconds=60))
    add(database, clock, "ping", 0)
    report = slow_engine.tick()

    assert report.lost_lease == 1
    with database.sessions() as session:
        assert session.scalar(select(DueWork).where(DueWork.key == "slow-side-effect")) is None
        assert session.scalar(select(DueWork.state).where(DueWork.kind == "ping")) == WorkState.DONE


def test_work_missed_while_down_is_spread_not_burst(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("checkin", recorder),
                         grace=timedelta(minutes=15), catchup_window=timedelta(minutes=30))
    for minute in range(20):
        add(database, clock, "checkin", 60 * minute)
    add(database, clock, "checkin", 60 * 60 * 3 - 300)  # falls due 5 minutes before restart
    clock.advance(timedelta(hours=3))  # nothing ran for three hours

    report = engine.tick()
    assert report.done == 1, "an item late by less than the grace period runs at once"
    assert report.rescheduled == 20
    restart = clock.now()
    with database.sessions() as session:
        due = sorted(session.scalars(select(DueWork.due_at).where(
            DueWork.state == WorkState.PENDING)))
    assert all(restart <= moment < restart + timedelta(minutes=30) for moment in due)
    assert len(set(due)) == 20, "rescheduled items are spread, not stacked on one instant"

    per_minute = []
    for _ in range(30):  # the clock now ticks normally, once a minute
        clock.advance(timedelta(minutes=1))
        per_minute.append(engine.tick().done)
    assert sum(per_minute) == 20 and max(per_minute) <= 3
    assert len(recorder.runs) == 21


def test_always_run_kinds_run_however_late(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("escalate", recorder, always_run=True))
    add(database, clock, "escalate", 0)
    clock.advance(timedelta(days=2))
    assert engine.tick().done == 1


def test_kind_may_choose_its_own_catch_up_time(database: Database, clock: ManualClock) -> None:
    def next_morning(item: DueWork, now, window):  # noqa: ANN001, ARG001
        return now + timedelta(hours=10)

    engine = make_engine(database, clock, JobKind("checkin", Recorder(), reschedule=next_morning))
    add(database, clock, "checkin", 0)
    clock.advance(timedelta(hours=1))
    engine.tick()
    with database.sessions() as session:
        item = session.scalars(select(DueWork)).one()
    assert item.due_at == clock.now() + timedelta(hours=10)
    assert (item.rescheduled, item.attempts) == (1, 0)


def test_unknown_kind_fails_visibly(database: Database, clock: ManualClock) -> None:
    engine = make_engine(database, clock)
    add(database, clock, "retired-kind", 0)
    assert engine.tick().failed == 1
    assert states(database) == Counter({WorkState.FAILED: 1})


def test_cancelled_work_never_runs(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("checkin", recorder))
    add(database, clock, "checkin", 10, payload={"request_id": 1})
    add(database, clock, "checkin", 10, payload={"request_id": 2})
    with database.sessions.begin() as session:
        assert cancel(session, now=clock.now(), kind="checkin", payload_match={"request_id": 1}) == 1
    clock.advance(10)
    engine.run_until_idle()
    assert recorder.payloads == [{"request_id": 2}]


def test_finished_work_is_purged_after_a_week(database: Database, clock: ManualClock) -> None:
    engine = make_engine(database, clock, JobKind("ping", Recorder()))
    add(database, clock, "ping", 0)
    engine.tick()
    clock.advance(timedelta(days=8))
    engine.tick()
    assert states(database) == Counter()


def test_bad_schedule_input_is_refused(database: Database, clock: ManualClock) -> None:
    from datetime import datetime

    with pytest.raises(Exception, match="naive"), database.sessions.begin() as session:
        schedule(session, "ping", datetime(2026, 1, 1), now=clock.now())  # noqa: DTZ001
    assert states(database) == Counter()


def test_a_kind_name_is_registered_once() -> None:
    registry = JobRegistry()
    registry.register(JobKind("x", Recorder()))
    with pytest.raises(ValueError, match="already registered"):
        registry.register(JobKind("x", Recorder()))


def _two_clocks_run_everything_once(database: Database, clock: ManualClock, items: int) -> None:
    recorder = Recorder()
    for _ in range(items):
        add(database, clock, "ping", 0)
    clock.advance(1)
    engines = []
    for name in ("clock-a", "clock-b"):
        registry = JobRegistry()
        registry.register(JobKind("ping", recorder))
        # Each clock has its own engine and connection pool, as a separate process would.
        engines.append(DueWorkEngine(make_sessions(database.new_engine()), registry, clock,
                                     batch_size=7, worker_id=name))

    def run(engine: DueWorkEngine, go) -> None:  # noqa: ANN001
        go()
        while engine.tick().claimed:
            pass

    run_together(run, engines)
    counts = Counter(recorder.runs)
    assert len(counts) == items, "every item ran"
    assert max(counts.values()) == 1, "no item ran twice"
    assert states(database) == Counter({WorkState.DONE: items})


def test_two_clocks_on_postgresql_never_run_an_item_twice(pg_database: Database,
                                                          clock: ManualClock) -> None:
    _two_clocks_run_everything_once(pg_database, clock, items=400)


def test_two_clocks_on_sqlite_never_run_an_item_twice(sqlite_database: Database,
                                                      clock: ManualClock) -> None:
    _two_clocks_run_everything_once(sqlite_database, clock, items=120)


def test_a_backlog_larger_than_a_batch_goes_out_in_one_period(database: Database,
                                                               clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("ping", recorder), batch_size=40)
    with database.sessions.begin() as session:
        for n in range(100):
            schedule(session, "ping", clock.now(), now=clock.now(), payload={"n": n})

    report = engine.drain()  # what the clock runs once per period

    assert (report.claimed, report.done) == (100, 100)
    assert sorted(p["n"] for p in recorder.payloads) == list(range(100))
    assert states(database) == Counter({WorkState.DONE: 100})


def test_a_batch_runs_several_items_at_once_each_exactly_once(pg_database: Database,
                                                               clock: ManualClock) -> None:
    inside, most, lock = [0], [0], threading.Lock()
    everyone_in = threading.Barrier(3, timeout=10)
    recorder = Recorder()

    def slow(ctx: JobContext) -> None:
        with lock:
            inside[0] += 1
            most[0] = max(most[0], inside[0])
        if ctx.payload["n"] < 3:
            everyone_in.wait()  # the first three meet: only possible if they run together
        recorder(ctx)
        with lock:
            inside[0] -= 1

    engine = make_engine(pg_database, clock, JobKind("slow", slow), threads=4)
    with pg_database.sessions.begin() as session:
        for n in range(30):
            schedule(session, "slow", clock.now() + timedelta(microseconds=n), now=clock.now(),
                     payload={"n": n})
    clock.advance(1)

    report = engine.drain()

    assert (report.claimed, report.done, report.failed) == (30, 30, 0)
    assert most[0] >= 3
    assert sorted(recorder.runs) == sorted(set(recorder.runs)) and len(recorder.runs) == 30


class BatchRecorder:
    """A batch kind's body: records each batch, fails the items it is told to, once each."""

    def __init__(self, fail_once: dict[int, Exception] | None = None) -> None:
        self.batches: list[list[int]] = []
        self.fail_once = dict(fail_once or {})

    def __call__(self, batch) -> dict[int, Exception]:  # noqa: ANN001
        self.batches.append([ctx.payload["n"] for ctx in batch])
        assert len({id(ctx.session) for ctx in batch}) == 1, "one session for the whole batch"
        failures = {}
        for ctx in batch:
            if ctx.payload["n"] in self.fail_once:
                failures[ctx.item_id] = self.fail_once.pop(ctx.payload["n"])
        return failures


def test_a_batch_kind_gets_its_due_items_together_and_failures_are_retried_on_their_own(
        database: Database, clock: ManualClock) -> None:
    batch = BatchRecorder({3: RetryLater(30, "ratelimited"), 5: RuntimeError("broken")})
    single = Recorder()
    engine = make_engine(database, clock, JobKind("checkin", single, run_batch=batch),
                         JobKind("ping", Recorder()), batch_size=20)
    with database.sessions.begin() as session:
        for n in range(10):
            schedule(session, "checkin", clock.now(), now=clock.now(), payload={"n": n})
        schedule(session, "ping", clock.now(), now=clock.now(), payload={"n": 99})

    report = engine.tick()

    assert (report.claimed, report.done, report.retried) == (11, 9, 2)
    assert batch.batches == [list(range(10))] and single.runs == []
    clock.advance(30)
    report = engine.tick()
    assert (report.claimed, report.done) == (2, 2), "both retried after 30 s, nothing else"
    assert sorted(batch.batches[1]) == [3, 5]
    assert states(database) == Counter({WorkState.DONE: 11})


def test_a_batch_that_raises_is_undone_and_its_items_run_one_by_one(
        database: Database, clock: ManualClock) -> None:
    def schedules_then_fails(batch) -> dict[int, Exception]:  # noqa: ANN001
        schedule(batch[0].session, "follow", batch[0].now, now=batch[0].now, key="follow-up")
        raise RuntimeError("boom")

    alone = Recorder()
    engine = make_engine(database, clock,
                         JobKind("checkin", alone, run_batch=schedules_then_fails))
    for _ in range(3):
        add(database, clock, "checkin", 0)

    report = engine.tick()

    assert (report.claimed, report.done, report.retried) == (3, 3, 0)
    assert len(alone.runs) == 3
    with database.sessions() as session:
        assert session.scalar(select(DueWork).where(DueWork.key == "follow-up")) is None
    assert states(database) == Counter({WorkState.DONE: 3})


def test_items_rerun_after_their_batch_raised_are_told_they_run_again(
        database: Database, clock: ManualClock) -> None:
    # The batch may have posted before it raised: a job that looks before posting on a retry
    # must look here too, or the same message goes out twice.
    def fails(batch) -> dict[int, Exception]:  # noqa: ANN001
        raise RuntimeError("boom")

    attempts: list[int] = []
    engine = make_engine(database, clock, JobKind(
        "offer", lambda ctx: attempts.append(ctx.attempt), run_batch=fails))
    for _ in range(2):
        add(database, clock, "offer", 0)
    engine.tick()
    assert attempts == [2, 2], "claimed once, and the batch counted as a first attempt"


def test_one_item_that_always_breaks_its_batch_fails_alone(database: Database,
                                                           clock: ManualClock) -> None:
    def poisoned(ctx: JobContext) -> None:
        if ctx.payload["n"] == 2:
            raise RuntimeError("this one is broken")

    def batch(contexts) -> dict[int, Exception]:  # noqa: ANN001
        for ctx in contexts:
            poisoned(ctx)
        return {}

    engine = make_engine(database, clock, JobKind("checkin", poisoned, run_batch=batch,
                                                  max_attempts=2), batch_size=20)
    with database.sessions.begin() as session:
        for n in range(6):
            schedule(session, "checkin", clock.now(), now=clock.now(), payload={"n": n})

    assert engine.tick().done == 5
    clock.advance(30)
    assert engine.tick().failed == 1
    assert states(database) == Counter({WorkState.DONE: 5, WorkState.FAILED: 1})


def test_an_item_whose_lease_was_lost_during_its_batch_is_left_to_its_new_owner(
        database: Database, clock: ManualClock) -> None:
    def taken_meanwhile(contexts) -> dict[int, Exception]:  # noqa: ANN001
        # Another clock retakes the first item (its lease ran out) while the batch runs.
        with database.sessions.begin() as other:
            other.execute(update(DueWork).where(DueWork.id == contexts[0].item_id)
                          .values(claim_token="other-clock"))
        return {}

    engine = make_engine(database, clock,
                         JobKind("checkin", Recorder(), run_batch=taken_meanwhile))
    for _ in range(3):
        add(database, clock, "checkin", 0)

    report = engine.tick()

    assert (report.done, report.lost_lease) == (2, 1)
    assert states(database) == Counter({WorkState.DONE: 2, WorkState.RUNNING: 1})


def items(db: Database) -> list[DueWork]:
    with db.sessions() as session:
        return list(session.scalars(select(DueWork).order_by(DueWork.id)))


class RateLimited:
    """A job that Slack rate-limits `times` times, then answers with `then` (None: success)."""

    def __init__(self, times: int, then: Exception | None = None) -> None:
        self.left = times
        self.then = then
        self.attempts: list[int] = []

    def __call__(self, ctx: JobContext) -> None:
        self.attempts.append(ctx.attempt)
        if self.left:
            self.left -= 1
            raise RetryLater(30, "ratelimited")
        if self.then is not None:
            error, self.then = self.then, None
            raise error


def test_rate_limits_never_use_up_the_attempts(database: Database, clock: ManualClock) -> None:
    job = RateLimited(10)
    engine = make_engine(database, clock, JobKind("dm", job))  # max_attempts 6
    add(database, clock, "dm", 0)

    for _ in range(10):
        assert engine.tick().retried == 1
        clock.advance(30)
    assert engine.tick().done == 1

    assert job.attempts == [1] * 11
    assert states(database) == Counter({WorkState.DONE: 1})


def test_an_error_after_many_rate_limits_is_retried_not_failed(database: Database,
                                                                clock: ManualClock) -> None:
    job = RateLimited(10, then=RuntimeError("slack is down"))
    engine = make_engine(database, clock, JobKind("dm", job))
    add(database, clock, "dm", 0)
    for _ in range(10):
        engine.tick()
        clock.advance(30)

    report = engine.tick()

    assert (report.retried, report.failed) == (1, 0)
    [item] = items(database)
    assert (item.state, item.attempts, item.last_error) == (WorkState.PENDING, 1, "RuntimeError")
    clock.advance(30)
    assert engine.tick().done == 1


def test_rate_limits_in_a_batch_give_their_attempt_back(database: Database,
                                                        clock: ManualClock) -> None:
    left = {"n": 10}

    def batch(contexts) -> dict[int, Exception]:  # noqa: ANN001
        if left["n"]:
            left["n"] -= 1
            return {ctx.item_id: RetryLater(30, "ratelimited") for ctx in contexts}
        return {}

    engine = make_engine(database, clock, JobKind("checkin", Recorder(), run_batch=batch,
                                                  max_attempts=2))
    add(database, clock, "checkin", 0, payload={"n": 1})
    for _ in range(10):
        assert engine.tick().retried == 1
        clock.advance(30)
    assert engine.tick().done == 1
    assert [item.attempts for item in items(database)] == [1]


def test_an_item_whose_lease_ran_out_while_it_waited_is_not_started(
        database: Database, clock: ManualClock) -> None:
    ran: list[int] = []

    def slow(ctx: JobContext) -> None:
        ran.append(ctx.payload["n"])
        if ctx.payload["n"] == 1:
            clock.advance(120)  # the first item outlasts the lease of the whole claim

    engine = make_engine(database, clock, JobKind("ping", slow), lease=timedelta(seconds=60))
    add(database, clock, "ping", 0, payload={"n": 1})
    add(database, clock, "ping", 1, payload={"n": 2})
    clock.advance(1)

    report = engine.tick()

    assert (report.claimed, report.done, report.lost_lease) == (2, 1, 1)
    assert ran == [1], "the second item was not started after its lease ran out"
    second = items(database)[1]
    assert second.state == WorkState.RUNNING and second.lease_until < clock.now()
    other = make_engine(database, clock, JobKind("ping", slow), lease=timedelta(seconds=60))
    assert other.tick().done == 1, "its row is anyone's to retake"
    assert ran == [1, 2]


def test_a_batch_member_whose_lease_ran_out_is_not_started(database: Database,
                                                           clock: ManualClock) -> None:
    batches: list[list[int]] = []

    def slow_single(ctx: JobContext) -> None:
        clock.advance(120)  # a single item runs first and outlasts the claim's lease

    def batch(contexts) -> dict[int, Exception]:  # noqa: ANN001
        batches.append([ctx.item_id for ctx in contexts])
        return {}

    engine = make_engine(database, clock, JobKind("ping", slow_single),
                         JobKind("checkin", Recorder(), run_batch=batch),
                         lease=timedelta(seconds=60))
    add(database, clock, "ping", 0)
    add(database, clock, "checkin", 0)
    add(database, clock, "checkin", 0)

    report = engine.tick()

    assert (report.claimed, report.done, report.lost_lease) == (3, 1, 2)
    assert batches == []


def test_a_finished_key_is_armed_again(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    engine = make_engine(database, clock, JobKind("remind", recorder))
    key = "remind:request:7"
    for finish in ("done", "cancelled", "failed"):
        with database.sessions.begin() as session:
            assert schedule(session, "remind", clock.now(), now=clock.now(), key=key,
                            payload={"after": finish})
        if finish == "done":
            assert engine.tick().done == 1
        elif finish == "cancelled":
            with database.sessions.begin() as session:
                assert cancel(session, now=clock.now(), key=key) == 1
        else:
            with database.sessions.begin() as session:
                session.execute(update(DueWork).values(
                    state=WorkState.FAILED, attempts=6, rescheduled=2, last_error="Boom",
                    finished_at=clock.now(), claim_token="old", lease_until=clock.now()))
        clock.advance(60)

    with database.sessions.begin() as session:
        assert schedule(session, "remind", clock.now() + timedelta(minutes=5), now=clock.now(),
                        key=key, payload={"again": True})

    [item] = items(database)
    assert (item.state, item.due_at, item.payload) == (
        WorkState.PENDING, clock.now() + timedelta(minutes=5), {"again": True})
    assert (item.attempts, item.rescheduled, item.last_error) == (0, 0, None)
    assert (item.claim_token, item.lease_until, item.finished_at) == (None, None, None)
    assert item.created_at == clock.now()
    clock.advance(timedelta(minutes=5))
    assert engine.tick().done == 1
    assert recorder.payloads == [{"after": "done"}, {"again": True}]


def test_a_pending_or_running_key_keeps_the_first(database: Database, clock: ManualClock) -> None:
    def schedule_again(ctx: JobContext) -> None:
        with database.sessions.begin() as session:
            assert not schedule(session, "ping", ctx.now, now=ctx.now, key="k",
                                payload={"n": 3}), "running: kept as it is"

    engine = make_engine(database, clock, JobKind("ping", schedule_again))
    with database.sessions.begin() as session:
        assert schedule(session, "ping", clock.now() + timedelta(seconds=10), now=clock.now(),
                        key="k", payload={"n": 1})
    with database.sessions.begin() as session:
        assert not schedule(session, "ping", clock.now(), now=clock.now(), key="k",
                            payload={"n": 2}), "pending: kept as it is"
    clock.advance(10)
    assert engine.tick().done == 1
    [item] = items(database)
    assert (item.payload, item.state) == ({"n": 1}, WorkState.DONE)


def test_run_now_runs_exactly_the_given_due_items(database: Database, clock: ManualClock) -> None:
    recorder = Recorder()
    batch = BatchRecorder()
    engine = make_engine(database, clock, JobKind("ping", recorder),
                         JobKind("checkin", Recorder(), run_batch=batch))
    with database.sessions.begin() as session:
        for n in range(4):
            schedule(session, "ping", clock.now(), now=clock.now(), payload={"n": n})
        schedule(session, "ping", clock.now() + timedelta(minutes=1), now=clock.now(),
                 payload={"n": 4})
        schedule(session, "checkin", clock.now(), now=clock.now(), payload={"n": 5})
        schedule(session, "checkin", clock.now(), now=clock.now(), payload={"n": 6})
    ids = [item.id for item in items(database)]
    _, held = make_engine(database, clock).claim([ids[1]])  # another process holds this one

    report = engine.run_now([ids[0], ids[1], ids[4], ids[5], ids[6], 99_999])

    assert (report.claimed, report.done) == (3, 3)
    assert recorder.payloads == [{"n": 0}], "not ids[1] (held), not ids[4] (not due)"
    assert batch.batches == [[5, 6]], "batch kinds run together, as in a tick"
    assert [item.state for item in items(database)] == [
        WorkState.DONE, WorkState.RUNNING, WorkState.PENDING, WorkState.PENDING,
        WorkState.PENDING, WorkState.DONE, WorkState.DONE]
    assert len(held) == 1
    assert engine.run_now([]).claimed == 0
    assert engine.run_now([ids[0]]).claimed == 0, "a finished item never runs again"


def test_run_now_follows_the_failure_rules(database: Database, clock: ManualClock) -> None:
    engine = make_engine(database, clock, JobKind("dm", RateLimited(1)))
    add(database, clock, "dm", 0)
    [item] = items(database)

    assert engine.run_now([item.id]).retried == 1
    assert engine.run_now([item.id]).claimed == 0, "not due again before Retry-After"
    clock.advance(30)
    assert engine.run_now([item.id]).done == 1


def test_two_processes_racing_run_now_run_each_item_once(pg_database: Database,
                                                         clock: ManualClock) -> None:
    recorder = Recorder()
    with pg_database.sessions.begin() as session:
        for n in range(200):
            schedule(session, "ping", clock.now(), now=clock.now(), payload={"n": n})
    ids = [item.id for item in items(pg_database)]
    engines = []
    for name in ("web-1", "web-2", "web-3"):
        registry = JobRegistry()
        registry.register(JobKind("ping", recorder))
        engines.append(DueWorkEngine(make_sessions(pg_database.new_engine()), registry, clock,
                                     worker_id=name, threads=4))

    def run(engine: DueWorkEngine, go) -> int:  # noqa: ANN001
        go()
        done = 0
        for start in range(0, len(ids), 20):  # each posts a few at a time, as requests do
            done += engine.run_now(ids[start:start + 20]).done
        return done

    done = run_together(run, engines)

    assert sum(done) == 200
    counts = Counter(recorder.runs)
    assert len(counts) == 200 and max(counts.values()) == 1, "each item ran exactly once"
    assert states(pg_database) == Counter({WorkState.DONE: 200})
    for engine in engines:
        engine.stop()


@pytest.mark.parametrize("threads", [1, 4])
def test_a_stopped_engine_gives_back_what_it_has_not_started(database: Database,
                                                             clock: ManualClock,
                                                             threads: int) -> None:
    started: list[int] = []
    holder: list[DueWorkEngine] = []

    def stops_the_engine(ctx: JobContext) -> None:
        started.append(ctx.payload["n"])
        if ctx.payload["n"] == 0:
            holder[0].stop()  # as SIGTERM does, while the tick is under way

    batch = BatchRecorder()
    threads = 1 if database.backend == "sqlite" else threads
    engine = make_engine(database, clock, JobKind("ping", stops_the_engine),
                         JobKind("checkin", Recorder(), run_batch=batch), threads=threads)
    holder.append(engine)
    with database.sessions.begin() as session:
        for n in range(12):
            schedule(session, "ping", clock.now() + timedelta(microseconds=n), now=clock.now(),
                     payload={"n": n})
        schedule(session, "checkin", clock.now(), now=clock.now(), payload={"n": 99})
    clock.advance(1)

    report = engine.tick()

    assert report.claimed == 13 and report.done == len(started) >= 1
    assert report.released == 13 - report.done and report.failed == 0
    assert batch.batches == [], "the batch had not started: given back"
    for item in items(database):
        if item.kind == "ping" and item.payload["n"] in started:
            assert item.state == WorkState.DONE
        else:
            assert (item.state, item.attempts, item.claim_token) == (WorkState.PENDING, 0, None)
            assert item.due_at <= clock.now(), "due as before: anyone may run it at once"
    assert engine.tick().claimed == 0 and engine.drain().claimed == 0
    assert engine.run_now([item.id for item in items(database)]).claimed == 0
    after = make_engine(database, clock, JobKind("ping", Recorder()),
                        JobKind("checkin", Recorder(), run_batch=BatchRecorder()))
    assert after.tick().done == 13 - report.done, "the next clock runs them at once"
