"""Team requests: anyone can ask for support for their team after a hard event.

A team request is a request of kind `team` with one or two seats: supporters answer it
together, and it is placed when every seat is held (bot.requests.service takes the seats under
the request's lock). What it records is the unit, roughly how many people, how soon and what
would help: never what happened, any patient, or who on the team is affected.
"""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Iterable
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.infra.db import insert_for
from bot.infra.models import (
    ACTIVE_STATES,
    OutreachState,
    RequestKind,
    RequestState,
    SupportRequest,
    TeamRequest,
)
from bot.requests import service
from bot.requests.service import URGENCIES, AlreadyOpen, RequestError, fits, record_status

# Roughly how many people: the key stored, the words shown, and the range's lower bound.
SIZES = {"2_5": ("2 to 5", 2), "6_15": ("6 to 15", 6), "16_30": ("16 to 30", 16),
         "31_plus": ("More than 30", 31)}
# Roughly how many took part, as the supporter closing it judges: a range, never who.
PRESENT = {"1": "1", **{key: label for key, (label, _low) in SIZES.items()}}
# What would help, as the form offers it (each a TeamRequest column of the same name).
HELP = {"visit": "A supporter comes to the unit",
        "group": "A group conversation at a time the team picks",
        "private": "Each person offered private support"}
TEAM_LABEL = "Support for a team"
UNIT_LENGTH = 80
# The most people a caller may name one by one (a larger team is named by its group or channel).
MAX_PEOPLE = 100
# Slack's ids by what they name: people (U, or W on Enterprise Grid), channels (C, or G for an
# older private channel; never D, a direct message) and user groups (S).
_PERSON = re.compile(r"^[UW][A-Z0-9]{1,30}$")
_CHANNEL = re.compile(r"^[CG][A-Z0-9]{1,30}$")
_USERGROUP = re.compile(r"^S[A-Z0-9]{1,30}$")


class TeamFormError(RequestError):
    """A team form that cannot be sent as it is; `field` names the question it is about
    (unit, size, urgency, help, people, usergroup, channel)."""

    def __init__(self, message: str, field: str):
        super().__init__(message)
        self.field = field


@dataclass(frozen=True)
class TeamForm:
    """What the team form asks: the unit, roughly how many, how soon, what would help."""

    unit: str
    size: str
    urgency: str
    visit: bool = False
    group: bool = False
    private: bool = False
    people: tuple[str, ...] = ()  # who is on the team, when the caller named them
    usergroup: str | None = None  # ...or a user group whose members are the team
    channel: str | None = None  # ...or a channel whose members are the team

    def __post_init__(self) -> None:
        # A name pasted from elsewhere may hold a no-break or thin space the caller cannot see:
        # it is kept with plain ones, as typed. Control characters are still refused by check().
        plain = "".join(" " if unicodedata.category(c) == "Zs" else c for c in self.unit)
        object.__setattr__(self, "unit", " ".join(part for part in plain.split(" ") if part))

    def check(self) -> None:
        """Refuse values the form could not have sent, naming the question each is about."""
        if not self.unit.strip() or not fits(self.unit.strip(), UNIT_LENGTH):
            raise TeamFormError(f"Say which unit or team: up to {UNIT_LENGTH} letters, with no "
                                "special characters.", "unit")
        if self.size not in SIZES:
            raise TeamFormError("Choose roughly how many people are on the team.", "size")
        if self.urgency not in URGENCIES:
            raise TeamFormError("Choose how soon the team would like support.", "urgency")
        if not (self.visit or self.group or self.private):
            raise TeamFormError("Choose at least one thing that would help.", "help")
        if len(self.people) > MAX_PEOPLE:
            raise TeamFormError(f"Name up to {MAX_PEOPLE} people, or choose the team's group or "
                                "channel instead.", "people")
        if not all(isinstance(p, str) and _PERSON.match(p) for p in self.people):
            raise TeamFormError("Choose the team's people from the list.", "people")
        if self.usergroup is not None and not _USERGROUP.match(self.usergroup):
            raise TeamFormError("Choose the team's group from the list.", "usergroup")
        if self.channel is not None and not _CHANNEL.match(self.channel):
            raise TeamFormError("Choose a channel the team is in (not a direct message).",
                                "channel")

    @property
    def named(self) -> bool:
        """Whether the caller said who is on the team (people, a group or a channel)."""
        return bool(self.people or self.usergroup or self.channel)


def seats_for(size: str, pair_from: int) -> int:
    """Supporters a team of this size gets: two from `pair_from` people on, else one."""
    return 2 if SIZES[size][1] >= pair_from else 1


def create_team(session: Session, caller_id: str, form: TeamForm, *, seats: int, now: datetime,
                source_key: str | None = None) -> SupportRequest:
    """Record a team request and the caller's first status message, in the caller's
    transaction. The same submission twice makes one request (AlreadyOpen shows it)."""
    form.check()
    if seats not in (1, 2):
        raise RequestError("A team request is answered by one or two supporters.")
    new_id = session.execute(insert_for(session, SupportRequest).values(
        source_key=source_key, requester_id=caller_id, urgency=form.urgency, connection="team",
        requester_department=form.unit.strip(), kind=RequestKind.TEAM, seats=seats, filled=0,
        state=RequestState.OPEN, wave=0, version=1, escalations=0, created_at=now,
    ).on_conflict_do_nothing().returning(SupportRequest.id)).scalar()
    if new_id is None:
        seen = session.scalars(select(SupportRequest).where(
            SupportRequest.source_key == source_key)).first() if source_key else None
        if seen is None:
            raise RequestError("Please send the form again.")
        raise AlreadyOpen(seen)
    # Outreach to each member needs someone named; with a group conversation too, it waits
    # for the time to be picked, so each member's one note can carry it.
    outreach = OutreachState.NONE if not (form.private and form.named) \
        else OutreachState.WAITING
    session.add(TeamRequest(
        request_id=new_id, unit=form.unit.strip(), size=form.size, visit=form.visit,
        group=form.group, private=form.private,
        people=sorted(set(form.people)) or None, usergroup_id=form.usergroup,
        channel_id=form.channel, outreach_state=outreach))
    request = session.get(SupportRequest, new_id)
    assert request is not None
    record_status(session, request, now)
    return request


def asked_for(team: TeamRequest) -> list[str]:
    """What would help, in the form's words, in the form's order."""
    return [label for key, label in HELP.items() if getattr(team, key)]


def of_requests(session: Session, request_ids: Iterable[int]) -> dict[int, TeamRequest]:
    """What each of these team requests asked for, by request id (in one query)."""
    ids = sorted(set(request_ids))
    if not ids:
        return {}
    return {t.request_id: t for t in session.scalars(
        select(TeamRequest).where(TeamRequest.request_id.in_(ids)))}


def placed(session: Session) -> list[SupportRequest]:
    """Team requests with every seat held and not yet closed, oldest first."""
    return list(session.scalars(select(SupportRequest).where(
        SupportRequest.kind == RequestKind.TEAM, SupportRequest.state == RequestState.ASSIGNED)
        .order_by(SupportRequest.created_at)))


def called_by(session: Session, caller_id: str) -> list[SupportRequest]:
    """The team requests this person called that are still open, escalated or placed."""
    return list(session.scalars(select(SupportRequest).where(
        SupportRequest.kind == RequestKind.TEAM, SupportRequest.requester_id == caller_id,
        SupportRequest.state.in_(ACTIVE_STATES)).order_by(SupportRequest.id)))


def close_team(session: Session, request_id: int, user_id: str, *, now: datetime,
               people_present: str, duration: str, referred: bool, need_met: str
               ) -> SupportRequest:
    """A seat holder closes a team request with aggregate-only answers: roughly how many took
    part (a range of PRESENT), how long, whether professional help was suggested, and whether
    it met the team's need. The team's ranges are known here, so they are checked here."""
    if people_present not in PRESENT:
        raise TeamFormError("Choose roughly how many people took part.", "people_present")
    return service.close(session, request_id, user_id, now=now, duration=duration,
                         referred=referred, need_met=need_met, people_present=people_present)
