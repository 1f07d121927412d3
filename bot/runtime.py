"""The runtime: settings and the long-lived parts built from them once, at start."""

from __future__ import annotations

from dataclasses import dataclass, field
from datetime import timedelta

from slack_sdk import WebClient
from sqlalchemy import Engine
from sqlalchemy.orm import Session, sessionmaker

from bot.clock import Clock, SystemClock
from bot.db import make_engine, make_sessions, migrate
from bot.duework import DueWorkEngine, JobRegistry
from bot.library import Library, load_library
from bot.messaging import Messenger, build_client
from bot.settings import Settings


@dataclass
class Runtime:
    """What every request and job needs, built once and passed down."""

    settings: Settings
    engine: Engine
    sessions: sessionmaker[Session]
    clock: Clock
    client: WebClient
    messenger: Messenger
    library: Library
    jobs: JobRegistry = field(default_factory=JobRegistry)

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
        )


def build_runtime(settings: Settings, *, clock: Clock | None = None,
                  client: WebClient | None = None, run_migrations: bool = True) -> Runtime:
    """Load the content library, connect to the database (migrating it), build the Slack client."""
    library = load_library(settings.content_dir)  # invalid content stops start-up first
    engine = make_engine(settings.database_url)
    if run_migrations:
        migrate(engine)
    client = client or build_client(settings)
    return Runtime(
        settings=settings, engine=engine, sessions=make_sessions(engine),
        clock=clock or SystemClock(), client=client, messenger=Messenger(client),
        library=library,
    )
