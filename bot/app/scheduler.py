"""APScheduler as the clock: a periodic job that ticks the due-work engine, and its clean stop.

A stop (SIGTERM from a supervisor, Ctrl-C) lets the drain that is running finish the items it
has started, gives the rest back to the database at once, and submits nothing more: a process
that stops logs no error and leaves no item waiting out its lease.
"""

from __future__ import annotations

import contextlib
import functools
import logging
import os
import signal
import socket
import threading
import time
from collections.abc import Callable
from datetime import UTC, datetime
from types import FrameType
from typing import Protocol

from apscheduler.jobstores.base import JobLookupError
from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.triggers.interval import IntervalTrigger
from sqlalchemy.exc import SQLAlchemyError

from bot.infra import health
from bot.infra.duework import DueWorkEngine, TickReport

log = logging.getLogger(__name__)

JOB_ID = "due-work"
WATCH_SECONDS = 60.0  # how often a web process looks at the clock's heartbeat
STOP_SIGNALS = (signal.SIGTERM, signal.SIGINT)
SignalHandler = Callable[[int, FrameType | None], object]


class Stoppable(Protocol):
    def stop(self) -> None: ...


def build_scheduler(engine: DueWorkEngine, tick_seconds: float) -> BackgroundScheduler:
    """A scheduler (on its own thread) that drains `engine` every `tick_seconds`, first at once,
    never two drains at once.

    A tick that raises (database briefly down) is logged by APScheduler and the next one retries.
    """
    scheduler = BackgroundScheduler(daemon=True)
    scheduler.add_job(
        functools.partial(tick, engine), IntervalTrigger(seconds=tick_seconds), id=JOB_ID,
        max_instances=1, coalesce=True, misfire_grace_time=None,
        # The first tick runs at start, so work that fell due while we were down is seen at once.
        next_run_time=datetime.now(UTC),
    )
    return scheduler


def tick(engine: DueWorkEngine) -> TickReport:
    """One tick of the clock: record its heartbeat (web processes watch it), then drain."""
    try:
        with engine.sessions.begin() as session:
            health.beat(session, f"{socket.gethostname()}:{os.getpid()}", engine.clock.now())
    except SQLAlchemyError as error:
        # The drain meets the same trouble and is logged by APScheduler; the next tick retries.
        log.warning("could not record the clock's heartbeat: %s", type(error).__name__)
    return engine.drain()


class Watch:
    """A daemon thread that runs `check` at once and then every `every` seconds until stopped:
    a web process's look at whether a clock still ticks."""

    def __init__(self, check: Callable[[], object], every: float = WATCH_SECONDS,
                 name: str = "clock-watch"):
        self.check = check
        self.every = every
        self.name = name
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> Watch:
        """Start watching (after a server's fork, never before)."""
        self._thread = threading.Thread(target=self._run, name=self.name, daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop after the check under way, if any."""
        self._stop.set()

    @property
    def running(self) -> bool:
        """True while the thread is alive."""
        return self._thread is not None and self._thread.is_alive()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                self.check()
            except Exception as error:  # noqa: BLE001 - the next look tries again
                log.warning("%s: could not look (%s)", self.name, type(error).__name__)
            self._stop.wait(self.every)


def stop_scheduler(scheduler: BackgroundScheduler, engine: DueWorkEngine, *,
                   wait: bool = True) -> None:
    """Stop ticking; with `wait`, return once the running drain has finished its started items."""
    engine.stop()  # the running drain starts nothing more and gives back what it holds
    # Remove the job before shutting the executor down: the job-store lock makes the scheduler
    # thread finish any submission in progress first, and afterwards it has nothing to submit.
    # Shutting down first races it into "cannot schedule new futures after shutdown".
    with contextlib.suppress(JobLookupError):
        scheduler.remove_job(JOB_ID)
    if scheduler.running:
        scheduler.shutdown(wait=wait)


class StopSignal:
    """Notes SIGTERM and SIGINT rather than dying on them, so the main thread can stop cleanly."""

    POLL_SECONDS = 0.2

    def __init__(self) -> None:
        self.received: int | None = None
        for number in STOP_SIGNALS:
            signal.signal(number, self._note)

    def _note(self, number: int, _frame: FrameType | None) -> None:
        # Only a flag: a handler runs between two bytecodes of the main thread, possibly while it
        # holds a lock, so it must not take one (setting a threading.Event could deadlock).
        self.received = number

    def wait(self) -> int:
        """Block until a stop signal arrives; returns its number."""
        while self.received is None:
            time.sleep(self.POLL_SECONDS)
        return self.received


def run_clock(engine: DueWorkEngine, tick_seconds: float,
              listen: Callable[[], Stoppable] | None = None) -> None:
    """The clock process: tick `engine` (and, with `listen`, send messages the moment they are
    committed) until SIGTERM or SIGINT, then stop cleanly."""
    stop = StopSignal()
    scheduler = build_scheduler(engine, tick_seconds)
    scheduler.start()
    listener = listen() if listen is not None else None
    number = stop.wait()
    log.info("clock stopping (%s): finishing the items already started",
             signal.Signals(number).name)
    if listener is not None:
        listener.stop()
    stop_scheduler(scheduler, engine)
    log.info("clock stopped")


def start_in_gunicorn_worker(scheduler: BackgroundScheduler, engine: DueWorkEngine) -> None:
    """Start the scheduler inside a booted gunicorn worker, stopping it when the worker stops.

    The worker's own handlers stay in charge of stopping the worker; ours run first and only
    stop the scheduler without waiting, since they run on the worker's main thread. The running
    drain is then waited for at interpreter exit, within gunicorn's graceful timeout.
    """
    for number in (*STOP_SIGNALS, signal.SIGQUIT):
        signal.signal(number, _chained(number, lambda: stop_scheduler(scheduler, engine,
                                                                      wait=False)))
    scheduler.start()


def _chained(number: int, first: Callable[[], None]) -> SignalHandler:
    previous = signal.getsignal(number)

    def handler(signum: int, frame: FrameType | None) -> None:
        first()
        if callable(previous):
            previous(signum, frame)
        elif previous == signal.SIG_DFL:
            signal.signal(signum, signal.SIG_DFL)
            signal.raise_signal(signum)

    return handler
