"""Daily notices to coordinators (the coverage warning, the digest of waiting requests)."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime

from sqlalchemy.orm import Session

from bot.infra import duework, outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import retry_on_slack_trouble
from handlers.common.services import Services


def register_daily_notice(jobs: JobRegistry, services: Services, kind: str, minute: int,
                          what: str, build: Callable[[JobContext], dict | None]) -> None:
    """A job that runs each day at `minute` in the program's zone, sends every coordinator
    what `build` makes of the day (through the outbox, once each that day), and schedules its
    next run. It runs however late."""

    def run(ctx: JobContext) -> None:
        message = build(ctx)
        if message is not None:
            outbox.tell_coordinators(ctx.session, services.roles.coordinator_ids(), what,
                                     message, day=ctx.due_at.date(), now=ctx.now)
        schedule_next(services, ctx.session, kind, minute, after=ctx.now)

    run.__name__ = kind
    jobs.register(JobKind(kind, retry_on_slack_trouble(run), always_run=True))


def schedule_next(services: Services, session: Session, kind: str, minute: int, *,
                  after: datetime) -> None:
    """Make sure the next daily run of `kind` is scheduled."""
    duework.schedule_daily(session, kind, minute, tz_name=services.settings.program_timezone,
                           after=after, now=services.clock.now())
