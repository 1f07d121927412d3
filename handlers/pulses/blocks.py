"""Block Kit for wellbeing prompts and program insights: every figure already suppressed."""

from __future__ import annotations

from collections.abc import Callable, Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    ConversationSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
    TimePickerElement,
)
from slack_sdk.models.views import View

from bot.infra.models import Pulse, PulseRun
from bot.insights.service import Insights
from bot.library import Entry
from bot.pulses.service import MAX_QUESTION, OPEN_FOR, RECURRENCES, PulseResults
from bot.roster.duty import WEEKDAYS
from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import Action, Callback
from handlers.common.ids import Block as BlockId

OWN = "own"
OUTCOME_LABELS = {"better": "Doing better", "same": "About the same",
                  "struggling": "Struggling", "talk_again": "Talk again", "stop": "Stopped"}


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _hidden(minimum: int) -> str:
    return f"hidden (fewer than {minimum})"


def pulse_modal(presets: Sequence[Entry], tz: str) -> dict:
    """A leader's prompt: preset or own question, scale, channel, label, schedule, how long."""
    preset_options = [Option(value=p.id, label=p.title[:75]) for p in presets] + [
        Option(value=OWN, label="My own question (write it below)")]

    def radio(block: str, label: str, choices: dict[str, str], initial: str) -> InputBlock:
        options = [Option(value=k, label=v) for k, v in choices.items()]
        return InputBlock(block_id=block, label=label, element=RadioButtonsElement(
            action_id=Action.FIELD, options=options,
            initial_option=next(o for o in options if o.value == initial)))

    blocks: list[Block] = [
        _section("Post an anonymous question to a channel. Answers are stored without anyone's "
                 "identity, and results are shown only for groups large enough to stay "
                 "anonymous."),
        InputBlock(block_id=BlockId.PRESET, label="Question", element=StaticSelectElement(
            action_id=Action.FIELD, options=preset_options, initial_option=preset_options[0])),
        InputBlock(block_id=BlockId.QUESTION, label="Your own question", optional=True,
                   element=PlainTextInputElement(action_id=Action.FIELD,
                                                 max_length=MAX_QUESTION),
                   hint="Only if you chose your own question. Never ask about patients."),
        radio(BlockId.SCALE, "Answers", {"five_point": "A scale of 1 to 5",
                                         "options": "Named answers"}, "five_point"),
        InputBlock(block_id=BlockId.OPTIONS, label="Your named answers", optional=True,
                   element=PlainTextInputElement(action_id=Action.FIELD, max_length=300),
                   hint="Only for your own question: 2 to 6 answers separated by commas."),
        InputBlock(block_id=BlockId.CHANNEL, label="Post in", element=ConversationSelectElement(
            action_id=Action.FIELD, filter={"include": ["public", "private"],
                                            "exclude_bot_users": True})),
        InputBlock(block_id=BlockId.PULSE_DEPARTMENT, label="Department label", optional=True,
                   element=PlainTextInputElement(action_id=Action.FIELD, max_length=80)),
        radio(BlockId.RECURRENCE, "How often", RECURRENCES, "once"),
        InputBlock(block_id=BlockId.WEEKDAY, label="On", optional=True,
                   element=StaticSelectElement(action_id=Action.FIELD, options=[
                       Option(value=str(i), label=day) for i, day in enumerate(WEEKDAYS)])),
        InputBlock(block_id=BlockId.TIME, label=f"At ({tz[:40]})", optional=True,
                   element=TimePickerElement(action_id=Action.FIELD, initial_time="09:00")),
        radio(BlockId.OPEN_FOR, "Open for", {str(k): v for k, v in OPEN_FOR.items()}, "72"),
    ]
    return View(type="modal", callback_id=Callback.PULSE, title="Wellbeing prompt",
                submit="Post", close="Cancel", private_metadata=tz, blocks=blocks).to_dict()


def prompt_message(pulse: Pulse, run: PulseRun) -> dict:
    """The question in the channel, with answer buttons and a private way to ask for support."""
    answers = [ButtonElement(text=label[:75], action_id=f"{Action.PULSE_ANSWER}:{index}",
                             value=str(run.id)) for index, label in enumerate(pulse.options)]
    label = f" · {escape(pulse.department)}" if pulse.department else ""
    blocks = [
        _section(f"*{escape(pulse.question)}*"),
        ActionsBlock(block_id=f"pulse:{run.id}", elements=answers),
        ActionsBlock(elements=[ButtonElement(text="I'd like to talk to a peer supporter",
                                             action_id=Action.REQUEST_SUPPORT)]),
        ContextBlock(elements=[MarkdownTextObject(
            text=f"Anonymous: nobody, including whoever posted this, can see how you answered"
                 f"{label}. You can change your answer until it closes.")]),
    ]
    return {"text": pulse.question, "blocks": to_dicts(blocks)}


def prompt_closed(pulse: Pulse) -> dict:
    """The channel message once answers are closed."""
    text = f"*{escape(pulse.question)}*\nThis prompt has closed. Thank you for answering."
    return {"text": "This prompt has closed", "blocks": to_dicts([_section(text)])}


def not_in_channel(channel_id: str) -> dict:
    """Told to a leader when the bot cannot post in the chosen channel."""
    text = (f"I could not post your prompt in <#{channel_id}>: I am not a member of it, or it "
            "no longer exists. Open the channel and type `/invite @peersupport` (or use the "
            "channel's Integrations settings), then post the prompt again.")
    return {"text": text, "blocks": to_dicts([_section(text)])}


def results_message(all_results: Sequence[PulseResults], minimum: int) -> dict:
    """A leader's prompts with their results over time and by department."""
    blocks: list[Block] = [HeaderBlock(text="Your wellbeing prompts")]
    if not all_results:
        blocks.append(_section("You have not posted a prompt yet: use `/peersupport pulse`."))
    for result in all_results[:10]:
        pulse = result.pulse
        lines = [f"*{escape(pulse.question)}*"
                 + (f" · {escape(pulse.department)}" if pulse.department else "")]
        if not result.runs:
            lines.append("No closed run yet: results come when it closes.")
        for run in result.runs:
            day = f"{run.opened_at:%d %b %Y}"
            if run.respondents is None:
                lines.append(f"• {day}: {_hidden(minimum)}")
                continue
            spread = ", ".join(f"{escape(label)} {count}"
                               for label, count in zip(pulse.options, run.counts or (),
                                                       strict=False))
            mean = f" · average {run.mean:.1f}" if run.mean is not None else ""
            lines.append(f"• {day}: {run.respondents} answers{mean} ({spread})")
        if result.departments:
            parts = [f"{escape(name)}: {count if count is not None else _hidden(minimum)}"
                     for name, count in result.departments.items()]
            total = f"; all {result.department_total}" if result.department_total else ""
            lines.append("By department (answers in the latest run): " + "; ".join(parts)
                         + total)
        section = _section("\n".join(lines)[:3000])
        if pulse.recurrence != "once" and pulse.active:
            section.accessory = ButtonElement(text="Stop repeating", action_id=Action.PULSE_STOP,
                                              value=str(pulse.id))
        blocks.append(section)
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text=f"Groups with fewer than {minimum} answers are hidden, never shown as zero.")]))
    return {"text": "Your wellbeing prompt results", "blocks": to_dicts(blocks)}


def _value(value: object, minimum: int, fmt: str = "{}") -> str:
    return _hidden(minimum) if value is None else fmt.format(value)


def insights_blocks(insights: Insights) -> list[dict]:
    """Program figures, every one of them at or above the minimum group size: personal
    requests, then team requests, each counted apart (no total of both is shown)."""
    k = insights.minimum

    def listing(counts: dict[str, int | None], label: Callable[[str], str] = escape) -> str:
        return "; ".join(f"{label(name)}: {_value(count, k)}" for name, count in counts.items())

    months = listing(insights.months, str)
    departments = listing(insights.departments)
    outcomes = listing(insights.checkin_outcomes, lambda name: OUTCOME_LABELS.get(name, name))
    lines = [
        f"*Requests by month:* {months or 'none yet'}",
        f"*All personal requests:* {_value(insights.total_requests, k)}",
        f"*By department:* {departments or 'none yet'}",
        f"*Time to accept:* median {_value(insights.median_minutes_to_accept, k, '{:.0f} min')},"
        f" 90th percentile {_value(insights.p90_minutes_to_accept, k, '{:.0f} min')}",
        f"*Accepted within 30 minutes:* {_value(insights.share_within_30, k, '{:.0%}')}",
        f"*Escalated to a coordinator:* {_value(insights.escalations, k)}",
        f"*Check-in answers:* {outcomes or _hidden(k)}",
        f"*Supporters who took cases:* {_value(insights.supporters_with_cases, k)}",
        f"*Share of cases the busiest fifth of supporters took:* "
        f"{_value(insights.busiest_fifth_share, k, '{:.0%}')}",
    ]
    team = [
        f"*Team requests by month:* {listing(insights.team_months, str) or 'none yet'}",
        f"*All team requests:* {_value(insights.team_total, k)}",
        f"*By unit:* {listing(insights.team_units) or 'none yet'}",
        f"*Time until every supporter said yes:* median "
        f"{_value(insights.team_median_minutes_to_fill, k, '{:.0f} min')}",
        f"*People reached privately:* {_value(insights.people_reached, k)}",
    ]
    blocks = [HeaderBlock(text="Program insights"),
              _section(("*Support for one person*\n" + "\n".join(lines))[:3000]),
              _section(("*Support for a team*\n" + "\n".join(team))[:3000]),
              ContextBlock(elements=[MarkdownTextObject(
                  text=f"Every figure rests on at least {k} people or is hidden; nothing here "
                       "says who asked for help, or who on a team replied. Team requests are "
                       "counted apart from personal ones, never added to them.")])]
    return to_dicts(blocks)


def insights_message(insights: Insights) -> dict:
    """Insights as an ephemeral message."""
    return {"text": "Program insights", "blocks": insights_blocks(insights)}
