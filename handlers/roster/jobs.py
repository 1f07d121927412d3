"""Coverage's daily check: coordinators hear of the coming hours without enough supporters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.infra import duework, outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import retry_on_slack_trouble
from bot.roster import duty
from bot.roster.timers import COVERAGE_CHECK
from handlers.common.services import Services
from handlers.roster.blocks import coverage_warning


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register the coverage check; it runs however late."""

    def check_coverage(ctx: JobContext) -> None:
        settings = services.settings
        supporters = duty.on_call(ctx.session)
        gaps = duty.coverage_gaps(supporters, ctx.now, settings.coverage_window_hours,
                                  settings.min_on_duty)
        if gaps:
            message = coverage_warning(gaps, settings.min_on_duty, settings.program_timezone,
                                       len(supporters))
            outbox.tell_coordinators(ctx.session, services.roles.coordinator_ids(), "coverage",
                                     message, day=ctx.due_at.date(), now=ctx.now)
        bootstrap(services, ctx.session, after=ctx.now)

    jobs.register(JobKind(COVERAGE_CHECK, retry_on_slack_trouble(check_coverage),
                          always_run=True))


def bootstrap(services: Services, session: Session, *, after: datetime) -> None:
    """Keep the next daily coverage check scheduled."""
    duework.schedule_daily(session, COVERAGE_CHECK, services.settings.coverage_check_minute,
                           tz_name=services.settings.program_timezone, after=after,
                           now=services.clock.now())
