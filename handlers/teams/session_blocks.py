"""Block Kit for a team's group conversation: the form to propose times, the messages in the
team's group DM, the caller's invitation to share, the post in the team's channel, and the
reminder.

Every time is shown with Slack's date token, so each person reads it in their own time zone;
only the caller's copyable invitation also spells it out in their zone. The invitation and the
channel post name nobody: not the caller, not the supporters.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    ConfirmObject,
    ContextBlock,
    DateTimePickerElement,
    InputBlock,
    MarkdownTextObject,
    PlainTextInputElement,
    SectionBlock,
)
from slack_sdk.models.views import View

from bot.infra.clock import zone
from bot.infra.models import SessionProposal, SupportRequest, TeamRequest
from bot.requests.sessions import MAX_TIMES, PLACE_LENGTH
from handlers.common.blockkit import date_token, escape, to_dicts
from handlers.common.ids import Action, Callback
from handlers.common.ids import Block as BlockId

TIME_LABELS = ("A time", "Another time", "A third time")
VOLUNTARY = ("It is voluntary, there is nothing to prepare, and it is not a review of what "
             "happened: come as you are, and talk or just listen.")


def _section(text: str, **extra: object) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text), **extra)


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def versioned(version: int) -> str:
    """The block id of one version's buttons: a click on an older one is told it is stale."""
    return f"{BlockId.TEAM_SESSION}:v{version}"


def version_of(block_id: object) -> int | None:
    """The version a button's block id names, or None for anything else."""
    prefix = f"{BlockId.TEAM_SESSION}:v"
    if not isinstance(block_id, str) or not block_id.startswith(prefix):
        return None
    digits = block_id.removeprefix(prefix)
    return int(digits) if digits.isascii() and digits.isdigit() and len(digits) <= 9 else None


def local_time(at: datetime, tz_name: str) -> str:
    """A time on the wall clock of `tz_name`, with its abbreviation: "Tue 7 Apr 2026, 10:00
    AEST" (daylight saving as it stands on that day)."""
    local = at.astimezone(zone(tz_name))
    return f"{local:%a} {local.day} {local:%b %Y}, {local:%H:%M} {local.tzname()}"


def _place(team: TeamRequest) -> str:
    return escape(team.session_place) if team.session_place else "to be shared here soon"


def _supporters(request: SupportRequest) -> str:
    return "Two trained peer supporters" if request.seats > 1 else "A trained peer supporter"


def _names(user_ids: Sequence[str]) -> str:
    return " and ".join(f"<@{u}>" for u in user_ids)


# -- proposing ---------------------------------------------------------------------------------

def propose_modal(request_id: int) -> dict:
    """One to three times for the group conversation (the first required), and where."""
    times: list[Block] = [
        InputBlock(block_id=f"{BlockId.SESSION_TIME}:{number}", label=label,
                   optional=number > 1, element=DateTimePickerElement(action_id=Action.FIELD))
        for number, label in enumerate(TIME_LABELS[:MAX_TIMES], start=1)]
    blocks: list[Block] = [
        _section("Offer one to three times for the team's group conversation. The person who "
                 "asked picks the one that suits the team; everyone sees the times in their "
                 "own time zone."),
        *times,
        InputBlock(block_id=BlockId.SESSION_PLACE, label="Where", optional=True,
                   hint="A room, or a Slack huddle link. Please add nothing about the event.",
                   element=PlainTextInputElement(action_id=Action.FIELD,
                                                 max_length=PLACE_LENGTH)),
    ]
    return View(type="modal", callback_id=Callback.PROPOSE_TIMES, title="Propose times",
                submit="Propose", close="Cancel", private_metadata=str(request_id),
                blocks=blocks).to_dict()


def _change_buttons(request: SupportRequest, team: TeamRequest, other_times: str) -> ActionsBlock:
    return ActionsBlock(block_id=versioned(team.session_version), elements=[
        ButtonElement(text=other_times, action_id=Action.RESCHEDULE_SESSION,
                      value=str(request.id)),
        ButtonElement(text="Call it off", action_id=Action.CANCEL_SESSION, value=str(request.id),
                      style="danger", confirm=ConfirmObject(
                          title="Call it off?", confirm="Call it off", deny="Keep it",
                          text="Everyone here is told. You can still talk here whenever it "
                               "helps.")),
    ])


def proposals_message(request: SupportRequest, team: TeamRequest,
                      proposals: Sequence[SessionProposal], by: str) -> dict:
    """The proposed times in the group DM, each with Pick for the caller."""
    caller = f"<@{request.requester_id}>"
    blocks: list[Block] = [_section(
        f"*Times for the team's group conversation*\n<@{by}> proposed these. {caller}, please "
        "pick the one that suits the team best. Each time shows in your own time zone.")]
    blocks += [_section(date_token(p.starts_at), accessory=ButtonElement(
        text="Pick", action_id=Action.PICK_TIME, value=str(p.id), style="primary"))
        for p in proposals]
    blocks += [_context(f"Where: {_place(team)}"),
               _change_buttons(request, team, "Ask for other times")]
    return {"text": f"Times for the team's group conversation: {caller}, please pick one",
            "blocks": to_dicts(blocks)}


def picked_note(at: datetime) -> dict:
    """The proposals message once the caller picked: the buttons go, the choice stays."""
    text = f"Picked: {date_token(at)}. The details are below."
    return {"text": text, "blocks": to_dicts([_section(text)])}


def set_aside_note(by: str, called_off: bool) -> dict:
    """A message whose buttons were used to reschedule or call off, without its buttons."""
    text = f"Called off by <@{by}>." if called_off else \
        f"<@{by}> asked for other times, so this was set aside."
    return {"text": text, "blocks": to_dicts([_section(text)])}


# -- the group DM after a change ---------------------------------------------------------------

def session_set(request: SupportRequest, team: TeamRequest) -> dict:
    """The time picked, with Reschedule and Call it off."""
    assert team.session_at is not None
    text = (f"*The team's group conversation is set* for {date_token(team.session_at)}.\n"
            f"Where: {_place(team)}")
    blocks: list[Block] = [
        _section(text),
        _context(f"<@{request.requester_id}> has an invitation to share with the team. Taking "
                 "part is voluntary, and nobody needs to describe the event."),
        _change_buttons(request, team, "Reschedule"),
    ]
    return {"text": f"The team's group conversation is set for {date_token(team.session_at)}",
            "blocks": to_dicts(blocks)}


def rescheduled(request: SupportRequest, by: str, supporters: Sequence[str]) -> dict:
    """Back to proposing: the supporters are asked for new times."""
    text = (f"<@{by}> asked for other times for the team's group conversation. "
            f"{_names(supporters) or 'Supporters'}, please propose new times.")
    blocks: list[Block] = [_section(text), ActionsBlock(elements=[ButtonElement(
        text="Propose times", action_id=Action.PROPOSE_TIMES, value=str(request.id),
        style="primary")])]
    return {"text": text, "blocks": to_dicts(blocks)}


def called_off(by: str) -> dict:
    """The group conversation is off."""
    text = (f"<@{by}> called off the team's group conversation. You can still talk here "
            "whenever it helps.")
    return {"text": text, "blocks": to_dicts([_section(text)])}


ENDED = {
    "cancelled": "The request for the team's support was withdrawn",
    "closed": "The team's support has been closed",
}


def _posted_note(channel_id: str | None, says: str) -> str:
    return f" The invitation in <#{channel_id}> now says {says}." if channel_id else ""


def ended_with_request(state: str, posted_in: str | None) -> dict:
    """The group conversation is off because its request was withdrawn or closed; `posted_in`
    names the team's channel when its invitation was posted there."""
    text = (f"{ENDED.get(state, ENDED['cancelled'])}, so the team's group conversation will "
            f"not go ahead.{_posted_note(posted_in, 'so')} If the team would like support "
            "later, `/peersupport team` is there at any time.")
    return {"text": text, "blocks": to_dicts([_section(text)])}


def stepped_back(request: SupportRequest, posted_in: str | None) -> dict:
    """A supporter handed back: the time is set aside until someone else joins."""
    who = "One of the peer supporters" if request.seats > 1 else "The peer supporter"
    text = (f"{who} has had to step back, so the time for the team's group conversation is set "
            "aside for now. This happens, and it is not about the team. Once another supporter "
            "joins, a new conversation will start with them, and new times will be proposed "
            f"there.{_posted_note(posted_in, 'that the time is moving')}")
    return {"text": text, "blocks": to_dicts([_section(text)])}


# -- the invitation ----------------------------------------------------------------------------

def invitation_text(request: SupportRequest, team: TeamRequest, when: str) -> str:
    """The invitation as plain lines anyone can copy: when, where, and that it is voluntary."""
    return "\n".join([
        f"Group conversation for the {escape(team.unit)} team",
        f"When: {when}",
        f"Where: {_place(team)}",
        f"{_supporters(request)} will be there. {VOLUNTARY}",
    ])


def caller_invitation(request: SupportRequest, team: TeamRequest, tz_name: str) -> dict:
    """The caller's ready-to-share invitation, its time spelled out in their own zone, and
    (when their team has a channel) a button to post it there."""
    assert team.session_at is not None
    when = f"{local_time(team.session_at, tz_name)} ({date_token(team.session_at)})"
    invitation = invitation_text(request, team, when)
    blocks: list[Block] = [
        _section("*The time is set.* Here is an invitation you can copy and share with your "
                 "team:"),
        _section(invitation),
    ]
    if team.channel_id:
        blocks.append(_section(
            f"Or I can post it in <#{team.channel_id}> for you. It names nobody.",
            block_id=versioned(team.session_version),
            accessory=ButtonElement(text="Post this in the channel",
                                    action_id=Action.POST_INVITATION, value=str(request.id))))
    blocks.append(_context("Nothing is posted anywhere unless you ask."))
    return {"text": "An invitation to share with your team:\n" + invitation,
            "blocks": to_dicts(blocks)}


def channel_invitation(request: SupportRequest, team: TeamRequest) -> dict:
    """The invitation as posted in the team's channel: nobody's name in it."""
    assert team.session_at is not None
    invitation = invitation_text(request, team, date_token(team.session_at))
    return {"text": invitation, "blocks": to_dicts([_section(invitation)])}


def channel_update(team: TeamRequest, called: bool) -> dict:
    """The posted invitation once its time is given up, so nobody comes at the old time."""
    unit = escape(team.unit)
    text = (f"The group conversation for the {unit} team that was planned here has been called "
            "off. If you would like to talk with a peer supporter, type `/peersupport` at any "
            "time." if called else
            f"The group conversation for the {unit} team that was planned here is moving to "
            "another time. Please hold off for now: the person who arranged it will share the new "
            "time.")
    return {"text": text, "blocks": to_dicts([_section(text)])}


def reminder(request: SupportRequest, team: TeamRequest) -> dict:
    """One person's reminder, an hour before."""
    assert team.session_at is not None
    text = (f"Reminder: the group conversation for the {escape(team.unit)} team is at "
            f"{date_token(team.session_at)}.\nWhere: {_place(team)}\nTaking part is voluntary, "
            "and nobody needs to describe the event.")
    return {"text": text, "blocks": to_dicts([_section(text)])}
