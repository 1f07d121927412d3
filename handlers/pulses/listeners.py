"""Wellbeing prompts (`pulse`, `results`) and program insights (`insights`)."""

from __future__ import annotations

import contextlib
from datetime import time
from typing import Any

from slack_bolt import Ack, App, Respond
from sqlalchemy.orm import Session

from bot.infra import audit
from bot.infra.db import after_commit
from bot.infra.messaging import SlackUnreachable
from bot.infra.models import Pulse
from bot.insights import service as program
from bot.library import Moment
from bot.pulses import service as pulses
from bot.pulses.charts import describe, distribution_chart, prompt_distribution, series_chart
from bot.pulses.service import PulseError, PulseSpec
from handlers.common.blockkit import notice
from handlers.common.handover import to_the_clock
from handlers.common.ids import PULSE_ANSWERS, Action, Block, Callback
from handlers.common.interaction import reply_privately, submitted, whole_number
from handlers.common.invocation import Invocation
from handlers.common.middleware import transactional
from handlers.common.services import Services
from handlers.library.blocks import surfacing_blocks
from handlers.pulses.blocks import (
    OWN,
    insights_message,
    pulse_modal,
    results_message,
)


def register(app: App) -> None:
    """Listen for the prompt modal and answer buttons."""
    app.view(Callback.PULSE)(on_pulse_submitted)
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
    roles = call.context["services"].roles.of(call.context["db"], call.user_id)
    if not roles.leader:
        return ("Only leaders can post wellbeing prompts and see their results. If you should "
                "be one, ask whoever runs the app to add you to PEERSUPPORT_LEADERS or the "
                "leaders' user group.")
    if not call.context["services"].settings.pulse_secret:
        return ("Wellbeing prompts are switched off until PEERSUPPORT_PULSE_SECRET is set, so "
                "answers can be kept anonymous; ask whoever runs the app.")
    return None


def pulse_command(call: Invocation) -> None:
    """`/peersupport pulse`: leaders open the prompt modal."""
    if not _ack_as_leader(call):
        return
    services: Services = call.context["services"]
    try:  # after the ack: recurring prompts run on the leader's own clock
        tz = str(services.messenger.user_info(call.user_id).get("tz") or "UTC")
    except SlackUnreachable:
        tz = services.settings.program_timezone
    services.messenger.open_view(call.trigger_id, pulse_modal(services.library.prompts(), tz))


def _all_results(services: Services, db: Session, leader_id: str) -> list[pulses.PulseResults]:
    minimum = services.settings.min_group
    return [pulses.results(db, pulse, minimum=minimum)
            for pulse in pulses.leader_pulses(db, leader_id)]


def share_results(services: Services, leader_id: str, all_results: list[pulses.PulseResults]
                  ) -> None:
    """DM a leader their results: the summary, a chart of the newest prompt, and a CSV."""
    minimum = services.settings.min_group
    channel = services.messenger.open_conversation([leader_id])
    services.messenger.post_message(channel, **results_message(all_results, minimum))
    if all_results:
        chart = prompt_distribution(all_results, minimum)
        services.messenger.upload_file(
            channel, "prompt-results.png", distribution_chart(chart),
            f"Answers per run: {chart.question}"[:250], alt_text=describe(chart))
        services.messenger.upload_file(channel, "prompt-results.csv",
                                      pulses.results_csv(all_results).encode(),
                                      "Prompt results (aggregates only)")


def results_command(call: Invocation) -> None:
    """`/peersupport results`: leaders see their prompts' results; chart and CSV come by DM."""
    if not _ack_as_leader(call):
        return
    services: Services = call.context["services"]
    found = _all_results(services, call.context["db"], call.user_id)
    audit.record(call.context["db"], call.user_id, "results.view", now=services.clock.now())
    call.respond(response_type="ephemeral",
                 **results_message(found, services.settings.min_group))
    if found:  # with no prompt yet there is nothing to chart, and one answer says so
        after_commit(call.context["db"], lambda: share_results(services, call.user_id, found))


def insights_command(call: Invocation) -> None:
    """`/peersupport insights`: coordinators and leaders see program figures, chart by DM."""
    services: Services = call.context["services"]
    roles = services.roles.of(call.context["db"], call.user_id)
    if not (roles.coordinator or roles.leader):
        call.ack(response_type="ephemeral", **notice(
            "Only coordinators and leaders can see program insights."))
        return
    call.ack()
    figures = program.compute(call.context["db"], minimum=services.settings.min_group)
    audit.record(call.context["db"], call.user_id, "insights.view", now=services.clock.now())
    call.respond(response_type="ephemeral", **insights_message(figures))

    def send_chart() -> None:
        channel = services.messenger.open_conversation([call.user_id])
        months = list(figures.months)
        values = [float(v) if v is not None else None for v in figures.months.values()]
        services.messenger.upload_file(
            channel, "requests-by-month.png",
            series_chart("Personal requests by month", months, values, ylabel="Requests",
                         hidden=HIDDEN_MONTH),
            "Personal requests by month", alt_text=_months_in_words(figures.months))

    after_commit(call.context["db"], send_chart)


# A month can be hidden with more than the minimum, so a smaller one cannot be worked out from
# the total: the chart says hidden, not "fewer than".
HIDDEN_MONTH = "hidden"


def _months_in_words(months: dict[str, int | None]) -> str:
    """The requests chart's alt text: each month's figure, or hidden."""
    parts = [f"{month} {HIDDEN_MONTH if count is None else count}"
             for month, count in months.items()]
    return ("Personal requests by month: " + ("; ".join(parts) or "none yet") + ".")[:1000]


def read_spec(values: dict[str, Any], services: Services, tz: str) -> PulseSpec:
    """The prompt the leader described, from the modal's state."""
    preset_id = submitted(values, Block.PRESET)
    preset = services.library.get(preset_id) if preset_id and preset_id != OWN else None
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
    services: Services = context["services"]
    user_id = body["user"]["id"]
    if not services.roles.of(db, user_id).leader or not services.settings.pulse_secret:
        ack(response_action="errors", errors={Block.PRESET: "Only leaders can post prompts."})
        return
    tz = view.get("private_metadata") or services.settings.program_timezone
    values = view["state"]["values"]
    try:
        pulses.create(db, user_id, read_spec(values, services, tz), now=services.clock.now())
    except PulseError as error:
        ack(response_action="errors", errors={_error_block(error, values): str(error)})
        return
    ack()
    guidance = services.library.for_moment(Moment.LEADER_PROMPT, audience="leader")

    def send_guidance() -> None:
        with contextlib.suppress(SlackUnreachable):
            services.messenger.post_dm(
                user_id, text="Your prompt is saved. While answers come in, some ideas that help:",
                blocks=surfacing_blocks(guidance))

    after_commit(db, send_guidance)


@to_the_clock(PULSE_ANSWERS)
@transactional
def on_pulse_answer(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                    context: dict[str, Any], db: Session) -> None:
    """Record an anonymous answer and confirm it privately."""
    ack()
    services: Services = context["services"]
    choice = whole_number(str(action.get("action_id", "")).rsplit(":", 1)[-1])
    run_id = whole_number(action.get("value"))
    if choice is None or run_id is None or not services.settings.pulse_secret:
        return
    try:
        run = pulses.answer(db, run_id, body["user"]["id"], choice,
                            secret=services.settings.pulse_secret, now=services.clock.now())
    except PulseError as error:
        reply_privately(respond, str(error))
        return
    pulse = db.get(Pulse, run.pulse_id)
    thanks = (f"Thank you: your answer “{pulse.options[choice]}” is recorded anonymously. You "
              f"can change it until the prompt closes.")
    # Only once it is: a commit that fails must not leave someone told their answer counts.
    after_commit(db, lambda: reply_privately(respond, thanks))


@transactional
def on_pulse_stop(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
                  context: dict[str, Any], db: Session) -> None:
    """A leader stops one of their recurring prompts."""
    ack()
    services: Services = context["services"]
    try:
        pulse = pulses.stop(db, whole_number(action.get("value")) or 0, body["user"]["id"],
                            now=services.clock.now())
    except PulseError as error:
        reply_privately(respond, str(error))
        return
    reply_privately(respond, f"“{pulse.question}” will not be posted again.")
