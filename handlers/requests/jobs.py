"""Requests' Slack-side timers: every outbox effect's delivery, and the daily digest that shows
coordinators each request still waiting for a supporter."""

from __future__ import annotations

from datetime import datetime

from sqlalchemy.orm import Session

from bot.infra.duework import JobContext, JobRegistry
from bot.infra.models import RequestKind
from bot.requests import service as domain
from bot.requests import teams
from bot.requests.timers import ESCALATION_DIGEST
from handlers.common.daily import register_daily_notice, schedule_next
from handlers.common.services import Services
from handlers.requests.blocks import unplaced_digest
from handlers.requests.effects import register_effects


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register how each message a request's change implies is delivered, and the digest."""
    register_effects(jobs, services)

    def waiting(ctx: JobContext) -> dict | None:
        unplaced = domain.unassigned(ctx.session)
        if not unplaced:
            return None
        asked = teams.of_requests(ctx.session, (r.id for r in unplaced
                                                if r.kind == RequestKind.TEAM))
        return unplaced_digest(sorted(((r, ctx.now - r.created_at) for r in unplaced),
                                      key=lambda pair: pair[1], reverse=True), asked)

    register_daily_notice(jobs, services, ESCALATION_DIGEST,
                          services.settings.escalation_digest_minute, "digest", waiting)


def bootstrap(services: Services, session: Session, *, after: datetime) -> None:
    """Keep the next daily digest scheduled."""
    schedule_next(services, session, ESCALATION_DIGEST,
                  services.settings.escalation_digest_minute, after=after)
