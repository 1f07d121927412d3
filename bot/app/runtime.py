"""The runtime: settings and the long-lived parts built from them once, at start."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import timedelta

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

import handlers
from bot.infra import health, outbox
from bot.infra.clock import Clock, SystemClock
from bot.infra.db import make_engine, make_sessions, migrate
from bot.infra.duework import DueWorkEngine, JobRegistry
from bot.infra.messaging import Messenger, build_client
from bot.infra.roles import GroupMembers, RoleResolver
from bot.infra.settings import Settings
from bot.library import Library, load_library
from handlers.home.health_blocks import clock_back_message, clock_stopped_message

log = logging.getLogger(__name__)


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

    @property
    def services(self) -> Services:
        """What listeners and jobs may use, and nothing more."""
        return Services(settings=self.settings, clock=self.clock, messenger=self.messenger,
                        library=self.library, roles=self.roles, sessions=self.sessions)

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


    def deliver_now(self, keys: Sequence[str]) -> None:
        """Deliver the effects just committed under `keys` in this thread (bot.infra.outbox); what
        fails here is retried by the clock like any due work."""
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
    runtime.sessions.configure(info={outbox.DELIVER_NOW: runtime.deliver_now})
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
