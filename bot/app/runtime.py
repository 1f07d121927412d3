"""The runtime: settings and the long-lived parts built from them once, at start."""

from __future__ import annotations

import gc
import logging
import os
import socket
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from datetime import timedelta

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import handlers
from bot.infra import health, outbox, wakeup
from bot.infra.clock import Clock, SystemClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.infra.duework import DueWorkEngine, JobRegistry
from bot.infra.messaging import Messenger, build_client
from bot.infra.roles import GroupMembers, RoleResolver
from bot.infra.settings import Settings
from bot.library import Library, load_library
from handlers.home.health_blocks import clock_back_message, clock_stopped_message

log = logging.getLogger(__name__)

LISTENING_KEPT = 1.0  # seconds a process trusts its last look at whether a clock listens
DELIVER_ROUND = 500  # messages one delivery round takes at most
# Messages still untaken this long after they fell due are swept up by a web process (a
# listener killed before it claimed them): far longer than a woken listener takes to claim.
SWEEP_AFTER = timedelta(seconds=3)
# While a clock says it listens, what it has not taken is a backlog it is working through (a
# burst), not messages left by a dead one: web processes leave those this long, so the burst's
# work stays off the processes answering Slack. A killed clock stops saying it listens within
# wakeup.FRESH, and SWEEP_AFTER applies again.
SWEEP_BEHIND_LISTENER = timedelta(seconds=60)
SWEEP_SECONDS = 1.0  # how often a web process looks (one indexed query)


@dataclass(frozen=True)
class Services:
    """The long-lived services listeners and jobs use (handlers.common.services names them);
    the engine, the Slack client and the job registry stay here."""

    settings: Settings
    clock: Clock
    messenger: Messenger
    library: Library
    roles: RoleResolver
    sessions: sessionmaker[Session]
    hands_over: Callable[[], bool]


@dataclass
class Runtime:
    """The app as built once at start: its services and the infrastructure behind them."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    client: WebClient
    messenger: Messenger
    library: Library
    roles: RoleResolver
    jobs: JobRegistry = field(default_factory=JobRegistry)
    _now_engine: DueWorkEngine | None = field(default=None, repr=False)
    _deliverer: DueWorkEngine | None = field(default=None, repr=False)
    _urgent: ThreadPoolExecutor | None = field(default=None, repr=False)
    listening_kept: float = LISTENING_KEPT
    # Whether a listener was found listening, and until when (monotonic) that answer is kept.
    _listening: tuple[bool, float] = field(default=(False, 0.0), repr=False)
    _listens_here: bool = field(default=False, repr=False)  # this process is the listener
    _lock: threading.Lock = field(default_factory=threading.Lock, repr=False)
    _asking: threading.Lock = field(default_factory=threading.Lock, repr=False)

    @property
    def services(self) -> Services:
        """What listeners and jobs may use, and nothing more."""
        return Services(settings=self.settings, clock=self.clock, messenger=self.messenger,
                        library=self.library, roles=self.roles, sessions=self.sessions,
                        hands_over=self.hands_over)

    def duework(self, worker_id: str | None = None) -> DueWorkEngine:
        """A due-work engine configured from settings."""
        s = self.settings
        return DueWorkEngine(
            self.sessions, self.jobs, self.clock,
            batch_size=s.duework_batch,
            lease=timedelta(seconds=s.duework_lease_seconds),
            grace=timedelta(seconds=s.duework_grace_seconds),
            catchup_window=timedelta(seconds=s.duework_catchup_seconds),
            worker_id=worker_id,
            # SQLite lets one writer in at a time: more threads would only queue on its lock.
            threads=1 if self.engine.dialect.name == "sqlite" else s.duework_threads,
        )


    def hands_over(self) -> bool:
        """True when messages this process records are sent by a listening clock instead
        (bot.infra.wakeup): on PostgreSQL, unless PEERSUPPORT_DELIVERY=web, while one listens.
        The answer is kept for a second, so a busy process asks the database once a second.
        The listening process itself sends what it records, without waking itself."""
        if self._listens_here or not self.listens():
            return False
        found, until = self._listening
        if time.monotonic() < until or not self._asking.acquire(blocking=False):
            return found  # fresh, or another thread is asking: the last answer stands meanwhile
        try:
            with self.sessions() as session:
                found = wakeup.listening(session, now=self.clock.now())
            self._listening = (found, time.monotonic() + self.listening_kept)
        finally:
            self._asking.release()
        return found

    def wake_in(self, session: Session) -> bool:
        """When this process hands its messages over, wake the listener as `session` commits;
        True if so (bot.infra.outbox asks once per transaction that records messages)."""
        if not self.hands_over():
            return False
        wakeup.wake_at_commit(session)
        return True

    def deliver_now(self, keys: Sequence[str]) -> None:
        """Deliver the effects just committed under `keys` in this thread (bot.infra.outbox),
        unless a listening clock was woken to send them; what fails here is retried by the
        clock like any due work."""
        if self.hands_over():
            wakeup.wake(self.engine)
            return
        with self.sessions() as session:
            groups = outbox.due_ids(session, keys)
        if not groups:
            return
        if self._now_engine is None:
            # One item at a time in the caller's thread: effects that record further effects
            # deliver those inline too, and never wait on a pool their caller occupies.
            engine = self.duework(worker_id="now")
            engine.threads = 1
            self._now_engine = engine
        for ids in groups:
            self._now_engine.run_now(ids)

    def deliver_due(self, *, older_than: timedelta = timedelta(0)) -> int:
        """Send every message due (for at least `older_than`) that nobody has taken: those a
        person waits on (offers, alerts, introductions) beside the rest, each group with the
        clock's threads. Returns how many were taken."""
        taken = 0
        while True:
            with self.sessions() as session:
                groups = outbox.due_now(session, now=self.clock.now() - older_than,
                                        limit=DELIVER_ROUND)
            if not groups:
                return taken
            engine = self._delivery_engine()
            urgent = self._urgent_pool().submit(engine.run_now, groups[0]) \
                if len(groups) > 1 else None
            claimed = engine.run_now(groups[-1]).claimed
            if urgent is not None:
                claimed += urgent.result().claimed
            taken += claimed
            if claimed == 0 or sum(map(len, groups)) < DELIVER_ROUND:
                return taken

    def sweep_outbox(self) -> int:
        """Send messages nobody took within SWEEP_AFTER of falling due (handed to a clock killed
        before it claimed them), or within SWEEP_BEHIND_LISTENER while a clock still says it
        listens: a web process's regular look, so a killed clock delays them by seconds, not
        until its heartbeat is found stale."""
        behind = SWEEP_BEHIND_LISTENER if self.hands_over() else SWEEP_AFTER
        return self.deliver_due(older_than=behind)

    def listens(self) -> bool:
        """True when this process should listen for committed messages (a clock): on
        PostgreSQL, unless PEERSUPPORT_DELIVERY=web."""
        return self.settings.delivery != "web" and self.engine.dialect.name == "postgresql"

    def listen(self) -> wakeup.Listener:
        """Start sending messages the moment PostgreSQL says they were committed (a clock)."""
        self._listens_here = True
        return wakeup.Listener(self.engine, self.sessions, self.clock, self.deliver_due).start()

    def _delivery_engine(self) -> DueWorkEngine:
        with self._lock:
            if self._deliverer is None:
                self._deliverer = self.duework(worker_id=f"deliver:{socket.gethostname()}:"
                                                         f"{os.getpid()}")
            return self._deliverer

    def _urgent_pool(self) -> ThreadPoolExecutor:
        with self._lock:
            if self._urgent is None:
                self._urgent = ThreadPoolExecutor(1, thread_name_prefix="deliver-urgent")
            return self._urgent

    def watch_clock(self) -> health.Change | None:
        """Tell every coordinator once when no clock has ticked for too long, and once when one
        ticks again (whichever process looks first tells them); returns what changed."""
        coordinators = self.roles.coordinator_ids()
        limit = health.limit_for(self.settings)
        with self.sessions.begin() as session:
            change = health.watch_clock(session, now=self.clock.now(), limit=limit,
                                        coordinators=coordinators, stopped=clock_stopped_message,
                                        back=clock_back_message)
        if change == "stopped":
            log.error("the clock has not ticked for over %d s: check-ins, offer timeouts and "
                      "escalations wait; told %d coordinators", limit.total_seconds(),
                      len(coordinators))
        elif change == "back":
            log.warning("the clock ticks again; told %d coordinators", len(coordinators))
        return change


def build_runtime(settings: Settings, *, clock: Clock | None = None,
                  client: WebClient | None = None, engine: Engine | None = None,
                  run_migrations: bool = True) -> Runtime:
    """Load the content library, connect to the database (migrating it), build the Slack client,
    and register the due-work kinds."""
    library = load_library(settings.content_dir)  # invalid content stops start-up first
    engine = engine or make_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    client = client or build_client(settings)
    clock = clock or SystemClock()
    messenger = Messenger(client, parallel=settings.slack_parallel)
    runtime = Runtime(
        settings=settings, engine=engine, sessions=make_sessions(engine), clock=clock,
        client=client, messenger=messenger, library=library,
        roles=build_roles(settings, messenger, clock),
    )
    # Every session knows how to deliver at once what its transaction recorded in the outbox.
    runtime.sessions.configure(info={outbox.DELIVER_NOW: runtime.deliver_now,
                                     outbox.WAKE_IN: runtime.wake_in})
    outbox.deliver_on_commit(runtime.sessions)
    handlers.register_jobs(runtime.jobs, runtime.services)
    return runtime


def build_roles(settings: Settings, messenger: Messenger, clock: Clock) -> RoleResolver:
    """Role resolution from settings, with user group members fetched through Slack."""
    return RoleResolver(
        coordinators=settings.coordinators, leaders=settings.leaders,
        coordinator_group=settings.coordinator_group, leader_group=settings.leader_group,
        groups=GroupMembers(messenger.usergroup_members, clock),
    )


def freeze_startup_heap() -> None:
    """Keep what start-up built (modules, settings, the app, its services) out of every later
    garbage collection, as Python's gc.freeze advises before forking workers: a full collection
    otherwise walks all of it while every thread of the process waits, over 100 ms at a time
    under load, and each collection's marks would copy the pages forked workers share."""
    gc.collect()
    gc.freeze()
