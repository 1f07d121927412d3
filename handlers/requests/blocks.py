"""Block Kit for support requests: the modal, offers, the introduction, alerts and closing."""

from __future__ import annotations

import functools
from collections.abc import Mapping, Sequence
from datetime import timedelta

from slack_sdk.models.blocks import (
    ActionsBlock,
    Block,
    ButtonElement,
    CheckboxesElement,
    ContextBlock,
    ConversationFilter,
    ConversationSelectElement,
    HeaderBlock,
    InputBlock,
    MarkdownTextObject,
    Option,
    PlainTextInputElement,
    RadioButtonsElement,
    SectionBlock,
    StaticSelectElement,
    UserMultiSelectElement,
    UserSelectElement,
)
from slack_sdk.models.views import View

from bot.infra.models import RequestKind, RequestState, SupportRequest, TeamRequest
from bot.library import Entry, Surfacing
from bot.requests.service import CONNECTIONS, DURATIONS, NEED_MET, URGENCIES
from bot.requests.teams import HELP, MAX_PEOPLE, PRESENT, SIZES, TEAM_LABEL, UNIT_LENGTH, asked_for
from bot.roster.supporters import ROLE_LABELS
from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import Action, Callback
from handlers.common.ids import Block as BlockId
from handlers.library.blocks import crisis_blocks, surfacing_blocks, tips_blocks

NOT_SAFE = "not_safe"
WELCOME = "welcome"
# The form's first question: who the support is for (choosing switches the form in place).
FOR_ME, FOR_TEAM = "me", "team"
# Slack's most options in one select.
MAX_OPTIONS = 100
TYPICAL_WAIT = {"now": "usually within 30 minutes", "today": "usually within a few hours",
                "week": "usually within a day or two"}


def _section(text: str) -> SectionBlock:
    return SectionBlock(text=MarkdownTextObject(text=text))


def _context(text: str) -> ContextBlock:
    return ContextBlock(elements=[MarkdownTextObject(text=text)])


def _options(choices: dict[str, str]) -> list[Option]:
    return [Option(value=value, label=label) for value, label in choices.items()]


def _radio(block_id: str, label: str, choices: dict[str, str], initial: str | None
           ) -> InputBlock:
    options = _options(choices)
    return InputBlock(block_id=block_id, label=label, element=RadioButtonsElement(
        action_id=Action.FIELD, options=options,
        initial_option=next((o for o in options if o.value == initial), None)))


def _request_for(initial: str) -> InputBlock:
    """"For me" / "For my team": choosing one replaces the form with the other's."""
    options = [Option(value=FOR_ME, label="For me"),
               Option(value=FOR_TEAM, label="For my team")]
    return InputBlock(block_id=BlockId.REQUEST_FOR, label="Who is the support for?",
                      dispatch_action=True, element=RadioButtonsElement(
                          action_id=Action.REQUEST_FOR, options=options,
                          initial_option=options[0] if initial == FOR_ME else options[1]))


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
        _request_for(FOR_ME),
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


def team_request_modal(departments: Sequence[str],
                       usergroups: Sequence[tuple[str, str]] = ()) -> dict:
    """Ask for support for a team: the unit, roughly how many, how soon, what would help, and
    optionally who is on it. Nowhere to say what happened, and why.

    Cached by its lists, as the personal form is (the answer is shared: do not change it)."""
    return _team_request_modal(tuple(departments), tuple(usergroups))


@functools.lru_cache(maxsize=16)
def _team_request_modal(departments: tuple[str, ...], usergroups: tuple[tuple[str, str], ...]
                        ) -> dict:
    blocks: list[Block] = [
        _request_for(FOR_TEAM),
        _section("After a hard event, one or two trained peer supporters can come alongside "
                 "your team. This is support for people, not a review of what happened."),
        _context(":lock: There is nowhere here to describe the event or any patient, on "
                 "purpose: nobody needs to, and the bot never stores it. A group conversation "
                 "is voluntary for everyone, and it is not a review."),
    ]
    if departments:
        blocks.append(InputBlock(
            block_id=BlockId.TEAM_UNIT, label="Which unit or team?", optional=True,
            element=StaticSelectElement(
                action_id=Action.FIELD, placeholder="Choose the unit",
                options=[Option(value=d, label=d[:75]) for d in departments[:MAX_OPTIONS]])))
    blocks.extend([
        InputBlock(block_id=BlockId.TEAM_UNIT_TYPED, optional=bool(departments),
                   label="…or type its name" if departments else "Which unit or team?",
                   hint="Just its name, for example 4 West or the night team."
                   + (" Choose it from the list or type it: one of the two." if departments
                      else ""),
                   element=PlainTextInputElement(action_id=Action.FIELD,
                                                 max_length=UNIT_LENGTH)),
        _radio(BlockId.TEAM_SIZE, "Roughly how many people?",
               {key: label for key, (label, _low) in SIZES.items()}, None),
        _radio(BlockId.URGENCY, "How soon would the team like support?", URGENCIES, "today"),
        InputBlock(block_id=BlockId.TEAM_HELP, label="What would help?",
                   hint="Choose any that fit; the supporters agree the details with you.",
                   element=CheckboxesElement(action_id=Action.FIELD, options=_options(HELP))),
        _context("*Optional:* who is on the team, so each person can be offered support "
                 "privately. Nobody, you included, learns who replies."),
        InputBlock(block_id=BlockId.TEAM_PEOPLE, label="People on the team", optional=True,
                   element=UserMultiSelectElement(action_id=Action.FIELD,
                                                  max_selected_items=MAX_PEOPLE,
                                                  placeholder="Choose people")),
    ])
    if usergroups:
        blocks.append(InputBlock(
            block_id=BlockId.TEAM_USERGROUP, label="…or the team's user group", optional=True,
            element=StaticSelectElement(
                action_id=Action.FIELD, placeholder="Choose a group",
                options=[Option(value=group, label=f"@{handle}"[:75])
                         for group, handle in usergroups[:MAX_OPTIONS]])))
    blocks.append(InputBlock(
        block_id=BlockId.TEAM_CHANNEL, label="…or the team's channel", optional=True,
        element=ConversationSelectElement(
            action_id=Action.FIELD, placeholder="Choose a channel",
            filter=ConversationFilter(include=["public", "private"], exclude_bot_users=True))))
    return View(type="modal", callback_id=Callback.TEAM_REQUEST, title="Support for a team",
                submit="Ask for support", close="Cancel", blocks=blocks).to_dict()


def team_label(request: SupportRequest) -> str:
    """The unit a team request is for, escaped for mrkdwn."""
    return escape(request.requester_department or "your team")


def _seats_line(request: SupportRequest) -> str:
    return f"{request.filled} of {request.seats} supporter{'s' if request.seats > 1 else ''}"


def team_state_line(request: SupportRequest) -> str:
    """Where a team request stands, as its caller reads it."""
    if request.state == RequestState.ASSIGNED:
        return ("Two supporters have accepted and will be in touch in your group message."
                if request.seats > 1 else
                "A supporter has accepted and will be in touch in your group message.")
    if request.state == RequestState.ESCALATED:
        return ("Every supporter on duty is busy right now, so a program coordinator has been "
                "asked to find supporters for your team.")
    if request.state == RequestState.CANCELLED:
        return "You withdrew this request for your team. You can ask again at any time."
    if request.state == RequestState.CLOSED:
        return "Your team's support is closed. You can ask again at any time."
    wait = TYPICAL_WAIT[request.urgency]
    if request.seats > 1 and request.filled:
        return f"One supporter has accepted; we are finding the second, {wait}."
    if request.seats > 1:
        return f"We are finding two supporters for your team, {wait}."
    return f"We are finding a supporter for your team, {wait}."


def _state_line(request: SupportRequest) -> str:
    if request.kind == RequestKind.TEAM:
        return team_state_line(request)
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


def withdrawn_view(team: bool = False) -> dict:
    """The open-request modal once the request is withdrawn."""
    whose = "Your request for your team" if team else "Your request"
    return View(type="modal", title="Peer support", close="Close", blocks=[_section(
        f"{whose} is withdrawn. You can ask again at any time.")]).to_dict()


def open_request_modal(request: SupportRequest) -> dict:
    """Someone who already has a request is shown it, with a way to withdraw it."""
    blocks: list[Block] = [
        _section("*You already have a request open.*\n" + _state_line(request)),
        _context(f"{URGENCIES[request.urgency]} · {connection_label(request)}"),
        ActionsBlock(elements=[ButtonElement(text="Withdraw my request",
                                             action_id=Action.CANCEL_REQUEST,
                                             value=str(request.id), style="danger"),
                                 ButtonElement(text="Support for my team",
                                               action_id=Action.REQUEST_TEAM_SUPPORT)]),
        _context("You can still ask for support for your team, whatever happens with yours."),
    ]
    return View(type="modal", callback_id=Callback.OPEN_REQUEST, title="Peer support",
                close="Close", blocks=blocks).to_dict()


def team_request_view(request: SupportRequest) -> dict:
    """The team form once sent (or sent twice): where the request stands, and Withdraw."""
    blocks: list[Block] = [
        _section(f"*Thank you. Your request for {team_label(request)} is in.*\n"
                 + team_state_line(request)),
        _context("Updates come in a message from the app. Taking part is voluntary for "
                 "everyone on the team, and it is not a review of what happened."),
    ]
    if request.state in (RequestState.OPEN, RequestState.ESCALATED, RequestState.ASSIGNED):
        blocks.append(ActionsBlock(elements=[ButtonElement(
            text="Withdraw this request", action_id=Action.CANCEL_REQUEST,
            value=str(request.id))]))
    return View(type="modal", callback_id=Callback.OPEN_REQUEST, title="Support for a team",
                close="Close", blocks=blocks).to_dict()


def requester_status(request: SupportRequest, surfacing: Surfacing) -> dict:
    """The requester's DM: what happens next, how long it takes, help meanwhile, and cancel
    (of a team request: the caller's, speaking of the team)."""
    team = request.kind == RequestKind.TEAM
    heading = "Support for your team" if team else "Your request for peer support"
    blocks: list[dict] = to_dicts([HeaderBlock(text=heading)])
    lines = [_state_line(request)]
    if team:
        lines.insert(0, f"*{team_label(request)}*")
    if request.crisis and request.state in (RequestState.OPEN, RequestState.ESCALATED):
        lines.insert(0, ":rotating_light: *You said you are not safe right now.* Please call or "
                        "text *988* now, or your local emergency number. A program coordinator "
                        "has been alerted and every available supporter has been asked.")
    blocks.extend(to_dicts([_section("\n".join(lines))]))
    if request.state in (RequestState.OPEN, RequestState.ESCALATED, RequestState.ASSIGNED):
        blocks.extend(to_dicts([ActionsBlock(elements=[ButtonElement(
            text="Withdraw this request" if team else "Withdraw my request",
            action_id=Action.CANCEL_REQUEST, value=str(request.id))])]))
    if team and request.state in (RequestState.OPEN, RequestState.ESCALATED,
                                  RequestState.ASSIGNED):
        blocks.extend(to_dicts([_context(
            "Taking part is voluntary for everyone on the team, and it is not a review of what "
            "happened: nobody needs to describe the event or any patient.")]))
    if request.state in (RequestState.OPEN, RequestState.ESCALATED):
        blocks.extend(surfacing_blocks(surfacing, resources_heading="While you wait"))
    return {"text": f"{heading}: " + _state_line(request), "blocks": blocks}


def connection_label(request: SupportRequest) -> str:
    """How the person wants to connect, or that it is support for a team."""
    if request.kind == RequestKind.TEAM:
        return TEAM_LABEL
    return CONNECTIONS[request.connection]


def _team_facts(request: SupportRequest, team: TeamRequest | None) -> str:
    facts = [f"*Unit:* {team_label(request)}"]
    if team is not None and team.size in SIZES:
        facts.append(f"*Roughly:* {SIZES[team.size][0].lower()} people")
    facts.append(f"*When:* {URGENCIES[request.urgency]}")
    if team is not None and asked_for(team):
        facts.append("*What would help:* " + "; ".join(asked_for(team)))
    facts.append("*Supporters:* " + ("two, together" if request.seats > 1 else "one"))
    return "\n".join(facts)


def _request_facts(request: SupportRequest, team: TeamRequest | None = None) -> str:
    if request.kind == RequestKind.TEAM:
        return _team_facts(request, team)
    facts = [f"*When:* {URGENCIES[request.urgency]}", f"*How:* {connection_label(request)}"]
    if request.requester_role:
        facts.append(f"*Their role:* {ROLE_LABELS.get(request.requester_role, 'Other')}")
    if request.requester_department and not request.outside_department:
        facts.append(f"*Their department:* {escape(request.requester_department)}")
    if request.crisis:
        facts.append(":rotating_light: *They said they are not safe right now.*")
    return "\n".join(facts)


def offer_message(request: SupportRequest, offer_id: int, *, direct: bool = False,
                  team: TeamRequest | None = None) -> dict:
    """A supporter's offer: the facts they need to decide, never who asked or what happened
    (of a team request: the unit, roughly how many, and what would help)."""
    if request.kind == RequestKind.TEAM:
        lead = ("A program coordinator has asked you personally to support a team."
                if direct else "A team has asked for support.")
        note = ("You will learn who called it only if you accept. If you work closely with "
                "this team or were involved in the event, please decline.")
    else:
        lead = ("A program coordinator has asked you personally to take a request."
                if direct else "Someone has asked for peer support.")
        note = ("You will learn who it is only if you accept. If you know them or were "
                "involved in the event, please decline.")
    blocks = [
        _section(f"*{lead}*\n{_request_facts(request, team)}"),
        _context(note),
        ActionsBlock(elements=[
            ButtonElement(text="Accept", style="primary", action_id=Action.ACCEPT_OFFER,
                          value=str(offer_id)),
            ButtonElement(text="Decline", action_id=Action.DECLINE_OFFER, value=str(offer_id)),
        ]),
    ]
    text = "A team has asked for support" if request.kind == RequestKind.TEAM \
        else "A colleague has asked for peer support"
    return {"text": text, "blocks": to_dicts(blocks)}


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
    "team_closed": "The other supporter has closed this team's support. Thank you for being "
                   "there.",
}
# The same notes, worded for a team request where they differ.
TEAM_NOTICES = {
    "withdrawn": "The person who asked for their team's support has withdrawn it. Thank you.",
}
# An alert's outcome once the request no longer needs a coordinator, by the request's state.
ALERT_OUTCOMES = {
    "cancelled": "Withdrawn by the person who asked.",
    "closed": "Placed, and since closed.",
}


def offer_ended(how: str) -> dict:
    """An offer message updated in place once it can no longer be answered."""
    return {"text": OFFER_ENDINGS[how], "blocks": to_dicts([_section(OFFER_ENDINGS[how])])}


def _team_introduction(request: SupportRequest, supporter_ids: Sequence[str],
                       team: TeamRequest | None) -> dict:
    requester = f"<@{request.requester_id}>"
    names = [f"<@{s}>" for s in supporter_ids or [request.supporter_id or ""]]
    who = (f"{names[0]} is a trained peer supporter and will support {team_label(request)}"
           if len(names) == 1 else
           f"{' and '.join(names)} are trained peer supporters and will support "
           f"{team_label(request)} together")
    asked = [label.lower() for label in asked_for(team)] if team is not None else []
    lines = [f"Hello {requester}: {who}."]
    if asked:
        lines.append("You asked for: " + "; ".join(asked) + ".")
    if team is not None and team.group:
        lines.append("For the group conversation, your supporters will suggest a few times "
                     "here, and you pick the one that suits the team.")
    lines.append("Please agree here what would help and when. Taking part is voluntary for "
                 "everyone on the team, and it is not a review of what happened: nobody needs "
                 "to describe the event or any patient.")
    text = "\n".join(lines)
    return {"text": text, "blocks": to_dicts([_section(text)])}


def introduction(request: SupportRequest, supporter_ids: Sequence[str] = (),
                 team: TeamRequest | None = None) -> dict:
    """The group message that introduces the two people, worded for how they want to connect
    (for a team: the caller and every supporter who answers together, and what was asked)."""
    requester, supporter = f"<@{request.requester_id}>", f"<@{request.supporter_id}>"
    if request.kind == RequestKind.TEAM:
        return _team_introduction(request, supporter_ids, team)
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


GROUP_NOTE = ("A group conversation is voluntary for everyone, and it is not a retelling of the "
              "event or a review: keep to how people are doing, and let each person speak or "
              "stay quiet.")


def team_case(request: SupportRequest, team: TeamRequest | None, supporter_ids: Sequence[str],
              surfacing: Surfacing) -> dict:
    """A seat holder's private message for a team request: the facts, Close, Hand it back,
    and Propose times when a group conversation was asked for; tips and referral lines."""
    buttons = [
        ButtonElement(text="Close", style="primary", action_id=Action.OPEN_CLOSE,
                      value=str(request.id)),
        ButtonElement(text="Hand it back", action_id=Action.HAND_BACK, value=str(request.id)),
    ]
    if team is not None and team.group:
        buttons.insert(0, ButtonElement(text="Propose times", action_id=Action.PROPOSE_TIMES,
                                        value=str(request.id)))
    intro = (f"Your introduction to <@{request.requester_id}>, who asked for their team, is in "
             + ("a group message with both supporters." if len(supporter_ids) > 1
                else "a group message."))
    blocks = to_dicts([
        HeaderBlock(text="You are supporting a team"),
        _section(f"{_team_facts(request, team)}\n{intro}"),
        ActionsBlock(elements=buttons),
        _context("Hand it back if you work closely with this team or were involved in the "
                 "event; someone else will be found, and the team will be told kindly."),
        _context(GROUP_NOTE),
    ])
    blocks.extend(to_dicts([HeaderBlock(text="Before you meet the team")]))
    blocks.extend(tips_blocks(surfacing.tips))
    blocks.extend(crisis_blocks(surfacing.crisis, "If someone needs more than peer support"))
    return {"text": "You are supporting a team", "blocks": blocks}


def team_close_modal(request_id: int) -> dict:
    """A few aggregate-only questions when a seat holder closes a team's support: roughly how
    many took part, roughly how long, and no names or free text."""
    return View(type="modal", callback_id=Callback.CLOSE_TEAM_REQUEST,
                title="Close team support", submit="Close", close="Cancel",
                private_metadata=str(request_id), blocks=[
                    _context("Your answers are counted only in program totals, never shown for "
                             "one team. Closing it closes it for everyone supporting the team."),
                    _radio(BlockId.PEOPLE_PRESENT, "Roughly how many people took part?",
                           PRESENT, None),
                    _radio(BlockId.DURATION, "Roughly how long, in all?", DURATIONS, None),
                    _radio(BlockId.REFERRED, "Did you suggest professional help to anyone?",
                           {"yes": "Yes", "no": "No"}, None),
                    _radio(BlockId.NEED_MET, "In your judgement, did it meet the team's need?",
                           NEED_MET, None),
                ]).to_dict()


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


def _team_headline(request: SupportRequest, team: TeamRequest | None) -> str:
    size = f" (roughly {SIZES[team.size][0].lower()} people)" \
        if team is not None and team.size in SIZES else ""
    return f"A team request for {team_label(request)}{size} has no supporters yet"


def coordinator_alert(request: SupportRequest, *, waited: timedelta, asked: int,
                      team: TeamRequest | None = None) -> dict:
    """The one escalation alert per coordinator, kept current in place: how long the person
    has waited, how soon they wanted someone, how many were asked, and ways to place it. Who
    asked stays private unless they said they are not safe (of a team request: the unit and
    its size are shown, who called it never)."""
    if request.kind == RequestKind.TEAM:
        lead = f"*{_team_headline(request, team)}*: nobody eligible accepted in time."
    elif request.crisis:
        lead = (f":rotating_light: *<@{request.requester_id}> has said they are not safe right "
                "now.* They have been shown the crisis lines and every available supporter has "
                "been asked. Please make sure a person reaches them now.")
    else:
        lead = "*A request for peer support has no supporter yet*: nobody eligible accepted in time."
    status = (f"*Waiting:* {waited_text(waited)} · *Supporters asked:* {asked} · "
              f"*Wanted:* {URGENCIES[request.urgency]}")
    if request.kind == RequestKind.TEAM:
        status += f" · *Seats filled:* {request.filled} of {request.seats}"
    blocks = [
        _section(f"{lead}\n{_request_facts(request, team)}"),
        _context(status),
        ActionsBlock(block_id=f"alert:{request.id}", elements=[
            ButtonElement(text="Take a seat myself" if request.kind == RequestKind.TEAM
                          else "Take it myself", style="primary",
                          action_id=Action.TAKE_REQUEST, value=str(request.id)),
            UserSelectElement(action_id=Action.PICK_SUPPORTER,
                              placeholder="Offer it to a supporter…"),
        ]),
    ]
    return {"text": "A peer support request needs a coordinator", "blocks": to_dicts(blocks)}


def alert_renotice(waited: timedelta) -> dict:
    """A reply in the alert's thread, so the coordinator is notified again without a new alert."""
    text = f"Still no supporter after {waited_text(waited)}. The alert above is up to date."
    return {"text": text}


def alert_outcome(request: SupportRequest, supporter_ids: Sequence[str] = ()) -> str:
    """What an alert says once the request no longer needs a coordinator (of a team
    request: every seat holder)."""
    if request.state == RequestState.ASSIGNED and request.kind == RequestKind.TEAM:
        names = " and ".join(f"<@{s}>" for s in supporter_ids or [request.supporter_id or ""])
        return f"Placed: {names} {'have' if len(supporter_ids) > 1 else 'has'} this team " \
               f"request for {team_label(request)}."
    if request.state == RequestState.ASSIGNED:
        return f"Placed: <@{request.supporter_id}> has this request."
    return ALERT_OUTCOMES.get(request.state, "This request no longer needs a coordinator.")


def _digest_line(request: SupportRequest, waited: timedelta, team: TeamRequest | None) -> str:
    if request.kind == RequestKind.TEAM:
        return (f"• {_team_headline(request, team)}: {URGENCIES[request.urgency]}, waiting "
                f"{waited_text(waited)}, seats filled {request.filled} of {request.seats}")
    return (f"• {URGENCIES[request.urgency]}, waiting {waited_text(waited)}"
            + (" · :rotating_light: not safe" if request.crisis else ""))


def unplaced_digest(requests: Sequence[tuple[SupportRequest, timedelta]],
                    teams: Mapping[int, TeamRequest] | None = None) -> dict:
    """The daily list of every request still without a supporter, longest wait first (a
    team's: its unit, roughly how many, and seats filled; never who called it)."""
    lines = [_digest_line(r, w, (teams or {}).get(r.id)) for r, w in requests]
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
