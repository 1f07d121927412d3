"""Waking whoever sends the outbox's messages the moment they are committed: PostgreSQL's
LISTEN/NOTIFY.

A process that records messages and hands them over sends NOTIFY in the same transaction, so
PostgreSQL wakes the listener as it commits. A clock process listens and sends them at once, so
the processes that acknowledge Slack only commit and answer. A process hands its messages over
only while a listener has said recently that it listens (`listening`); otherwise (SQLite, no
clock, a clock that stopped) it sends them itself, and a web process's sweep sends any that were
handed to a listener that died before it could.
"""

from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from datetime import datetime, timedelta

from sqlalchemy import Engine, select, text, update
from sqlalchemy.orm import Session, sessionmaker

from bot.infra.clock import Clock
from bot.infra.db import insert_for
from bot.infra.models import ClockHeartbeat

log = logging.getLogger(__name__)

CHANNEL = "peersupport_outbox"
BEAT_SECONDS = 3.0  # how often a listener says it still listens
FRESH = timedelta(seconds=10)  # a listener silent for longer is taken for gone
ROW = 1  # the clock heartbeat's single row (bot.infra.health)


_NOTIFY = text("SELECT pg_notify(:channel, '')")


def wake(engine: Engine) -> None:
    """Wake the listener from a connection of its own: for messages committed by a process
    that found it hands them over only after recording them."""
    with engine.connect() as connection:
        connection.execute(_NOTIFY, {"channel": CHANNEL})
        connection.commit()


def wake_at_commit(session: Session) -> None:
    """Wake the listener when the session's transaction commits (PostgreSQL sends a NOTIFY
    then, and never for a transaction that rolls back)."""
    session.execute(_NOTIFY, {"channel": CHANNEL})


def listening(session: Session, *, now: datetime) -> bool:
    """True while a listener has said within FRESH that it listens. A time ahead of `now` by
    more than FRESH (clocks far apart) counts as nobody: this process then sends its own."""
    at = session.scalar(select(ClockHeartbeat.listener_at).where(ClockHeartbeat.id == ROW))
    return at is not None and -FRESH < now - at < FRESH


def say_listening(session: Session, now: datetime) -> None:
    """Record that a listener listens at `now`."""
    statement = insert_for(session, ClockHeartbeat).values(
        id=ROW, ticked_at=None, process="", created_at=now, stops=0, listener_at=now)
    session.execute(statement.on_conflict_do_update(index_elements=["id"],
                                                    set_={"listener_at": now}))


def say_stopped(session: Session) -> None:
    """Record that no listener listens any more (a clean stop): processes send their own."""
    session.execute(update(ClockHeartbeat).where(ClockHeartbeat.id == ROW)
                    .values(listener_at=None))


class Listener:
    """A daemon thread that LISTENs on its own PostgreSQL connection and calls `wake` as soon
    as a transaction that recorded messages commits (and once at start, for any handed over
    while nobody listened)."""

    def __init__(self, engine: Engine, sessions: sessionmaker[Session], clock: Clock,
                 wake: Callable[[], object]):
        self.engine, self.sessions, self.clock, self.wake = engine, sessions, clock, wake
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Listener:
        """Start listening (after a fork, never before)."""
        self._thread = threading.Thread(target=self._run, name="outbox-listener", daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the delivery under way, and say so, so processes send their own."""
        self._stop.set()
        if self._thread is not None:
            self._thread.join(BEAT_SECONDS + 30)
        try:
            with self.sessions.begin() as session:
                say_stopped(session)
        except Exception as error:  # noqa: BLE001 - it goes stale by itself within FRESH
            log.warning("could not record that the listener stopped: %s", type(error).__name__)

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self._listen()
            except Exception as error:  # noqa: BLE001 - the database may be back in a moment
                log.warning("listening for messages to send failed (%s); trying again",
                            type(error).__name__)
                self._stop.wait(1.0)

    def _listen(self) -> None:
        raw = self.engine.raw_connection()
        try:
            connection = raw.driver_connection
            connection.autocommit = True
            connection.execute(f"LISTEN {CHANNEL}")
            self._say_listening()
            beat_at = time.monotonic() + BEAT_SECONDS
            self._deliver()
            while not self._stop.is_set():
                woken = any(True for _ in connection.notifies(timeout=BEAT_SECONDS,
                                                              stop_after=1))
                if woken:
                    # One delivery round covers every commit notified so far; a commit after
                    # this point notifies again and is seen on the next turn.
                    for _ in connection.notifies(timeout=0.0):
                        pass
                    self._deliver()
                if time.monotonic() >= beat_at:
                    self._say_listening()
                    beat_at = time.monotonic() + BEAT_SECONDS
        finally:
            raw.invalidate()  # a LISTENing connection must never go back to the pool

    def _say_listening(self) -> None:
        with self.sessions.begin() as session:
            say_listening(session, self.clock.now())

    def _deliver(self) -> None:
        try:
            self.wake()
        except Exception as error:  # noqa: BLE001 - what is left is swept or ticked later
            log.error("delivering woken messages failed: %s", type(error).__name__,
                      exc_info=error)
