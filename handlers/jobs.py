"""Due-work kinds: what runs when a timer falls due, and the recurring work to keep scheduled."""

from __future__ import annotations

from datetime import datetime, time, timedelta
from typing import TYPE_CHECKING

from bot import duework, duty, roster
from bot.duework import JobContext, JobKind
from bot.messaging import SlackUnreachable
from handlers.blocks.roster import coverage_warning

if TYPE_CHECKING:
    from bot.runtime import Runtime

COVERAGE_CHECK = "coverage_check"


def register_jobs(runtime: Runtime) -> None:
    """Register every due-work kind the app runs with the runtime's registry."""

    def check_coverage(ctx: JobContext) -> None:
        settings = runtime.settings
        supporters = roster.all_supporters(ctx.session)
        gaps = duty.coverage_gaps(supporters, ctx.now, settings.coverage_window_hours,
                                  settings.min_on_duty)
        if gaps:
            message = coverage_warning(gaps, settings.min_on_duty, settings.program_timezone,
                                       len(supporters))
            for user_id in sorted(runtime.roles.coordinator_ids()):
                try:
                    runtime.messenger.post_dm(user_id, **message)
                except SlackUnreachable:
                    continue  # a coordinator who left Slack does not stop the others' warning
        schedule_coverage_check(runtime, ctx.session, after=ctx.now)

    # Run however late: a late warning about tonight is better than none.
    runtime.jobs.register(JobKind(COVERAGE_CHECK, check_coverage, always_run=True))


def next_coverage_check(runtime: Runtime, after: datetime) -> datetime:
    """The next daily check time (PEERSUPPORT_COVERAGE_CHECK_TIME in the program's zone)."""
    tz = duty.zone(runtime.settings.program_timezone)
    minute = runtime.settings.coverage_check_minute
    local = after.astimezone(tz)
    moment = datetime.combine(local.date(), time(minute // 60, minute % 60), tzinfo=tz)
    if moment <= local:
        moment = datetime.combine(local.date() + timedelta(days=1),
                                  time(minute // 60, minute % 60), tzinfo=tz)
    return moment


def schedule_coverage_check(runtime: Runtime, session, *, after: datetime) -> bool:  # noqa: ANN001
    """Make sure the next daily coverage check is scheduled; once per day whoever asks."""
    moment = next_coverage_check(runtime, after)
    return duework.schedule(session, COVERAGE_CHECK, moment, now=runtime.clock.now(),
                            key=f"{COVERAGE_CHECK}:{moment.date().isoformat()}")


def bootstrap_jobs(runtime: Runtime) -> None:
    """Schedule recurring work at clock start; safe to repeat, and from several processes."""
    with runtime.sessions.begin() as session:
        schedule_coverage_check(runtime, session, after=runtime.clock.now())
