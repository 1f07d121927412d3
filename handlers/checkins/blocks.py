"""Block Kit for check-ins: the question, the answer, the person's list, and the alerts."""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    ButtonElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    SectionBlock,
    StaticSelectElement,
)
from slack_sdk.models.views import View

from bot.checkins.service import ANSWERS
from bot.infra.clock import zone
from bot.infra.models import CheckIn, ContactHours
from bot.library import Surfacing
from bot.roster.duty import clock_text
from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import Action, Block, Callback
from handlers.library.blocks import surfacing_blocks

METADATA_TYPE = "peersupport_checkin"


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


_ID = "__checkin_id__"


def checkin_message(checkin_id: int) -> dict:
    """The check-in question, with one button per answer and nothing to type."""
    # Built and checked once, then copied with the id filled in: a clock sending a backlog
    # of check-ins spent much of its time re-validating the same Block Kit.
    blocks = json.loads(_checkin_blocks().replace(_ID, str(int(checkin_id))))
    return {"text": "Checking in: how are you doing?", "blocks": blocks,
            "metadata": {"event_type": METADATA_TYPE, "event_payload": {"checkin_id": checkin_id}}}


@functools.lru_cache(maxsize=1)
def _checkin_blocks() -> str:
    buttons = [ButtonElement(text=label, action_id=f"{Action.CHECKIN_ANSWER}:{key}", value=_ID,
                             style="danger" if key == "struggling" else None)
               for key, label in ANSWERS.items()]
    blocks = [
        _section("*Checking in.* How are you doing since you talked with a peer supporter?"),
        ActionsBlock(block_id=f"checkin:{_ID}", elements=buttons),
        ContextBlock(elements=[MarkdownTextObject(
            text="Your answer is counted only in program totals. Change when check-ins come, "
                 "or see the next ones, with `/peersupport checkins`.")]),
    ]
    return json.dumps(to_dicts(blocks))


def answered(choice: str, checkin_id: int, surfacing: Surfacing | None = None) -> dict:
    """The check-in message after an answer, with what that answer brings."""
    follow = {
        "better": "Thank you for letting us know. Glad things are easing.",
        "same": "Thank you for letting us know. Ups and downs are normal after a hard event.",
        "struggling": "Thank you for telling us. You do not have to carry this alone: "
                      "professional help is below, and you can talk with a peer supporter again.",
        "talk_again": "We are finding a supporter for you, your earlier one if they are "
                      "available. You will get a message soon.",
        "stop": "No more check-ins. You can always ask for support again with `/peersupport`.",
    }[choice]
    blocks: list[dict] = to_dicts([_section(f"You answered *{ANSWERS[choice]}*. {follow}")])
    if choice == "struggling":
        blocks.extend(to_dicts([ActionsBlock(elements=[ButtonElement(
            text="Talk with a peer supporter again", style="primary",
            action_id=Action.TALK_AGAIN, value=str(checkin_id))])]))
        if surfacing is not None:
            blocks.extend(surfacing_blocks(surfacing))
    return {"text": f"You answered: {ANSWERS[choice]}", "blocks": blocks}


def checkin_list(checkins: Sequence[CheckIn], hours: ContactHours | None, now: datetime) -> dict:
    """The person's coming check-ins with snooze and cancel, and their hours."""
    tz = hours.tz if hours else "UTC"
    blocks: list = [HeaderBlock(text="Your check-ins")]
    if not checkins:
        blocks.append(_section("You have no check-ins coming."))
    for checkin in checkins[:20]:
        local = checkin.due_at.astimezone(zone(tz))
        blocks.append(_section(f"*Check-in {checkin.number}* · {local:%A %d %B, %H:%M}"))
        blocks.append(ActionsBlock(block_id=f"checkin:{checkin.id}", elements=[
            ButtonElement(text="A day later", action_id=Action.CHECKIN_SNOOZE,
                          value=str(checkin.id)),
            ButtonElement(text="Cancel this one", action_id=Action.CHECKIN_CANCEL,
                          value=str(checkin.id), style="danger"),
        ]))
    if hours is not None:
        window = f"{clock_text(hours.start_minute)}–{clock_text(hours.end_minute)}"
        blocks.append(ContextBlock(elements=[MarkdownTextObject(
            text=f"Check-ins come between {window} ({escape(tz)}).")]))
    blocks.append(ActionsBlock(elements=[ButtonElement(
        text="Change my hours", action_id=Action.CHECKIN_HOURS)]))
    return {"text": f"Your check-ins: {len(checkins)} coming", "blocks": to_dicts(blocks)}


def hours_modal(hours: ContactHours) -> dict:
    """When the person is happy to get check-ins (night-shift staff may choose night hours)."""
    options = [Option(value=str(m), label=clock_text(m)) for m in range(0, 1440, 30)]

    def select(block: str, action: str, label: str, minute: int) -> InputBlock:
        initial = next((o for o in options if o.value == str(minute)), None)
        return InputBlock(block_id=block, label=label, element=StaticSelectElement(
            action_id=action, options=options, initial_option=initial))

    return View(type="modal", callback_id=Callback.CHECKIN_HOURS, title="Check-in hours",
                submit="Save", close="Cancel", blocks=[
                    _section(f"Times are in your Slack time zone ({escape(hours.tz)}). An end "
                             "before the start runs overnight."),
                    select(Block.HOURS_FROM, Action.FIELD, "From", hours.start_minute),
                    select(Block.HOURS_UNTIL, Action.FIELD, "Until", hours.end_minute),
                ]).to_dict()


def supporter_reminder(requester_id: str) -> dict:
    """A gentle nudge to the supporter; they can turn these off."""
    text = (f"A few days ago you supported <@{requester_id}>. If it feels right, a short "
            "personal message to ask how they are can mean a lot.")
    blocks = [_section(text), ActionsBlock(elements=[ButtonElement(
        text="Don't remind me about check-ins", action_id=Action.STOP_REMINDERS)])]
    return {"text": text, "blocks": to_dicts(blocks)}


def struggling_alert() -> dict:
    """To coordinators: a count-style alert with no identity and no free text."""
    text = ("Someone supported recently checked in as *struggling*. They were shown "
            "professional help and offered another conversation; their supporter was told.")
    return {"text": text, "blocks": to_dicts([_section(text)])}


def struggling_note(requester_id: str) -> dict:
    """To the person's supporter, who already knows them."""
    text = (f"<@{requester_id}> checked in as struggling. They were shown professional help "
            "and offered another conversation. A personal message from you may help.")
    return {"text": text, "blocks": to_dicts([_section(text)])}
