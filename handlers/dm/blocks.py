"""Block Kit for the bot's answers to direct messages: short, with the request button first."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ContextBlock,
    MarkdownTextObject,
    SectionBlock,
)

from bot.infra.clock import zone
from bot.infra.models import CheckIn, RequestState, SupportRequest
from bot.library import Entry
from handlers.common.blockkit import to_dicts
from handlers.common.ids import Action
from handlers.library.blocks import crisis_blocks, entry_blocks
from handlers.requests.blocks import crisis_view

# Shown under every answer: what the bot does with a DM, said plainly.
NOT_KEPT = ("I'm a bot: I can't read or answer what you write, and the app does not keep it. "
            "Slack keeps this conversation like any other DM, under your workspace's rules.")
WORDS_HINT = ("You can write *help*, *resources* [words], *checkins*, *team*, and, for "
              "supporters, *available* or *away* [until friday 18:00].")
MAX_CHECKINS_SHOWN = 3
MAX_BLOCKS = 50  # Slack's limit for one message


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _request_button(primary: bool = True) -> ButtonElement:
    return ButtonElement(text="Request support", action_id=Action.REQUEST_SUPPORT,
                         style="primary" if primary else None)


def _checkin_lines(upcoming: Sequence[CheckIn], tz: str) -> str:
    shown = [f"• {checkin.due_at.astimezone(zone(tz)):%A %d %B, %H:%M}"
             for checkin in upcoming[:MAX_CHECKINS_SHOWN]]
    more = len(upcoming) - len(shown)
    if more > 0:
        shown.append(f"• and {more} more")
    return "*Your next check-ins*\n" + "\n".join(shown) + "\nMove or cancel them: write *checkins*."


def dm_answer(resources: Sequence[Entry], crisis: Sequence[Entry], upcoming: Sequence[CheckIn],
              tz: str) -> dict:
    """The answer to any DM: the request button, a couple of resources, the person's check-ins."""
    blocks: list[Block] = [
        _section("Thank you for writing. To talk with a trained peer supporter, a colleague, "
                 "press *Request support*: it takes a few clicks and never asks what happened."),
        ActionsBlock(elements=[_request_button()]),
    ]
    if resources:
        blocks.append(_section("*From the peer support toolkit*"))
        for entry in resources[:2]:
            blocks.extend(entry_blocks(entry))
    if upcoming:
        blocks.append(_section(_checkin_lines(upcoming, tz)))
    message = to_dicts(blocks) + crisis_blocks(crisis[:2], "If you need help now")
    message += to_dicts([_context(WORDS_HINT), _context(NOT_KEPT)])
    return {"text": "To talk with a peer supporter, press Request support.", "blocks": message}


def crisis_answer(crisis: Sequence[Entry]) -> dict:
    """A DM that spoke of suicide or self-harm: the crisis lines first, then a button that asks
    for someone now (nothing happens until it is pressed)."""
    lines = crisis_blocks(crisis, "If you might act on these thoughts, please reach out now")
    if not lines:
        lines = to_dicts([_section("*If you might act on these thoughts, call or text 988 now, "
                                   "or your local emergency number.*")])
    blocks = to_dicts([
        _section("You don't have to carry this alone. If you press the button, every available "
                 "peer supporter is asked to reach you now and a program coordinator is "
                 "alerted."),
        ActionsBlock(elements=[
            ButtonElement(text="Have someone reach out to me now", style="danger",
                          action_id=Action.REACH_OUT_NOW),
            _request_button(primary=False),
        ]),
        _context(NOT_KEPT),
    ])
    return {"text": "If you might act on these thoughts, please reach out now: call or text 988, "
                    "or your local emergency number.", "blocks": lines + blocks}


def reached_out(crisis: Sequence[Entry]) -> dict:
    """After 'Have someone reach out to me now': what the request form's not-safe box shows."""
    view = crisis_view(crisis)
    return {"text": "Thank you for telling us. Someone is being asked to reach you now.",
            "blocks": view["blocks"]}


def already_open(request: SupportRequest, crisis: Sequence[Entry]) -> dict:
    """'Reach out now' from someone whose request is already open (now urgent, a coordinator
    alerted): where it stands, and the crisis lines again."""
    if request.state == RequestState.ASSIGNED:
        where = "Your supporter has it, and a program coordinator has been alerted now too."
    else:
        where = ("A program coordinator has been alerted now, and every available supporter is "
                 "being asked to reach you.")
    blocks = to_dicts([_section(f"*Your request for support is already open.* {where}")])
    blocks += crisis_blocks(crisis, "If you might act on these thoughts, please reach out now")
    return {"text": f"Your request for support is already open. {where}", "blocks": blocks}


def team_answer() -> dict:
    """`team`: support for a whole team is arranged by a coordinator; personal support is here."""
    text = ("Support for a whole team, after an event that touched many of you, is arranged by "
            "a program coordinator: ask one of them. For yourself, press *Request support*.")
    return {"text": text, "blocks": to_dicts([
        _section(text), ActionsBlock(elements=[_request_button()])])}


def with_words_hint(message: dict) -> dict:
    """A slash command's answer, sent as a DM: the same, with the words a DM understands."""
    return {"text": message.get("text", ""),
            "blocks": list(message.get("blocks") or [])[:MAX_BLOCKS - 1]
            + to_dicts([_context(WORDS_HINT)])}

