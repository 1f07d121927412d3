"""Wellbeing prompts (`pulse`, `results`) and program insights (`insights`)."""

from __future__ import annotations

import contextlib
from datetime import time
from typing import TYPE_CHECKING, Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot.app.runtime import Runtime
from bot.infra import audit
from bot.infra.db import after_commit
from bot.infra.duework import JobContext
from bot.infra.messaging import SlackUnreachable
from bot.infra.models import Pulse, PulseRun
from bot.insights import service as program
from bot.library import Moment
from bot.pulses import service as pulses
from bot.pulses.charts import describe, distribution_chart, prompt_distribution, series_chart
from bot.pulses.service import PulseError, PulseSpec
from handlers.common.ids import PULSE_ANSWERS, Action, Block, Callback
from handlers.common.interaction import reply_privately, submitted, whole_number
from handlers.common.middleware import transactional
from handlers.library.blocks import surfacing_blocks
from handlers.pulses.blocks import (
    OWN,
    insights_message,
    not_in_channel,
    prompt_closed,
    prompt_message,
    pulse_modal,
    results_message,
)
from handlers.roster.blocks import notice

if TYPE_CHECKING:
    from handlers.commands.listeners import Invocation



def register(app: App) -> None:
    """Listen for the prompt modal and answer buttons."""
    app.view(Callback.PULSE)(on_pulse_submitted)
    app.action(PULSE_ANSWERS)(on_pulse_answer)
    app.action(Action.PULSE_STOP)(on_pulse_stop)


def _ack_as_leader(call: Invocation) -> bool:
    """Acknowledge: empty for a leader (True), or with the reason they cannot (False)."""
    refusal = _refuse_unless_leader(call)
    if refusal:
        call.ack(response_type="ephemeral", **notice(refusal))
        return False
    call.ack()
    return True


def _refuse_unless_leader(call: Invocation) -> str | None:
    roles = call.context["runtime"].roles.of(call.context["db"], call.user_id)
    if not roles.leader:
        return ("Only leaders can post wellbeing prompts and see their results. If you should "
                "be one, ask whoever runs the app to add you to PEERSUPPORT_LEADERS or the "
                "leaders' user group.")
    if not call.context["runtime"].settings.pulse_secret:
        return ("Wellbeing prompts are switched off until PEERSUPPORT_PULSE_SECRET is set, so "
                "answers can be kept anonymous; ask whoever runs the app.")
    return None


def pulse_command(call: Invocation) -> None:
    """`/peersupport pulse`: leaders open the prompt modal."""
    if not _ack_as_leader(call):
        return
    runtime: Runtime = call.context["runtime"]
    try:  # after the ack: recurring prompts run on the leader's own clock
        tz = str(runtime.messenger.user_info(call.user_id).get("tz") or "UTC")
    except SlackUnreachable:
        tz = runtime.settings.program_timezone
    runtime.messenger.open_view(call.trigger_id, pulse_modal(runtime.library.prompts(), tz))


def _all_results(runtime: Runtime, db: Session, leader_id: str) -> list[pulses.PulseResults]:
    minimum = runtime.settings.min_group
    return [pulses.results(db, pulse, minimum=minimum)
            for pulse in pulses.leader_pulses(db, leader_id)]


def share_results(runtime: Runtime, leader_id: str, all_results: list[pulses.PulseResults]
                  ) -> None:
    """DM a leader their results: the summary, a chart of the newest prompt, and a CSV."""
    minimum = runtime.settings.min_group
    channel = runtime.messenger.open_conversation([leader_id])
    runtime.messenger.post_message(channel, **results_message(all_results, minimum))
    if all_results:
        chart = prompt_distribution(all_results, minimum)
        runtime.messenger.upload_file(
            channel, "prompt-results.png", distribution_chart(chart),
            f"Answers per run: {chart.question}"[:250], alt_text=describe(chart))
        runtime.messenger.upload_file(channel, "prompt-results.csv",
                                      pulses.results_csv(all_results).encode(),
                                      "Prompt results (aggregates only)")


def results_command(call: Invocation) -> None:
    """`/peersupport results`: leaders see their prompts' results; chart and CSV come by DM."""
    if not _ack_as_leader(call):
        return
    runtime: Runtime = call.context["runtime"]
    found = _all_results(runtime, call.context["db"], call.user_id)
    audit.record(call.context["db"], call.user_id, "results.view", now=runtime.clock.now())
    call.respond(response_type="ephemeral",
                 **results_message(found, runtime.settings.min_group))
    if found:  # with no prompt yet there is nothing to chart, and one answer says so
        after_commit(call.context["db"], lambda: share_results(runtime, call.user_id, found))


def insights_command(call: Invocation) -> None:
    """`/peersupport insights`: coordinators and leaders see program figures, chart by DM."""
    runtime: Runtime = call.context["runtime"]
    roles = runtime.roles.of(call.context["db"], call.user_id)
    if not (roles.coordinator or roles.leader):
        call.ack(response_type="ephemeral", **notice(
            "Only coordinators and leaders can see program insights."))
        return
    call.ack()
    figures = program.compute(call.context["db"], minimum=runtime.settings.min_group)
    audit.record(call.context["db"], call.user_id, "insights.view", now=runtime.clock.now())
    call.respond(response_type="ephemeral", **insights_message(figures))

    def send_chart() -> None:
        channel = runtime.messenger.open_conversation([call.user_id])
        months = list(figures.months)
        values = [float(v) if v is not None else None for v in figures.months.values()]
        runtime.messenger.upload_file(
            channel, "requests-by-month.png",
            series_chart("Requests by month", months, values, ylabel="Requests",
                         hidden=HIDDEN_MONTH),
            "Requests by month", alt_text=_months_in_words(figures.months))

    after_commit(call.context["db"], send_chart)


# A month can be hidden with more than the minimum, so a smaller one cannot be worked out from
# the total: the chart says hidden, not "fewer than".
HIDDEN_MONTH = "hidden"


def _months_in_words(months: dict[str, int | None]) -> str:
    """The requests chart's alt text: each month's figure, or hidden."""
    parts = [f"{month} {HIDDEN_MONTH if count is None else count}"
             for month, count in months.items()]
    return ("Requests by month: " + ("; ".join(parts) or "none yet") + ".")[:1000]


def read_spec(values: dict[str, Any], runtime: Runtime, tz: str) -> PulseSpec:
    """The prompt the leader described, from the modal's state."""
    preset_id = submitted(values, Block.PRESET)
    preset = runtime.library.get(preset_id) if preset_id and preset_id != OWN else None
    question = preset.title if preset else str(submitted(values, Block.QUESTION) or "")
    scale = submitted(values, Block.SCALE) or ""
    if preset is not None:
        scale = preset.scale or "options"
        options = tuple(preset.answers)
    elif scale == "five_point":
        options = pulses.FIVE_POINT
    else:
        options = tuple(o.strip() for o in str(submitted(values, Block.OPTIONS) or "").split(",")
                        if o.strip())
    clock = str(submitted(values, Block.TIME) or "09:00")
    try:
        at = time.fromisoformat(clock)
    except ValueError:
        at = time(9, 0)
    return PulseSpec(question=question, scale=scale, options=options,
                     channel_id=str(submitted(values, Block.CHANNEL) or ""),
                     department=str(submitted(values, Block.PULSE_DEPARTMENT) or ""),
                     recurrence=str(submitted(values, Block.RECURRENCE) or ""),
                     weekday=whole_number(submitted(values, Block.WEEKDAY)) or 0,
                     minute=at.hour * 60 + at.minute, tz=tz,
                     open_hours=whole_number(submitted(values, Block.OPEN_FOR)) or 0)


# The prompt form's block for each field a PulseError can be about.
_FIELD_BLOCKS = {"question": Block.QUESTION, "scale": Block.SCALE, "options": Block.OPTIONS,
                 "channel": Block.CHANNEL, "department": Block.PULSE_DEPARTMENT,
                 "recurrence": Block.RECURRENCE, "weekday": Block.WEEKDAY, "time": Block.TIME,
                 "open_for": Block.OPEN_FOR}


def _error_block(error: PulseError, values: dict[str, Any]) -> str:
    """The block an error belongs on: a chosen preset supplies the question, scale and answers,
    so a problem with those is the preset's."""
    preset = submitted(values, Block.PRESET)
    if error.field in ("question", "scale", "options") and preset and preset != OWN:
        return Block.PRESET
    return _FIELD_BLOCKS.get(error.field or "", Block.PRESET)


@transactional
def on_pulse_submitted(ack: Ack, body: dict[str, Any], view: dict[str, Any],
                       context: dict[str, Any], db: Session) -> None:
    """Save the prompt; a one-off is posted at once, a recurring one on its schedule."""
    runtime: Runtime = context["runtime"]
    user_id = body["user"]["id"]
    if not runtime.roles.of(db, user_id).leader or not runtime.settings.pulse_secret:
        ack(response_action="errors", errors={Block.PRESET: "Only leaders can post prompts."})
        return
    tz = view.get("private_metadata") or runtime.settings.program_timezone
    values = view["state"]["values"]
    try:
        pulses.create(db, user_id, read_spec(values, runtime, tz), now=runtime.clock.now())
    except PulseError as error:
        ack(response_action="errors", errors={_error_block(error, values): str(error)})
        return
    ack()
    guidance = runtime.library.for_moment(Moment.LEADER_PROMPT, audience="leader")

    def send_guidance() -> None:
        with contextlib.suppress(SlackUnreachable):
            runtime.messenger.post_dm(
                user_id, text="Your prompt is saved. While answers come in, some ideas that help:",
                blocks=surfacing_blocks(guidance))

    after_commit(db, send_guidance)


@transactional
def on_pulse_answer(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                    context: dict[str, Any], db: Session) -> None:
    """Record an anonymous answer and confirm it privately."""
    ack()
    runtime: Runtime = context["runtime"]
    choice = whole_number(str(action.get("action_id", "")).rsplit(":", 1)[-1])
    run_id = whole_number(action.get("value"))
    if choice is None or run_id is None or not runtime.settings.pulse_secret:
        return
    try:
        run = pulses.answer(db, run_id, body["user"]["id"], choice,
                            secret=runtime.settings.pulse_secret, now=runtime.clock.now())
    except PulseError as error:
        reply_privately(respond, str(error))
        return
    pulse = db.get(Pulse, run.pulse_id)
    reply_privately(respond, (
        f"Thank you: your answer “{pulse.options[choice]}” is recorded anonymously. You can "
        f"change it until the prompt closes."))


@transactional
def on_pulse_stop(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  context: dict[str, Any], db: Session) -> None:
    """A leader stops one of their recurring prompts."""
    ack()
    runtime: Runtime = context["runtime"]
    try:
        pulse = pulses.stop(db, whole_number(action.get("value")) or 0, body["user"]["id"],
                            now=runtime.clock.now())
    except PulseError as error:
        reply_privately(respond, str(error))
        return
    reply_privately(respond, f"“{pulse.question}” will not be posted again.")


def open_run(runtime: Runtime, ctx: JobContext) -> None:
    """A prompt's posting time: open a run and post it in the channel."""
    pulse = ctx.session.get(Pulse, ctx.payload["pulse_id"])
    if pulse is None or not pulse.active:
        return
    run = pulses.open_run(ctx.session, pulse, now=ctx.now)
    content = prompt_message(pulse, run)
    run_id, channel, leader = run.id, pulse.channel_id, pulse.leader_id

    def post() -> None:
        try:
            posted = runtime.messenger.post_message(channel, **content)
        except SlackUnreachable:
            with runtime.sessions.begin() as session:
                session.get(PulseRun, run_id).state = "failed"
            if leader:
                runtime.messenger.post_dm(leader, **not_in_channel(channel))
            return
        with runtime.sessions.begin() as session:
            stored = session.get(PulseRun, run_id)
            stored.channel, stored.ts = posted.channel, posted.ts

    after_commit(ctx.session, post)


def close_run(runtime: Runtime, ctx: JobContext) -> None:
    """A run's closing time: close it, mark the message, and send the leader the results."""
    run = pulses.close_run(ctx.session, ctx.payload["run_id"])
    if run is None:
        return
    pulse = ctx.session.get(Pulse, run.pulse_id)
    ctx.session.flush()
    found = [pulses.results(ctx.session, pulse, minimum=runtime.settings.min_group)]
    channel, ts, leader = run.channel, run.ts, pulse.leader_id
    closed = prompt_closed(pulse)

    def send() -> None:
        if channel and ts:
            try:
                runtime.messenger.update_message(channel, ts, **closed)
            except SlackUnreachable:
                pass
        if leader:
            share_results(runtime, leader, found)

    after_commit(ctx.session, send)
