"""Block Kit for support requests: the modal, offers, the introduction, alerts and closing."""

from __future__ import annotations

import functools
from collections.abc import Sequence
from datetime import timedelta

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.infra.models import RequestKind, RequestState, SupportRequest
from bot.library import Entry, Surfacing
from bot.requests.service import CONNECTIONS, DURATIONS, NEED_MET, URGENCIES
from bot.requests.teams import TEAM_LABEL
from bot.roster.supporters import ROLE_LABELS
from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import Action, Callback
from handlers.common.ids import Block as BlockId
from handlers.library.blocks import crisis_blocks, surfacing_blocks, tips_blocks

NOT_SAFE = "not_safe"
WELCOME = "welcome"
TYPICAL_WAIT = {"now": "usually within 30 minutes", "today": "usually within a few hours",
                "week": "usually within a day or two"}


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _options(choices: dict[str, str]) -> list[Option]:
    return [Option(value=value, label=label) for value, label in choices.items()]


def _radio(block_id: str, label: str, choices: dict[str, str], initial: str) -> InputBlock:
    options = _options(choices)
    return InputBlock(block_id=block_id, label=label, element=RadioButtonsElement(
        action_id=Action.FIELD, options=options,
        initial_option=next(o for o in options if o.value == initial)))


def request_modal(departments: Sequence[str]) -> dict:
    """Ask for support: preferences only, with no place to say what happened, and why.

    Cached by the department list (the answer is shared: read it, do not change it): the form
    is the same for everyone, and building and checking its Block Kit was most of the cost of
    answering /peersupport.
    """
    return _request_modal(tuple(departments))


@functools.lru_cache(maxsize=16)
def _request_modal(departments: tuple[str, ...]) -> dict:
    department_options = [Option(value=d, label=d[:75]) for d in departments[:99]]
    blocks: list[Block] = [
        _section("A trained peer supporter, a colleague, will reach out to listen. This is "
                 "confidential emotional support, not a review of what happened."),
        _context(":lock: There is nowhere here to describe the event or any patient, on "
                 "purpose: you never need to, and the bot never stores it."),
        _radio(BlockId.URGENCY, "How soon would you like to talk?", URGENCIES, "now"),
        _radio(BlockId.CONNECTION, "How would you like to connect?", CONNECTIONS, "slack"),
        _radio(BlockId.WHO, "Your supporter", {
            "anyone": "Anyone available",
            "outside": "Someone from outside my department"}, "anyone"),
        _radio(BlockId.ROLE_MATCH, "Their role", {
            "any": "Any role", "same": "Someone in the same role as me"}, "any"),
    ]
    if department_options:
        blocks.append(InputBlock(
            block_id=BlockId.DEPARTMENT, label="Your department", optional=True,
            hint="Only needed to find someone from outside it.",
            element=StaticSelectElement(action_id=Action.FIELD, options=department_options,
                                        placeholder="Choose your department")))
    blocks.extend([
        InputBlock(block_id=BlockId.ROLE, label="Your role", optional=True,
                   hint="Only needed to find someone in the same role.",
                   element=StaticSelectElement(action_id=Action.FIELD,
                                               options=_options(ROLE_LABELS),
                                               placeholder="Choose your role")),
        InputBlock(block_id=BlockId.FOLLOWUPS, label="Check-ins", optional=True,
                   element=CheckboxesElement(action_id=Action.FIELD, options=[Option(
                       value=WELCOME, label="I'd welcome a few check-ins over the next weeks")])),
        InputBlock(block_id=BlockId.SAFETY, label="Your safety", optional=True,
                   element=CheckboxesElement(action_id=Action.FIELD, options=[Option(
                       value=NOT_SAFE,
                       label="I'm not safe right now / I'm thinking of harming myself")])),
    ])
    return View(type="modal", callback_id=Callback.REQUEST, title="Peer support",
                submit="Ask for support", close="Cancel", blocks=blocks).to_dict()


def _state_line(request: SupportRequest) -> str:
    if request.state == RequestState.ASSIGNED:
        return "A supporter has accepted and will be in touch in your group message."
    if request.state == RequestState.ESCALATED:
        return ("Every supporter on duty is busy right now, so a program coordinator has been "
                "asked to find someone for you.")
    if request.state == RequestState.CANCELLED:
        return "You withdrew this request. You can ask again at any time."
    if request.state == RequestState.CLOSED:
        return "This conversation is closed. You can ask again at any time."
    return f"We are finding a supporter for you, {TYPICAL_WAIT[request.urgency]}."


def crisis_view(crisis: Sequence[Entry]) -> dict:
    """What someone who says they are not safe sees at once, in place of the form."""
    blocks = to_dicts([_section(
        ":rotating_light: *Thank you for telling us.* If you might act on these thoughts, call "
        "or text *988* now or your local emergency number. A program coordinator has been "
        "alerted and every available supporter has been asked to reach you.")])
    return View(type="modal", title="You are not alone", close="Close",
                blocks=blocks + crisis_blocks(crisis, "Please reach out now")).to_dict()


def withdrawn_view() -> dict:
    """The open-request modal once the request is withdrawn."""
    return View(type="modal", title="Peer support", close="Close", blocks=[_section(
        "Your request is withdrawn. You can ask again at any time.")]).to_dict()


def open_request_modal(request: SupportRequest) -> dict:
    """Someone who already has a request is shown it, with a way to withdraw it."""
    blocks: list[Block] = [
        _section("*You already have a request open.*\n" + _state_line(request)),
        _context(f"{URGENCIES[request.urgency]} · {connection_label(request)}"),
        ActionsBlock(elements=[ButtonElement(text="Withdraw my request",
                                             action_id=Action.CANCEL_REQUEST,
                                             value=str(request.id), style="danger")]),
    ]
    return View(type="modal", callback_id=Callback.OPEN_REQUEST, title="Peer support",
                close="Close", blocks=blocks).to_dict()


def requester_status(request: SupportRequest, surfacing: Surfacing) -> dict:
    """The requester's DM: what happens next, how long it takes, help meanwhile, and cancel."""
    blocks: list[dict] = to_dicts([HeaderBlock(text="Your request for peer support")])
    lines = [_state_line(request)]
    if request.crisis and request.state in (RequestState.OPEN, RequestState.ESCALATED):
        lines.insert(0, ":rotating_light: *You said you are not safe right now.* Please call or "
                        "text *988* now, or your local emergency number. A program coordinator "
                        "has been alerted and every available supporter has been asked.")
    blocks.extend(to_dicts([_section("\n".join(lines))]))
    if request.state in (RequestState.OPEN, RequestState.ESCALATED, RequestState.ASSIGNED):
        blocks.extend(to_dicts([ActionsBlock(elements=[ButtonElement(
            text="Withdraw my request", action_id=Action.CANCEL_REQUEST,
            value=str(request.id))])]))
    if request.state in (RequestState.OPEN, RequestState.ESCALATED):
        blocks.extend(surfacing_blocks(surfacing, resources_heading="While you wait"))
    return {"text": "Your request for peer support: " + _state_line(request), "blocks": blocks}


def connection_label(request: SupportRequest) -> str:
    """How the person wants to connect, or that it is support for a team."""
    if request.kind == RequestKind.TEAM:
        return TEAM_LABEL
    return CONNECTIONS[request.connection]


def _request_facts(request: SupportRequest) -> str:
    facts = [f"*When:* {URGENCIES[request.urgency]}", f"*How:* {connection_label(request)}"]
    if request.kind == RequestKind.TEAM:
        facts.append(f"*Team:* {escape(request.requester_department or '')}, with "
                     f"{request.seats} supporter{'s' if request.seats > 1 else ''} together")
        return "\n".join(facts)
    if request.requester_role:
        facts.append(f"*Their role:* {ROLE_LABELS.get(request.requester_role, 'Other')}")
    if request.requester_department and not request.outside_department:
        facts.append(f"*Their department:* {escape(request.requester_department)}")
    if request.crisis:
        facts.append(":rotating_light: *They said they are not safe right now.*")
    return "\n".join(facts)


def offer_message(request: SupportRequest, offer_id: int, *, direct: bool = False) -> dict:
    """A supporter's offer: the facts they need to decide, never who asked or what happened."""
    lead = ("A program coordinator has asked you personally to take a request."
            if direct else "Someone has asked for peer support.")
    blocks = [
        _section(f"*{lead}*\n{_request_facts(request)}"),
        _context("You will learn who it is only if you accept. If you know them or were "
                 "involved in the event, please decline."),
        ActionsBlock(elements=[
            ButtonElement(text="Accept", style="primary", action_id=Action.ACCEPT_OFFER,
                          value=str(offer_id)),
            ButtonElement(text="Decline", action_id=Action.DECLINE_OFFER, value=str(offer_id)),
        ]),
    ]
    return {"text": "A colleague has asked for peer support", "blocks": to_dicts(blocks)}


OFFER_ENDINGS = {
    "accepted": "You accepted this request. Your introduction is in a group message.",
    "taken": "Another supporter has already taken this request. Thank you for being there.",
    "withdrawn": "The person withdrew this request. Thank you for being there.",
    "declined": "You declined this request. Thank you for saying so.",
    "handed_back": "You handed this request back. Thank you for saying so.",
    "joined": "You are one of this team's supporters. We will introduce you once the other "
              "supporter has accepted too.",
    "expired": "Nobody could answer in time, so this request went to other supporters. "
               "Thank you for being there.",
}
# Notes to one person that a request's change implies (bot.requests.service records them by name).
NOTICES = {
    "handed_back": ("Your supporter cannot continue with this conversation: this happens, for "
                    "example when they know you, and it is not about you. We are finding someone "
                    "else for you now."),
    "withdrawn": "The person you were supporting has closed their request. Thank you.",
    "team_handed_back": ("One of your team's supporters cannot continue: this happens, and it is "
                         "not about your team. We are finding someone else now."),
}
# An alert's outcome once the request no longer needs a coordinator, by the request's state.
ALERT_OUTCOMES = {
    "cancelled": "Withdrawn by the person who asked.",
    "closed": "Placed, and since closed.",
}


def offer_ended(how: str) -> dict:
    """An offer message updated in place once it can no longer be answered."""
    return {"text": OFFER_ENDINGS[how], "blocks": to_dicts([_section(OFFER_ENDINGS[how])])}


def introduction(request: SupportRequest, supporter_ids: Sequence[str] = ()) -> dict:
    """The group message that introduces the two people, worded for how they want to connect
    (for a team: the caller and every supporter who answers together)."""
    requester, supporter = f"<@{request.requester_id}>", f"<@{request.supporter_id}>"
    if request.kind == RequestKind.TEAM:
        names = " and ".join(f"<@{s}>" for s in supporter_ids or [request.supporter_id or ""])
        text = (f"Hello {requester}: {names} are trained peer supporters and will support your "
                "team together. Please agree here what would help and when. Taking part is "
                "always voluntary, and nobody needs to describe the event or any patient.")
        return {"text": text, "blocks": to_dicts([_section(text)])}
    how = {
        "slack": f"{supporter}, when you are ready, say hello here or in a direct message.",
        "phone": f"{requester} would like a phone call. {supporter}, please ask here for the "
                 "best number and time, then call.",
        "in_person": f"{requester} would like to meet in person. {supporter}, please suggest a "
                     "quiet place and a time here.",
    }[request.connection]
    text = (f"Hello {requester}: {supporter} is a trained peer supporter and will be in touch. "
            f"{how}\nWhat you share stays between you. You never need to describe the event "
            "or any patient.")
    return {"text": text, "blocks": to_dicts([_section(text)])}


def supporter_case(request: SupportRequest, surfacing: Surfacing) -> dict:
    """The accepting supporter's private message: tips, referral lines, hand back and close."""
    blocks = to_dicts([
        HeaderBlock(text="You accepted a request"),
        _section(f"{_request_facts(request)}\nYour introduction to <@{request.requester_id}> "
                 "is in a group message."),
        ActionsBlock(elements=[
            ButtonElement(text="Close the conversation", style="primary",
                          action_id=Action.OPEN_CLOSE, value=str(request.id)),
            ButtonElement(text="Hand it back", action_id=Action.HAND_BACK, value=str(request.id)),
        ]),
        _context("Hand it back if you know the person or were involved in the event; "
                 "someone else will be found, and they will be told kindly."),
    ])
    blocks.extend(to_dicts([HeaderBlock(text="Before you meet")]))
    blocks.extend(tips_blocks(surfacing.tips))
    blocks.extend(crisis_blocks(surfacing.crisis, "If they need more than peer support"))
    return {"text": "You accepted a peer support request", "blocks": blocks}


def close_modal(request_id: int) -> dict:
    """A few aggregate-only questions when the supporter closes the encounter; no free text."""
    return View(type="modal", callback_id=Callback.CLOSE_REQUEST, title="Close the conversation",
                submit="Close", close="Cancel", private_metadata=str(request_id), blocks=[
                    _context("Your answers are counted only in program totals, never shown "
                             "for one person."),
                    InputBlock(block_id=BlockId.DURATION, label="Roughly how long did you talk?",
                               element=RadioButtonsElement(action_id=Action.FIELD,
                                                           options=_options(DURATIONS))),
                    InputBlock(block_id=BlockId.REFERRED,
                               label="Did you suggest professional help?",
                               element=RadioButtonsElement(action_id=Action.FIELD, options=[
                                   Option(value="yes", label="Yes"),
                                   Option(value="no", label="No")])),
                    InputBlock(block_id=BlockId.NEED_MET,
                               label="In your judgement, did it meet their need?",
                               element=RadioButtonsElement(action_id=Action.FIELD,
                                                           options=_options(NEED_MET))),
                ]).to_dict()


def waited_text(waited: timedelta) -> str:
    """A wait as people say it: "12 min", "1 h 5 min", "2 days 3 h"."""
    minutes = max(0, int(waited.total_seconds() // 60))
    days, minutes = divmod(minutes, 24 * 60)
    hours, minutes = divmod(minutes, 60)
    if days:
        return f"{days} day{'s' if days > 1 else ''} {hours} h"
    return f"{hours} h {minutes} min" if hours else f"{minutes} min"


def coordinator_alert(request: SupportRequest, *, waited: timedelta, asked: int) -> dict:
    """The one escalation alert per coordinator, kept current in place: how long the person
    has waited, how soon they wanted someone, how many were asked, and ways to place it. Who
    asked stays private unless they said they are not safe."""
    if request.crisis:
        lead = (f":rotating_light: *<@{request.requester_id}> has said they are not safe right "
                "now.* They have been shown the crisis lines and every available supporter has "
                "been asked. Please make sure a person reaches them now.")
    else:
        lead = "*A request for peer support has no supporter yet*: nobody eligible accepted in time."
    status = (f"*Waiting:* {waited_text(waited)} · *Supporters asked:* {asked} · "
              f"*Wanted:* {URGENCIES[request.urgency]}")
    blocks = [
        _section(f"{lead}\n{_request_facts(request)}"),
        _context(status),
        ActionsBlock(block_id=f"alert:{request.id}", elements=[
            ButtonElement(text="Take it myself", style="primary", action_id=Action.TAKE_REQUEST,
                          value=str(request.id)),
            UserSelectElement(action_id=Action.PICK_SUPPORTER,
                              placeholder="Offer it to a supporter…"),
        ]),
    ]
    return {"text": "A peer support request needs a coordinator", "blocks": to_dicts(blocks)}


def alert_renotice(waited: timedelta) -> dict:
    """A reply in the alert's thread, so the coordinator is notified again without a new alert."""
    text = f"Still no supporter after {waited_text(waited)}. The alert above is up to date."
    return {"text": text}


def alert_outcome(request: SupportRequest) -> str:
    """What an alert says once the request no longer needs a coordinator."""
    if request.state == RequestState.ASSIGNED:
        return f"Placed: <@{request.supporter_id}> has this request."
    return ALERT_OUTCOMES.get(request.state, "This request no longer needs a coordinator.")


def unplaced_digest(requests: Sequence[tuple[SupportRequest, timedelta]]) -> dict:
    """The daily list of every request still without a supporter, longest wait first."""
    lines = [f"• {URGENCIES[r.urgency]}, waiting {waited_text(w)}"
             + (" · :rotating_light: not safe" if r.crisis else "") for r, w in requests]
    count = len(requests)
    head = f"*{count} request{'s' if count != 1 else ''} still without a supporter*"
    text = head + "\n" + "\n".join(lines[:40])
    if count > 40:
        text += f"\n…and {count - 40} more (see your Home tab)."
    return {"text": f"{count} peer support requests still need a supporter",
            "blocks": to_dicts([_section(text[:2900]),
                                _context("Each has its own alert above, with Take and Offer.")])}


def alert_resolved(text: str) -> dict:
    """A coordinator alert replaced once the request is placed or withdrawn."""
    return {"text": text, "blocks": to_dicts([_section(text)])}
