"""Wellbeing prompts' timers: opening a run in its channel and closing it with the results."""

from __future__ import annotations

from bot.infra.db import after_commit
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import SlackUnreachable, retry_on_slack_trouble
from bot.infra.models import Pulse, PulseRun
from bot.pulses import service as pulses
from bot.pulses.timers import PULSE_CLOSE, PULSE_OPEN
from handlers.common.services import Services
from handlers.pulses.blocks import not_in_channel, prompt_closed, prompt_message
from handlers.pulses.listeners import share_results


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """Register the prompts' timers. A prompt found late opens at once (its answers stay open
    for the full period), and a close found late closes at once: neither may wait."""

    def open_pulse(ctx: JobContext) -> None:
        open_run(services, ctx)

    def close_pulse(ctx: JobContext) -> None:
        close_run(services, ctx)

    jobs.register(JobKind(PULSE_OPEN, retry_on_slack_trouble(open_pulse), always_run=True))
    jobs.register(JobKind(PULSE_CLOSE, retry_on_slack_trouble(close_pulse), always_run=True))


def open_run(services: Services, ctx: JobContext) -> None:
    """A prompt's posting time: open a run and post it in the channel."""
    pulse = ctx.session.get(Pulse, ctx.payload["pulse_id"])
    if pulse is None or not pulse.active:
        return
    run = pulses.open_run(ctx.session, pulse, now=ctx.now)
    content = prompt_message(pulse, run)
    run_id, channel, leader = run.id, pulse.channel_id, pulse.leader_id

    def post() -> None:
        try:
            posted = services.messenger.post_message(channel, **content)
        except SlackUnreachable:
            with services.sessions.begin() as session:
                session.get(PulseRun, run_id).state = "failed"
            if leader:
                services.messenger.post_dm(leader, **not_in_channel(channel))
            return
        with services.sessions.begin() as session:
            stored = session.get(PulseRun, run_id)
            stored.channel, stored.ts = posted.channel, posted.ts

    after_commit(ctx.session, post)


def close_run(services: Services, ctx: JobContext) -> None:
    """A run's closing time: close it, mark the message, and send the leader the results."""
    run = pulses.close_run(ctx.session, ctx.payload["run_id"])
    if run is None:
        return
    pulse = ctx.session.get(Pulse, run.pulse_id)
    ctx.session.flush()
    found = [pulses.results(ctx.session, pulse, minimum=services.settings.min_group)]
    channel, ts, leader = run.channel, run.ts, pulse.leader_id
    closed = prompt_closed(pulse)

    def send() -> None:
        if channel and ts:
            try:
                services.messenger.update_message(channel, ts, **closed)
            except SlackUnreachable:
                pass
        if leader:
            share_results(services, leader, found)

    after_commit(ctx.session, send)
