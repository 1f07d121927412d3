"""APScheduler as the clock: a periodic job that ticks the due-work engine."""

from __future__ import annotations

from datetime import UTC, datetime

from apscheduler.schedulers.background import BackgroundScheduler
from apscheduler.schedulers.base import BaseScheduler
from apscheduler.schedulers.blocking import BlockingScheduler
from apscheduler.triggers.interval import IntervalTrigger

from bot.duework import DueWorkEngine


def build_scheduler(engine: DueWorkEngine, tick_seconds: float, *, blocking: bool) -> BaseScheduler:
    """A scheduler that drains `engine` every `tick_seconds`, first at once; never two at once.

    A tick that raises (database briefly down) is logged by APScheduler and the next one retries.
    """
    scheduler: BaseScheduler = BlockingScheduler() if blocking else BackgroundScheduler(daemon=True)
    scheduler.add_job(
        engine.drain, IntervalTrigger(seconds=tick_seconds), id="due-work",
        max_instances=1, coalesce=True, misfire_grace_time=None,
        # The first tick runs at start, so work that fell due while we were down is seen at once.
        next_run_time=datetime.now(UTC),
    )
    return scheduler
