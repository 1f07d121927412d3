"""The due-work engine: timers kept as database rows, claimed atomically, run once each.

Any process may schedule work; whichever clock process claims a due row runs it. A claim is a
single conditional UPDATE (with FOR UPDATE SKIP LOCKED on PostgreSQL), so two clocks never run
the same item at once. A claim carries a lease: if the process dies, the row becomes claimable
again when the lease expires (work is therefore at-least-once across crashes, exactly-once
among live clocks; kinds that talk to people record what they sent to stay idempotent).

Kinds that can do a whole batch's work together (check-ins: one claim, parallel posts, one
commit) give `run_batch`; the engine hands them every due item of their kind in a tick, in one
session, and finishes the ones that succeeded with one UPDATE.

Catch-up policy: an item found more than its kind's grace period late (the clock was down) is not
run in a burst; it is rescheduled by its kind's policy, by default spread evenly over the
catch-up window from now. Kinds whose lateness must never delay them (escalations) set no grace.

A RetryLater (Slack's 429) is not a failure: it gives its attempt back, so only real errors use a
kind's `max_attempts`. An item is started only while its claim's lease holds, and an engine asked
to stop starts nothing more and gives back what it claimed but has not started.
"""

from __future__ import annotations

import logging
import threading
import uuid
from collections.abc import Callable, Mapping, Sequence
from concurrent.futures import Future
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from typing import Any

from sqlalchemy import and_, delete, or_, select, update
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

from bot.infra import metrics
from bot.infra.clock import Clock, zone
from bot.infra.db import discard_after_commit, run_after_commit
from bot.infra.logs import ContextPool, correlated
from bot.infra.models import DueWork, WorkState

log = logging.getLogger(__name__)

# Finished rows are kept this long so coordinators and operators can see recent history.
FINISHED_RETENTION = timedelta(days=7)
MAX_RETRY_DELAY = timedelta(hours=1)
PURGE_EVERY = timedelta(minutes=10)
# A row in one of these states is history: scheduling its key again arms it anew.
FINISHED_STATES = (WorkState.DONE, WorkState.CANCELLED, WorkState.FAILED)


class RetryLater(Exception):
    """Raised by a job to be run again after `seconds` (for example Slack answered 429)."""

    def __init__(self, seconds: float, reason: str = "retry"):
        super().__init__(reason)
        self.seconds = max(1.0, float(seconds))
        self.reason = reason


@dataclass(frozen=True)
class JobContext:
    """What a running job receives: its own session, its payload and the time it runs at."""

    session: Session
    item_id: int
    kind: str
    payload: Mapping[str, Any]
    due_at: datetime
    now: datetime
    attempt: int
    key: str | None = None  # the name it was scheduled under, if any


Reschedule = Callable[[DueWork, datetime, timedelta], datetime]
# A batch's items, all sharing one session; returns the items that failed, by item id.
RunBatch = Callable[[Sequence[JobContext]], Mapping[int, Exception]]


def spread_over_window(item: DueWork, now: datetime, window: timedelta) -> datetime:
    """Default catch-up: place a late item at a stable point within `window` from now."""
    seconds = int(window.total_seconds())
    # Multiplying by a large prime scatters consecutive ids evenly over the window.
    return now + timedelta(seconds=(item.id * 2654435761) % max(seconds, 1))


@dataclass(frozen=True)
class JobKind:
    """A kind of due work: the function that runs it and how it behaves when late or failing."""

    name: str
    run: Callable[[JobContext], None]
    grace: timedelta | None = None  # None: use the engine's default grace
    always_run: bool = False  # True: run however late (escalations must never wait)
    reschedule: Reschedule = spread_over_window
    max_attempts: int = 6
    # Optional: run several due items at once. Their database work commits together, so it
    # must be idempotent per item (a lost lease cannot undo one item alone).
    run_batch: RunBatch | None = None


@dataclass
class JobRegistry:
    """The kinds of due work this process knows how to run."""

    kinds: dict[str, JobKind] = field(default_factory=dict)

    def register(self, kind: JobKind) -> None:
        """Add a kind; registering the same name twice is a programming error."""
        if kind.name in self.kinds:
            raise ValueError(f"due-work kind {kind.name!r} is already registered")
        self.kinds[kind.name] = kind

    def get(self, name: str) -> JobKind | None:
        """The kind with that name, or None."""
        return self.kinds.get(name)


def schedule(
    session: Session,
    kind: str,
    due_at: datetime,
    *,
    now: datetime,
    payload: Mapping[str, Any] | None = None,
    key: str | None = None,
) -> bool:
    """Schedule work; True if a row was added or a finished one under `key` was re-armed.

    With a `key`, a pending or running row under that key is kept as it is (False): scheduling
    the same thing twice runs it once. A finished row (done, cancelled or failed) is only its
    history, so the key is armed again with the new time and payload; otherwise a timer named
    the same way later (a second escalation's reminder) would silently never run.
    """
    return _insert(session, [new_row(kind, due_at, now, payload, key)], keyed=key is not None) > 0


@dataclass(frozen=True)
class Timer:
    """One keyed item for schedule_many."""

    kind: str
    due_at: datetime
    key: str
    payload: Mapping[str, Any] = field(default_factory=dict)


def schedule_many(session: Session, timers: Sequence[Timer], *, now: datetime) -> int:
    """Schedule several keyed items in one statement, each by schedule's rules; returns how
    many were added or re-armed. A wave of fifty offers is one round trip, not fifty."""
    unique = {timer.key: timer for timer in timers}  # one statement may touch a row only once
    rows = [new_row(t.kind, t.due_at, now, t.payload, t.key) for t in unique.values()]
    return _insert(session, rows, keyed=True) if rows else 0


def new_row(kind: str, due_at: datetime, now: datetime, payload: Mapping[str, Any] | None,
            key: str | None) -> dict[str, Any]:
    """The columns of a newly scheduled item (the ones every insert of one sets)."""
    return {"kind": kind, "key": key, "payload": dict(payload or {}), "due_at": due_at,
            "state": WorkState.PENDING, "attempts": 0, "rescheduled": 0, "created_at": now}


def _insert(session: Session, rows: list[dict[str, Any]], *, keyed: bool) -> int:
    # Core, on the session's connection: the ORM's bulk-insert path and building the statement
    # anew were most of what recording a click cost the process that acknowledges it. No
    # DueWork is ever added as an object, so skipping the ORM's autoflush loses nothing.
    connection = session.connection()
    statement = _INSERTS[connection.dialect.name][keyed]
    return len(connection.execute(statement, rows).all())


def _inserts(insert: Callable[[Any], Any]) -> dict[bool, Any]:
    """The two INSERTs scheduling uses in one dialect: plain, and keyed (see schedule)."""
    table = DueWork.__table__
    plain = insert(table)
    # One statement, so two processes scheduling the same key at once cannot both arm it:
    # PostgreSQL re-checks the WHERE on the row the other one just re-armed.
    rearm = {name: plain.excluded[name] for name in new_row("", datetime.min, datetime.min, None, None)
             if name != "key"}
    rearm.update(claim_token=None, lease_until=None, last_error=None, finished_at=None)
    keyed = plain.on_conflict_do_update(
        index_elements=["key"], set_=rearm,
        # Spelled out: IN's expanding parameter cannot be used with many rows of parameters.
        where=or_(*(table.c.state == state for state in FINISHED_STATES)))
    return {False: plain.returning(table.c.id), True: keyed.returning(table.c.id)}


_INSERTS = {"postgresql": _inserts(pg_insert), "sqlite": _inserts(sqlite_insert)}


def cancel(session: Session, *, now: datetime, key: str | None = None, kind: str | None = None,
           payload_match: Mapping[str, Any] | None = None) -> int:
    """Cancel pending work by key, or by kind and payload values; returns how many were cancelled."""
    if key is None and kind is None:
        raise ValueError("cancel needs a key or a kind")
    query = select(DueWork).where(DueWork.state == WorkState.PENDING)
    if key is not None:
        query = query.where(DueWork.key == key)
    if kind is not None:
        query = query.where(DueWork.kind == kind)
    count = 0
    for item in session.scalars(query):
        if payload_match and any(item.payload.get(k) != v for k, v in payload_match.items()):
            continue
        item.state = WorkState.CANCELLED
        item.finished_at = now
        count += 1
    return count


@dataclass
class TickReport:
    """What one tick did, for logs, tests and benchmarks."""

    claimed: int = 0
    done: int = 0
    retried: int = 0
    failed: int = 0
    rescheduled: int = 0
    lost_lease: int = 0
    released: int = 0  # given back unstarted because the engine is stopping

    def add(self, other: TickReport) -> None:
        """Count `other`'s figures in this one."""
        for name in vars(self):
            setattr(self, name, getattr(self, name) + getattr(other, name))


class DueWorkEngine:
    """Claims due rows and runs them, each in its own session."""

    def __init__(
        self,
        sessions: sessionmaker[Session],
        registry: JobRegistry,
        clock: Clock,
        *,
        batch_size: int = 100,
        lease: timedelta = timedelta(minutes=5),
        grace: timedelta = timedelta(minutes=15),
        catchup_window: timedelta = timedelta(minutes=30),
        worker_id: str | None = None,
        threads: int = 1,
    ):
        self.sessions = sessions
        self.registry = registry
        self.clock = clock
        self.batch_size = batch_size
        self.lease = lease
        self.grace = grace
        self.catchup_window = catchup_window
        self.worker_id = worker_id or uuid.uuid4().hex[:12]
        self.threads = threads
        self._pool: ContextPool | None = None
        # Guards the pool against stop(): nothing is submitted to it once stopping is set.
        self._pool_lock = threading.Lock()
        self._stopping = threading.Event()
        self._last_purge: datetime | None = None

    @property
    def stopping(self) -> bool:
        """True once stop() was called."""
        return self._stopping.is_set()

    def stop(self) -> None:
        """Start nothing more: later ticks return at once, and claimed items not yet started are
        given back (attempt returned) rather than left to wait out their lease."""
        with self._pool_lock:
            self._stopping.set()
            pool, self._pool = self._pool, None
        if pool is not None:
            # Items already queued on it still come to _run_one, which gives them back.
            pool.shutdown(wait=False)

    def tick(self) -> TickReport:
        """Claim what is due and run it; call repeatedly (APScheduler does) until nothing is due."""
        if self.stopping:
            return TickReport()
        report = self._run_claimed(*self.claim())
        self._purge_finished_now_and_then()
        return report

    def run_now(self, ids: Sequence[int]) -> TickReport:
        """Claim and run these items at once, as a tick would, if they are still pending and due.

        Items another process has claimed, already finished or not yet due are skipped silently:
        whoever holds them, or a later tick, runs them.
        """
        if not ids or self.stopping:
            return TickReport()
        return self._run_claimed(*self.claim(ids))

    def run_until_idle(self, max_ticks: int = 1000) -> TickReport:
        """Tick until a tick claims nothing; used by tests, the demo and benchmarks."""
        total = TickReport()
        for _ in range(max_ticks):
            report = self.tick()
            total.add(report)
            if report.claimed == 0:
                break
        return total

    def drain(self, max_ticks: int = 10_000) -> TickReport:
        """Tick while batches come back full: what the clock runs each period, so a backlog
        (after downtime, or a busy morning) goes out at full speed, not a batch per period."""
        total = TickReport()
        for _ in range(max_ticks):
            report = self.tick()
            total.add(report)
            if report.claimed < self.batch_size or self.stopping:
                break
        return total

    def claim(self, ids: Sequence[int] | None = None) -> tuple[str, list[DueWork]]:
        """Atomically mark due rows as ours and return them, with the claim's token.

        Without `ids`: up to batch_size due rows, and rows whose lease expired. With `ids`: those
        of them still pending and due, or whose lease expired, however many.
        """
        now = self.clock.now()
        token = f"{self.worker_id}:{uuid.uuid4().hex[:12]}"
        due = and_(DueWork.state == WorkState.PENDING, DueWork.due_at <= now)
        expired = and_(DueWork.state == WorkState.RUNNING, DueWork.lease_until < now)
        if ids is None:
            claimable, limit = or_(due, expired), self.batch_size
        else:
            claimable, limit = and_(DueWork.id.in_(list(ids)), or_(due, expired)), len(ids)
        # SKIP LOCKED lets two PostgreSQL clocks take disjoint batches without waiting;
        # SQLite ignores it and serialises the single UPDATE statement instead.
        chosen = (
            select(DueWork.id)
            .where(claimable)
            .order_by(DueWork.due_at, DueWork.id)
            .limit(limit)
            .with_for_update(skip_locked=True)
        )
        statement = (
            update(DueWork)
            .where(DueWork.id.in_(chosen), claimable)
            .values(
                state=WorkState.RUNNING,
                claim_token=token,
                lease_until=now + self.lease,
                attempts=DueWork.attempts + 1,
            )
            .returning(DueWork.id)
            .execution_options(synchronize_session=False)
        )
        with self.sessions.begin() as session:
            claimed = list(session.scalars(statement))
            items = list(session.scalars(select(DueWork).where(DueWork.id.in_(claimed)).order_by(
                DueWork.due_at, DueWork.id))) if claimed else []
            session.expunge_all()
        return token, items

    def _run_claimed(self, token: str, items: list[DueWork]) -> TickReport:
        """Run what one claim took: single items first, then each batch kind's items together."""
        report = TickReport(claimed=len(items))
        singles: list[DueWork] = []
        batches: dict[str, list[DueWork]] = {}
        for item in items:
            kind = self.registry.get(item.kind)
            if kind is not None and kind.run_batch is not None:
                batches.setdefault(item.kind, []).append(item)
            else:
                singles.append(item)
        # Single items first: they include the ones that must never wait (escalations, offer
        # timeouts), and a batch of check-ins can take a while. They start in the order they
        # were recorded, so a message's update never starts before (and waits on) its own post
        # queued behind it in the same claim.
        self._run_singles(sorted(singles, key=lambda item: item.id), token, report)
        for name, batch in batches.items():
            self._run_batch(self.registry.kinds[name], batch, token, report)
        if report.claimed:
            log.info(
                "due work: claimed=%d done=%d retried=%d failed=%d rescheduled=%d lost=%d "
                "released=%d", report.claimed, report.done, report.retried, report.failed,
                report.rescheduled, report.lost_lease, report.released,
            )
        return report

    def _run_singles(self, singles: list[DueWork], token: str, report: TickReport) -> None:
        futures = self._submit(singles, token) if self.threads > 1 and len(singles) > 1 else None
        if futures is None:
            for item in singles:
                self._run_one(item, token, report)
            return
        for future in futures:
            report.add(future.result())

    def _submit(self, singles: list[DueWork], token: str) -> list[Future[TickReport]] | None:
        """Hand the items to the pool, or None when stopping (the caller then gives them back).

        Items are independent (each has its own session and claim), and most of their time is
        spent waiting on Slack: a tick runs `threads` of them at a time.
        """
        with self._pool_lock:
            if self.stopping:
                return None
            if self._pool is None:
                self._pool = ContextPool(self.threads, thread_name_prefix="duework")
            return [self._pool.submit(self._run_alone, item, token) for item in singles]

    def _run_alone(self, item: DueWork, token: str) -> TickReport:
        report = TickReport()
        self._run_one(item, token, report)
        return report

    def _may_start(self, item: DueWork, token: str, report: TickReport) -> bool:
        """False if `item` must not start now: the engine is stopping, or its lease ran out."""
        if self.stopping:
            # Nothing was done: due at the same time, it is anyone's to run at once.
            self._release(item, token, due_at=item.due_at, attempts_back=True)
            self._note(report, item, "released")
            return False
        if item.lease_until is None or self.clock.now() >= item.lease_until:
            # Items of one claim run one after another: this one waited behind slow ones past
            # its lease, so another clock may hold it now, and running it could post twice.
            self._note(report, item, "lost_lease")
            log.warning("due work %d (%s): lease ran out before it started; left to be retaken",
                        item.id, item.kind)
            return False
        return True

    def _caught_up(self, item: DueWork, kind: JobKind, token: str, now: datetime,
                   report: TickReport) -> bool:
        """True if `item` was found too late and was rescheduled by its kind's policy."""
        grace = kind.grace if kind.grace is not None else self.grace
        if not kind.always_run and item.due_at < now - grace:
            new_due = kind.reschedule(item, now, self.catchup_window)
            if new_due > now - grace:
                self._release(item, token, due_at=new_due, error="late: rescheduled",
                              rescheduled=True, attempts_back=True)
                self._note(report, item, "rescheduled")
                return True
        return False

    def _note(self, report: TickReport, item: DueWork, outcome: str) -> None:
        """Count one item's outcome in the tick's report and in the process's metrics."""
        setattr(report, outcome, getattr(report, outcome) + 1)
        # A kind no process registered came from the database, not the code: not a label.
        metrics.count_due_item(item.kind if self.registry.get(item.kind) else "unknown", outcome)

    def _run_batch(self, kind: JobKind, items: list[DueWork], token: str,
                   report: TickReport) -> None:
        if items:
            # One id for the batch: its items run together, in one call of the kind's code.
            with correlated(f"due-batch-{items[0].id}"):
                self._run_batch_of(kind, items, token, report)

    def _run_batch_of(self, kind: JobKind, items: list[DueWork], token: str,
                      report: TickReport) -> None:
        assert kind.run_batch is not None
        items = [item for item in items if self._may_start(item, token, report)]
        now = self.clock.now()
        items = [item for item in items if not self._caught_up(item, kind, token, now, report)]
        if not items:
            return
        session = self.sessions()
        try:
            with session.begin():
                failures = kind.run_batch([
                    JobContext(session=session, item_id=item.id, kind=item.kind, key=item.key,
                               payload=item.payload, due_at=item.due_at, now=now,
                               attempt=item.attempts) for item in items])
                succeeded = [item.id for item in items if item.id not in failures]
                finished = set(session.scalars(
                    update(DueWork)
                    .where(DueWork.id.in_(succeeded), DueWork.claim_token == token)
                    .values(state=WorkState.DONE, finished_at=self.clock.now(), lease_until=None)
                    .returning(DueWork.id)
                    .execution_options(synchronize_session=False)
                )) if succeeded else set()
        except Exception as error:  # noqa: BLE001 - one bad item must not take the others down
            discard_after_commit(session)
            session.close()
            # Its database work is undone; each item now runs alone, as it would have without
            # batching, so only the ones that fail on their own are retried (same attempt). What
            # the batch did outside the database (a post to Slack) is not undone: each item is
            # told it runs again, so a job that looks before it posts does look.
            log.warning("due work: a batch of %d %s items failed (%s); running them one by one",
                        len(items), kind.name, type(error).__name__)
            for item in items:
                self._run_one(item, token, report, again=True)
            return
        session.close()
        run_after_commit(session)
        for item in items:
            if item.id in failures:
                self._after_failure(item, token, kind, now, failures[item.id], report)
            elif item.id in finished:
                self._note(report, item, "done")
            else:
                self._note(report, item, "lost_lease")
                log.warning("due work %d (%s): lease lost during its batch", item.id, item.kind)

    def _run_one(self, item: DueWork, token: str, report: TickReport, *,
                 again: bool = False) -> None:
        # Every log line of the item's run, Slack calls included, carries its id.
        with correlated(f"due-{item.id}"):
            self._run_item(item, token, report, again=again)

    def _run_item(self, item: DueWork, token: str, report: TickReport, *,
                  again: bool = False) -> None:
        if not self._may_start(item, token, report):
            return
        now = self.clock.now()
        kind = self.registry.get(item.kind)
        if kind is None:
            self._finish(item, token, WorkState.FAILED, now, error="unknown kind")
            self._note(report, item, "failed")
            log.error("due work %d has unknown kind %s", item.id, item.kind)
            return
        if self._caught_up(item, kind, token, now, report):
            return
        session = self.sessions()
        try:
            with session.begin():
                kind.run(JobContext(session=session, item_id=item.id, kind=item.kind, key=item.key,
                                    payload=item.payload, due_at=item.due_at, now=now,
                                    attempt=item.attempts + 1 if again else item.attempts))
                finished = session.execute(
                    update(DueWork)
                    .where(DueWork.id == item.id, DueWork.claim_token == token)
                    .values(state=WorkState.DONE, finished_at=self.clock.now(), lease_until=None)
                    .execution_options(synchronize_session=False)
                )
                if finished.rowcount != 1:
                    # Our lease ran out and another clock took the item: undo our database work.
                    raise _LostLease()
        except Exception as error:  # noqa: BLE001 - one failing job must not stop the others
            discard_after_commit(session)
            session.close()
            self._after_failure(item, token, kind, now, error, report)
            return
        session.close()
        self._note(report, item, "done")
        run_after_commit(session)

    def _after_failure(self, item: DueWork, token: str, kind: JobKind, now: datetime,
                       error: Exception, report: TickReport) -> None:
        if isinstance(error, _LostLease):
            self._note(report, item, "lost_lease")
            log.warning("due work %d (%s): lease lost, left to its new owner", item.id, item.kind)
        elif isinstance(error, RetryLater):
            # Being asked to wait (Slack's 429) says nothing about the item: the attempt is given
            # back, so a busy afternoon of rate limits cannot use up the budget for real errors.
            self._release(item, token, due_at=now + timedelta(seconds=error.seconds),
                          error=error.reason[:200], attempts_back=True)
            self._note(report, item, "retried")
        elif item.attempts >= kind.max_attempts:
            # Only the exception's type is kept: its message might carry data we never store.
            name = type(error).__name__
            self._finish(item, token, WorkState.FAILED, now, error=name)
            self._note(report, item, "failed")
            log.error("due work %d (%s) failed for good after %d attempts: %s",
                      item.id, item.kind, item.attempts, name)
        else:
            name = type(error).__name__
            delay = min(timedelta(seconds=30 * 2 ** (item.attempts - 1)), MAX_RETRY_DELAY)
            self._release(item, token, due_at=now + delay, error=name)
            self._note(report, item, "retried")
            log.warning("due work %d (%s) attempt %d failed (%s); retrying in %s",
                        item.id, item.kind, item.attempts, name, delay, exc_info=error)

    def _release(self, item: DueWork, token: str, *, due_at: datetime, error: str | None = None,
                 rescheduled: bool = False, attempts_back: bool = False) -> None:
        """Make a claimed item pending again at `due_at`; `error` None keeps its last error."""
        values: dict[str, Any] = {
            "state": WorkState.PENDING, "due_at": due_at, "claim_token": None,
            "lease_until": None,
        }
        if error is not None:
            values["last_error"] = error
        if rescheduled:
            values["rescheduled"] = DueWork.rescheduled + 1
        if attempts_back:
            values["attempts"] = DueWork.attempts - 1
        with self.sessions.begin() as session:
            session.execute(
                update(DueWork).where(DueWork.id == item.id, DueWork.claim_token == token)
                .values(**values).execution_options(synchronize_session=False)
            )

    def _finish(self, item: DueWork, token: str, state: WorkState, now: datetime,
                *, error: str | None = None) -> None:
        with self.sessions.begin() as session:
            session.execute(
                update(DueWork).where(DueWork.id == item.id, DueWork.claim_token == token)
                .values(state=state, finished_at=now, lease_until=None, last_error=error)
                .execution_options(synchronize_session=False)
            )

    def _purge_finished_now_and_then(self) -> None:
        now = self.clock.now()
        if self._last_purge is not None and now - self._last_purge < PURGE_EVERY:
            return
        self._last_purge = now
        cutoff = now - FINISHED_RETENTION
        with self.sessions.begin() as session:
            session.execute(
                delete(DueWork).where(
                    DueWork.state.in_([WorkState.DONE, WorkState.CANCELLED]),
                    DueWork.finished_at < cutoff,
                )
            )


class _LostLease(Exception):
    pass


def next_daily(tz_name: str, minute: int, after: datetime) -> datetime:
    """The next time-of-day `minute` in the zone `tz_name`, strictly after `after`."""
    tz = zone(tz_name)
    at = time(minute // 60, minute % 60)
    local = after.astimezone(tz)
    moment = datetime.combine(local.date(), at, tzinfo=tz)
    if moment <= local:
        moment = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return moment


def schedule_daily(session: Session, kind: str, minute: int, *, tz_name: str, after: datetime,
                   now: datetime) -> bool:
    """Make sure the next daily run of `kind` is scheduled; once per day whoever asks."""
    moment = next_daily(tz_name, minute, after)
    return schedule(session, kind, moment, now=now, key=f"{kind}:{moment.date().isoformat()}")
