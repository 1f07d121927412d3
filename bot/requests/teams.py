"""Team requests: anyone can ask for support for their team after a hard event.

A team request is a request of kind `team` with one or two seats: supporters answer it
together, and it is placed when every seat is held (bot.requests.service takes the seats under
the request's lock). What it records is the unit, roughly how many people, how soon and what
would help: never what happened, any patient, or who on the team is affected.
"""

from __future__ import annotations

import re
from dataclasses import dataclass
from datetime import datetime

from sqlalchemy import select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.infra.models import (
    OutreachState,
    RequestKind,
    RequestState,
    SupportRequest,
    TeamRequest,
)
from bot.requests.service import URGENCIES, AlreadyOpen, RequestError, fits, record_status

# Roughly how many people: the key stored, the words shown, and the range's lower bound.
SIZES = {"2_5": ("2 to 5", 2), "6_15": ("6 to 15", 6), "16_30": ("16 to 30", 16),
         "31_plus": ("More than 30", 31)}
TEAM_LABEL = "Support for a team"
# The most people a caller may name one by one (a larger team is named by its group or channel).
MAX_PEOPLE = 100
_SLACK_ID = re.compile(r"^[A-Z0-9]{2,31}$")


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

    def check(self) -> None:
        """Refuse values the form could not have sent."""
        if not self.unit.strip() or not fits(self.unit.strip(), 80):
            raise RequestError("Say which unit or team: up to 80 letters, no special characters.")
        if self.size not in SIZES or self.urgency not in URGENCIES:
            raise RequestError("Choose roughly how many people, and how soon.")
        if not (self.visit or self.group or self.private):
            raise RequestError("Choose at least one thing that would help.")
        if len(self.people) > MAX_PEOPLE:
            raise RequestError(f"Name up to {MAX_PEOPLE} people, or choose the team's group or "
                               "channel instead.")
        for value in (*self.people, self.usergroup, self.channel):
            if value is not None and not _SLACK_ID.match(value):
                raise RequestError("Choose the team's people, group or channel from the lists.")

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
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    new_id = session.execute(insert(SupportRequest).values(
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
