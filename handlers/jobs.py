"""Due-work kinds: what runs when a timer falls due, and the recurring work to keep scheduled."""

from __future__ import annotations

import functools
from collections.abc import Callable, Sequence
from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.checkins import service as checkins
from bot.infra import audit, deliveries, duework, outbox
from bot.infra.duework import JobContext, JobKind, RetryLater
from bot.infra.messaging import SlackAppProblem
from bot.infra.models import SupportRequest
from bot.pulses import service as pulses
from bot.requests import flows as flow
from bot.requests import service as domain
from bot.roster import duty
from handlers.checkins import sending as checkin_flow
from handlers.pulses import listeners as pulse_handlers
from handlers.requests.blocks import unplaced_digest
from handlers.requests.effects import APP_PROBLEM_RETRY, register_effects
from handlers.roster.blocks import coverage_warning

if TYPE_CHECKING:
    from bot.app.runtime import Runtime

COVERAGE_CHECK = "coverage_check"
SLACK_ERROR_RETRY = 60
RETENTION = "retention"
ESCALATION_DIGEST = "escalation_digest"
RETENTION_MINUTE = 3 * 60 + 30  # 03:30 in the program's zone, when little else happens


def _as_retry(error: Exception) -> Exception:
    """Slack refusing the app, or failing after its own retries, means try the job later."""
    if isinstance(error, SlackAppProblem):
        return RetryLater(APP_PROBLEM_RETRY, f"slack: {error.error}")
    if isinstance(error, SlackApiError):
        return RetryLater(SLACK_ERROR_RETRY, "slack: " + str(
            error.response.get("error", "error"))[:60])
    return error


def _retry_on_slack_trouble(run: Callable[[JobContext], None]) -> Callable[[JobContext], None]:
    """A job whose Slack trouble becomes a later retry (see _as_retry)."""

    @functools.wraps(run)
    def guarded(ctx: JobContext) -> None:
        try:
            run(ctx)
        except (SlackAppProblem, SlackApiError) as error:
            raise _as_retry(error) from None

    return guarded


def register_jobs(runtime: Runtime) -> None:
    """Register every due-work kind the app runs with the runtime's registry."""
    register_effects(runtime)

    def check_coverage(ctx: JobContext) -> None:
        settings = runtime.settings
        supporters = duty.on_call(ctx.session)
        gaps = duty.coverage_gaps(supporters, ctx.now, settings.coverage_window_hours,
                                  settings.min_on_duty)
        if gaps:
            message = coverage_warning(gaps, settings.min_on_duty, settings.program_timezone,
                                       len(supporters))
            tell_coordinators(runtime, ctx, "coverage", message)
        schedule_daily(runtime, ctx.session, COVERAGE_CHECK,
                       runtime.settings.coverage_check_minute, after=ctx.now)

    def offer_timeout(ctx: JobContext) -> None:
        request = ctx.session.get(SupportRequest, ctx.payload["request_id"])
        if request is not None:
            flow.advance(runtime, ctx.session, request, int(ctx.payload["wave"]))

    def escalation_reminder(ctx: JobContext) -> None:
        flow.remind(runtime, ctx.session, int(ctx.payload["request_id"]),
                    int(ctx.payload.get("escalation") or 1), int(ctx.payload["number"]))

    def escalation_digest(ctx: JobContext) -> None:
        waiting = domain.unassigned(ctx.session)
        if waiting:
            digest = unplaced_digest(sorted(((r, ctx.now - r.created_at) for r in waiting),
                                            key=lambda pair: pair[1], reverse=True))
            tell_coordinators(runtime, ctx, "digest", digest)
        schedule_daily(runtime, ctx.session, ESCALATION_DIGEST,
                       runtime.settings.escalation_digest_minute, after=ctx.now)

    def retention(ctx: JobContext) -> None:
        domain.forget_identities(ctx.session, now=ctx.now,
                                 retention_days=runtime.settings.retention_days)
        deliveries.forget_old(ctx.session, now=ctx.now)
        audit.forget_old(ctx.session, now=ctx.now,
                         retention_days=runtime.settings.audit_retention_days)
        schedule_daily(runtime, ctx.session, RETENTION, RETENTION_MINUTE, after=ctx.now)

    def send_checkin(ctx: JobContext) -> None:
        checkin_flow.send(runtime, ctx)

    def send_checkins(batch: Sequence[JobContext]) -> dict[int, Exception]:
        failures = checkin_flow.send_batch(runtime, batch)
        return {item: _as_retry(error) for item, error in failures.items()}

    def remind_supporter(ctx: JobContext) -> None:
        checkin_flow.remind_supporter(runtime, ctx)

    # Check-ins and nudges found late (the clock was down) are spread out by the engine's
    # catch-up policy; send() then places each check-in inside the person's own hours.
    runtime.jobs.register(JobKind(checkins.CHECKIN, _retry_on_slack_trouble(send_checkin),
                                  run_batch=send_checkins))
    runtime.jobs.register(JobKind(checkin_flow.SUPPORTER_REMINDER,
                                  _retry_on_slack_trouble(remind_supporter)))

    def open_pulse(ctx: JobContext) -> None:
        pulse_handlers.open_run(runtime, ctx)

    def close_pulse(ctx: JobContext) -> None:
        pulse_handlers.close_run(runtime, ctx)

    # A prompt found late opens at once (its answers stay open for the full period), and a
    # close found late closes at once: neither may wait.
    runtime.jobs.register(JobKind(pulses.PULSE_OPEN, _retry_on_slack_trouble(open_pulse),
                                  always_run=True))
    runtime.jobs.register(JobKind(pulses.PULSE_CLOSE, _retry_on_slack_trouble(close_pulse),
                                  always_run=True))
    # Timers on a request run however late: a request must never wait longer for being late.
    for name, run in ((COVERAGE_CHECK, check_coverage), (flow.OFFER_TIMEOUT, offer_timeout),
                      (flow.ESCALATION_REMINDER, escalation_reminder), (RETENTION, retention),
                      (ESCALATION_DIGEST, escalation_digest)):
        runtime.jobs.register(JobKind(name, _retry_on_slack_trouble(run), always_run=True))


def tell_coordinators(runtime: Runtime, ctx: JobContext, what: str, message: dict) -> None:
    """A daily job's message to every coordinator, through the outbox: one coordinator's
    trouble never stops the others', and the job run again never sends it twice that day."""
    for user_id in sorted(runtime.roles.coordinator_ids()):
        outbox.message(ctx.session, user_id, message,
                       key=f"{what}:{ctx.due_at.date().isoformat()}:{user_id}", now=ctx.now)


def next_daily(runtime: Runtime, minute: int, after: datetime) -> datetime:
    """The next time-of-day `minute` in the program's zone, strictly after `after`."""
    tz = duty.zone(runtime.settings.program_timezone)
    at = time(minute // 60, minute % 60)
    local = after.astimezone(tz)
    moment = datetime.combine(local.date(), at, tzinfo=tz)
    if moment <= local:
        moment = datetime.combine(local.date() + timedelta(days=1), at, tzinfo=tz)
    return moment


def schedule_daily(runtime: Runtime, session: Session, kind: str, minute: int, *,
                   after: datetime) -> bool:
    """Make sure the next daily run of `kind` is scheduled; once per day whoever asks."""
    moment = next_daily(runtime, minute, after)
    return duework.schedule(session, kind, moment, now=runtime.clock.now(),
                            key=f"{kind}:{moment.date().isoformat()}")


def bootstrap_jobs(runtime: Runtime) -> None:
    """Schedule recurring work at clock start; safe to repeat, and from several processes."""
    now = runtime.clock.now()
    with runtime.sessions.begin() as session:
        schedule_daily(runtime, session, COVERAGE_CHECK, runtime.settings.coverage_check_minute,
                       after=now)
        schedule_daily(runtime, session, RETENTION, RETENTION_MINUTE, after=now)
        schedule_daily(runtime, session, ESCALATION_DIGEST,
                       runtime.settings.escalation_digest_minute, after=now)
