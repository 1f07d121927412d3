"""Coverage's daily check: coordinators hear of the coming hours without enough supporters."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.infra.duework import JobContext, JobRegistry
from bot.roster import duty
from bot.roster.timers import COVERAGE_CHECK
from handlers.common.daily import register_daily_notice, schedule_next
from handlers.common.services import Services
from handlers.roster.blocks import coverage_warning


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register the daily coverage check."""
    settings = services.settings

    def gaps_ahead(ctx: JobContext) -> dict | None:
        supporters = duty.on_call(ctx.session)
        gaps = duty.coverage_gaps(supporters, ctx.now, settings.coverage_window_hours,
                                  settings.min_on_duty)
        return coverage_warning(gaps, settings.min_on_duty, settings.program_timezone,
                                len(supporters)) if gaps else None

    register_daily_notice(jobs, services, COVERAGE_CHECK, settings.coverage_check_minute,
                          "coverage", gaps_ahead)


def bootstrap(services: Services, session: Session, *, after: datetime) -> None:
    """Keep the next daily coverage check scheduled."""
    schedule_next(services, session, COVERAGE_CHECK, services.settings.coverage_check_minute,
                  after=after)
