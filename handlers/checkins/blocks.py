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

from bot.checkins.service import ANSWER_LABELS, Role, choices_for
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


_QUESTIONS = {
    Role.PERSONAL: ("Checking in: how are you doing?",
                    "*Checking in.* How are you doing since you talked with a peer supporter?"),
    Role.MEMBER: ("Checking in: how are you doing?",
                  "*Checking in.* How are you doing these days? You asked for these check-ins "
                  "when your team was offered support."),
    Role.CALLER: ("Checking in: how is the team doing?",
                  "*Checking in.* How is the team doing since the peer supporters were with "
                  "you?"),
}
_CONTEXTS = {
    Role.PERSONAL: "Your answer is counted only in program totals. Change when check-ins "
                   "come, or see the next ones, with `/peersupport checkins`.",
    Role.MEMBER: "Nobody on your team, and none of its supporters, is told that you get "
                 "these. Change when they come, or stop them, with `/peersupport checkins`.",
    Role.CALLER: "If you say the team is struggling, its peer supporters are told, so they "
                 "can follow up with you. Nothing here asks what happened.",
}


def checkin_message(checkin_id: int, role: Role = Role.PERSONAL) -> dict:
    """The check-in question, with one button per answer and nothing to type: about the team
    for its caller (who can also ask for another session in one click)."""
    # Built and checked once, then copied with the id filled in: a clock sending a backlog
    # of check-ins spent much of its time re-validating the same Block Kit.
    blocks = json.loads(_checkin_blocks(role).replace(_ID, str(int(checkin_id))))
    return {"text": _QUESTIONS[role][0], "blocks": blocks,
            "metadata": {"event_type": METADATA_TYPE, "event_payload": {"checkin_id": checkin_id}}}


def _another_session(value: str) -> ButtonElement:
    return ButtonElement(text="The team could use another session",
                         action_id=Action.ANOTHER_SESSION, value=value)


@functools.lru_cache(maxsize=len(Role))
def _checkin_blocks(role: Role) -> str:
    buttons = [ButtonElement(text=label, action_id=f"{Action.CHECKIN_ANSWER}:{key}", value=_ID,
                             style="danger" if key == "struggling" else None)
               for key, label in choices_for(role).items()]
    blocks: list = [_section(_QUESTIONS[role][1]),
                    ActionsBlock(block_id=f"checkin:{_ID}", elements=buttons)]
    if role == Role.CALLER:
        blocks.append(ActionsBlock(elements=[_another_session(_ID)]))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(text=_CONTEXTS[role])]))
    return json.dumps(to_dicts(blocks))


_FOLLOW = {
    "better": "Thank you for letting us know. Glad things are easing.",
    "same": "Thank you for letting us know. Ups and downs are normal after a hard event.",
    "struggling": "Thank you for telling us. You do not have to carry this alone: "
                  "professional help is below, and you can talk with a peer supporter again.",
    "talk_again": "We are finding a supporter for you, your earlier one if they are "
                  "available. You will get a message soon.",
    "stop": "No more check-ins. You can always ask for support again with `/peersupport`.",
}
# Someone checked in with on a team request has no earlier supporter of their own.
_FOLLOW_MEMBER = {
    **_FOLLOW,
    "struggling": "Thank you for telling us. You do not have to carry this alone: "
                  "professional help is below, and a peer supporter can talk with you "
                  "privately.",
    "talk_again": "We are finding a peer supporter for you. You will get a message soon; "
                  "nobody on your team is told.",
}
_FOLLOW_CALLER = {
    "better": "Thank you for letting us know. Glad the team is finding its feet.",
    "same": "Thank you for letting us know. Teams often take a while after a hard event.",
    "struggling": "Thank you for telling us. The team's peer supporters have been told, so "
                  "they can follow up with you. Help for you and the team is below.",
    "talk_again": _FOLLOW_MEMBER["talk_again"],
}
_FOLLOWS = {Role.PERSONAL: _FOLLOW, Role.MEMBER: _FOLLOW_MEMBER, Role.CALLER: _FOLLOW_CALLER}


def answered(choice: str, checkin_id: int, surfacing: Surfacing | None = None,
             role: Role = Role.PERSONAL) -> dict:
    """The check-in message after an answer, with what that answer brings. A team's caller
    keeps the one click for another session, and after 'struggling' may ask for someone to
    talk with themselves."""
    follow = _FOLLOWS[role][choice]
    blocks: list[dict] = to_dicts([_section(f"You answered *{ANSWER_LABELS[choice]}*. {follow}")])
    buttons = []
    if role == Role.CALLER:
        buttons.append(_another_session(str(checkin_id)))
    if choice == "struggling":
        buttons.append(ButtonElement(
            text="Talk with a peer supporter myself" if role == Role.CALLER else
            "Talk with a peer supporter again" if role == Role.PERSONAL else
            "Talk with a peer supporter", style="primary",
            action_id=Action.TALK_AGAIN, value=str(checkin_id)))
    if buttons:
        blocks.extend(to_dicts([ActionsBlock(elements=buttons)]))
    if choice == "struggling" and surfacing is not None:
        blocks.extend(surfacing_blocks(surfacing))
    return {"text": f"You answered: {ANSWER_LABELS[choice]}", "blocks": blocks}


def another_session_asked(request_id: int, *, again: bool = False) -> dict:
    """To a team's caller who asked for another session: what happens next."""
    first = ("You already asked for another session for the team." if again else
             "Thank you. We are asking for another session for the team.")
    text = (f"{first} The peer supporter who led the last one is asked first, if they are "
            "available; otherwise others are. You will get a message here when supporters "
            "have said yes, and you can pick a time together then. Nothing more is needed "
            "from you now.")
    blocks = [_section(text), ContextBlock(elements=[MarkdownTextObject(
        text=f"Team request {int(request_id)}. It follows on from the last one: the same unit, "
             "the same people, the same kinds of help.")])]
    return {"text": first, "blocks": to_dicts(blocks)}


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


# One wording for a personal requester and a team member alike: a different one would tell
# coordinators that someone on a team they know was reached opted in to check-ins.
_SOMEONE = ("Someone supported recently checked in as *struggling*. They were shown professional "
            "help and offered a conversation with a peer supporter.")
_ALERTS = {
    Role.PERSONAL: _SOMEONE,
    Role.MEMBER: _SOMEONE,
    Role.CALLER: "A team supported recently was said to be *struggling* at its check-in. The "
                 "person who asked for it was shown help and offered another session; the "
                 "team's peer supporters were told.",
}


def struggling_alert(role: Role = Role.PERSONAL) -> dict:
    """To coordinators: a count-style alert with no identity (nor team) and no free text."""
    text = _ALERTS[role]
    return {"text": text, "blocks": to_dicts([_section(text)])}


def struggling_note(role: Role, person_id: str) -> dict:
    """To whoever supported the person, who already knows them: a personal requester's
    supporter, or each supporter of a team whose caller answered (never about a member)."""
    if role == Role.CALLER:
        text = (f"<@{person_id}> checked in about their team and said it is struggling. They "
                "were shown help and offered another session. A message from you to them may "
                "help.")
    else:
        text = (f"<@{person_id}> checked in as struggling. They were shown professional help "
                "and offered another conversation. A personal message from you may help.")
    return {"text": text, "blocks": to_dicts([_section(text)])}
