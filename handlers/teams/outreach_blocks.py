"""Block Kit for the private outreach: each member's note, and the private answers to its buttons.

A note speaks to one person about their own team, never about what happened and never naming
anyone else; its answers are seen by the person who clicked alone.
"""

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

from bot.infra.models import SessionState, SupportRequest, TeamRequest
from bot.library import Surfacing
from bot.requests import outreach
from handlers.common.blockkit import date_token, escape, notice, to_dicts
from handlers.common.ids import Action
from handlers.library.blocks import surfacing_blocks
from handlers.requests.blocks import requester_status

# A note whose team asked for a group conversation, when it has no time: sent so (the notes
# went before a time was picked), or brought up to date after a time was moved or set aside.
ARRANGING = "A group conversation for the team is being arranged."
REARRANGED = "The team's group conversation has no time set at the moment."
CALLED_OFF = "The team's group conversation will not go ahead as planned."
PRIVATE = ("Only you can see this. Nobody on your team, and nobody who arranged this, is told "
           "whether or how you answer.")


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _session_line(team: TeamRequest, *, updated: bool) -> str | None:
    """What the note says of the team's group conversation as it stands now: its time (and
    place) when set; that a time is being found (to a note that may have shown one: that it no
    longer stands); that it is called off, to a note that may have spoken of it; nothing when
    there is none to speak of."""
    if team.session_state == SessionState.SET and team.session_at is not None:
        where = f", {escape(team.session_place)}" if team.session_place else ""
        return (f"*The team is meeting for a group conversation {date_token(team.session_at)}"
                f"{where}.* Coming is entirely voluntary. It is a time to look after each "
                "other, not to go over the event, and you are welcome just to listen.")
    if not team.group:
        return None
    if team.session_state in (SessionState.NONE, SessionState.PROPOSED):
        if updated:
            return (f"*{REARRANGED}* Any time shared before no longer stands, and a new one is "
                    "being found. Coming will be entirely voluntary.")
        return (f"*{ARRANGING}* Its time will be shared with the team once it is set. Coming "
                "will be entirely voluntary.")
    if team.session_state == SessionState.CANCELLED and updated:
        return (f"*{CALLED_OFF}* Nobody needs to do anything. Peer support is still here for "
                "you, whenever you would like it.")
    return None


def member_note(team: TeamRequest, surfacing: Surfacing, *, updated: bool = False) -> dict:
    """One member's private note: peer support is there for them, the group conversation as it
    stands, a way to talk, a few check-ins, the resources, and a way to say no more. `updated`:
    the note replaces one already sent, which may have shown a time since called off."""
    unit = escape(team.unit)
    lines = [f"Hello. Your team, *{unit}*, has been through something hard recently. However "
             "you are feeling about it, peer support is here for you: a trained colleague to "
             "talk with, in confidence. There is nothing you need to explain."]
    blocks: list[Block] = [_section("\n\n".join(lines))]
    session = _session_line(team, updated=updated)
    if session is not None:
        blocks.append(_section(session))
    value = str(team.request_id)
    blocks += [
        ActionsBlock(elements=[
            ButtonElement(text="Talk to a peer supporter", action_id=Action.TEAM_TALK,
                          value=value, style="primary"),
            ButtonElement(text="Send me a few check-ins", action_id=Action.TEAM_CHECKINS,
                          value=value),
        ]),
        ContextBlock(elements=[MarkdownTextObject(text=PRIVATE)]),
    ]
    content = to_dicts(blocks) + surfacing_blocks(
        surfacing, resources_heading="Some people find these helpful")
    content += to_dicts([ActionsBlock(elements=[ButtonElement(
        text="Don't send me notes like this", action_id=Action.OUTREACH_OPT_OUT, value=value)])])
    return {"text": f"Your team, {unit}, has been through something hard. Peer support is "
                    "here for you if you would like it.", "blocks": content}


# -- answers to the note's buttons, seen by the member alone -----------------------------------

ASKED = ("*Thank you for reaching out.* We are finding a peer supporter for you, usually within "
         "a few hours. They will message you here in Slack. Nobody on your team is told.")
CHECKINS_PLANNED = ("*Thank you.* You will get a few short check-ins over the coming weeks, "
                    "inside your usual hours. See, move or stop them any time with "
                    "`/peersupport checkins`.")
CHECKINS_ALREADY = ("You already have check-ins planned. See, move or stop them with "
                    "`/peersupport checkins`.")
OPTED_OUT = ("You will not be sent notes like this again. Support is still here whenever you "
             "want it: type `/peersupport`.")
OPTED_IN = "You will be sent notes like this again when your team has been through something hard."


def opted_out() -> dict:
    """The private answer to "Don't send me notes like this", with a way to change one's mind."""
    return {"text": OPTED_OUT, "blocks": to_dicts([
        SectionBlock(text=MarkdownTextObject(text=OPTED_OUT)),
        ActionsBlock(elements=[ButtonElement(text="Send them to me after all",
                                             action_id=Action.OUTREACH_OPT_IN, value="1")]),
    ])}


def asked(request: SupportRequest, surfacing: Surfacing, *, created: bool) -> dict:
    """After "Talk to a peer supporter": what happens next, or the request already open."""
    if created:
        return notice(ASKED)
    status = requester_status(request, surfacing)
    lead = to_dicts([_section("*You already have a request for support open.*")])
    return {"text": "You already have a request for support open. " + status["text"],
            "blocks": lead + status["blocks"]}


# -- to the caller and supporters, when the outreach could not go as asked -------------------

def too_large(team: TeamRequest, members: int) -> dict:
    """The team named was far larger than a team: nothing was sent."""
    return notice(
        f"The private notes for *{escape(team.unit)}* were not sent: the group or channel "
        f"named for the team has {members:,} people, more than the {outreach.MAX_MEMBERS:,} a team's "
        "notes can go to, so it is most likely not the team's own. To offer each person private "
        "support, ask again for the team naming a smaller group, channel or list of people.")


UNREADABLE = "the app cannot see it (a private channel needs the app added to it first)"
# Told to the caller, and to the supporters: notes go only where the caller is a member, so a
# mistaken choice (a hospital-wide channel) never reaches people outside the team.
NOT_YOURS = ("you are not a member of it, and notes only go to a group or channel you are in, "
             "so that none reach the wrong people by mistake")
NOT_THEIRS = ("the person who asked for the team's support is not a member of it, and notes "
              "only go to a group or channel they are in, so that none reach the wrong people "
              "by mistake")


def not_used(team: TeamRequest, unused: Sequence[tuple[str, bool]], *, others: bool,
             to_caller: bool) -> dict:
    """The team's channel or group was not used, each given as (what, whether the app could
    read it), with its reason told plainly: its members were not sent notes."""
    theirs = NOT_YOURS if to_caller else NOT_THEIRS
    reasons = [f"the team's {what}: {theirs if readable else UNREADABLE}."
               for what, readable in unused]
    lead = f"The private notes for *{escape(team.unit)}* could not reach the members of "
    rest = "Everyone else named for the team is sent their note." if others else ""
    if len(reasons) == 1:
        return notice(" ".join(part for part in (lead + reasons[0], rest) if part))
    return notice("\n".join([lead.rstrip() + ":", *(f"• {reason}" for reason in reasons),
                             *([rest] if rest else [])]))
