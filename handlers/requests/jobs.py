"""Requests' daily digest: coordinators see every request still waiting for a supporter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.infra import duework, outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import retry_on_slack_trouble
from bot.requests import service as domain
from bot.requests.timers import ESCALATION_DIGEST
from handlers.common.services import Services
from handlers.requests.blocks import unplaced_digest
from handlers.requests.effects import register_effects


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register how each message a request's change implies is delivered, and the digest."""
    register_effects(jobs, services)

    def escalation_digest(ctx: JobContext) -> None:
        waiting = domain.unassigned(ctx.session)
        if waiting:
            digest = unplaced_digest(sorted(((r, ctx.now - r.created_at) for r in waiting),
                                            key=lambda pair: pair[1], reverse=True))
            outbox.tell_coordinators(ctx.session, services.roles.coordinator_ids(), "digest",
                                     digest, day=ctx.due_at.date(), now=ctx.now)
        bootstrap(services, ctx.session, after=ctx.now)

    jobs.register(JobKind(ESCALATION_DIGEST, retry_on_slack_trouble(escalation_digest),
                          always_run=True))


def bootstrap(services: Services, session: Session, *, after: datetime) -> None:
    """Keep the next daily digest scheduled."""
    duework.schedule_daily(session, ESCALATION_DIGEST, services.settings.escalation_digest_minute,
                           tz_name=services.settings.program_timezone, after=after,
                           now=services.clock.now())
