"""Check-ins' timers: sending each question once, and the supporter's optional nudge."""

from __future__ import annotations

from collections.abc import Sequence

from bot.checkins import flows as checkin_flows
from bot.checkins.timers import CHECKIN, SUPPORTER_REMINDER
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import as_retry, retry_on_slack_trouble
from handlers.checkins import sending
from handlers.checkins.blocks import supporter_reminder
from handlers.common.services import Services


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register the check-ins' timers. Check-ins and nudges found late (the clock was down) are
    spread out by the engine's catch-up policy; sending then places each check-in inside the
    person's own hours."""

    def send_checkin(ctx: JobContext) -> None:
        sending.send(services, ctx)

    def send_checkins(batch: Sequence[JobContext]) -> dict[int, Exception]:
        failures = sending.send_batch(services, batch)
        return {item: as_retry(error) for item, error in failures.items()}

    def remind_supporter(ctx: JobContext) -> None:
        checkin_flows.remind_supporter(ctx.session, int(ctx.payload["request_id"]),
                                       nudge=supporter_reminder, item_id=ctx.item_id, now=ctx.now)

    jobs.register(JobKind(CHECKIN, retry_on_slack_trouble(send_checkin), run_batch=send_checkins))
    jobs.register(JobKind(SUPPORTER_REMINDER, retry_on_slack_trouble(remind_supporter)))
