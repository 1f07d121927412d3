"""Block Kit for the private outreach: each member's note, and the private answers to its buttons.

A note speaks to one person about their own team, never about what happened and never naming
anyone else; its answers are seen by the person who clicked alone.
"""

from __future__ import annotations

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

PRIVATE = ("Only you can see this. Nobody on your team, and nobody who arranged this, is told "
           "whether or how you answer.")


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _session_line(team: TeamRequest) -> str | None:
    if team.session_state != SessionState.SET or team.session_at is None:
        return None
    where = f", {escape(team.session_place)}" if team.session_place else ""
    return (f"*The team is meeting for a group conversation {date_token(team.session_at)}"
            f"{where}.* Coming is entirely voluntary. It is a time to look after each other, "
            "not to go over the event, and you are welcome just to listen.")


def member_note(team: TeamRequest, surfacing: Surfacing) -> dict:
    """One member's private note: peer support is there for them, the group conversation's time
    when one is set, a way to talk, a few check-ins, the resources, and a way to say no more."""
    unit = escape(team.unit)
    lines = [f"Hello. Your team, *{unit}*, has been through something hard recently. However "
             "you are feeling about it, peer support is here for you: a trained colleague to "
             "talk with, in confidence. There is nothing you need to explain."]
    blocks: list[Block] = [_section("\n\n".join(lines))]
    session = _session_line(team)
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
    return {"text": f"Your team, {team.unit}, has been through something hard. Peer support is "
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


def unreadable(team: TeamRequest, what: str, *, others: bool) -> dict:
    """The team's channel or group could not be read: its members were not sent notes."""
    rest = " Everyone else named for the team is sent their note." if others else ""
    return notice(
        f"The private notes for *{escape(team.unit)}* could not reach the members of the team's "
        f"{what}: the app cannot see it (a private channel needs the app added to it first)."
        + rest)
