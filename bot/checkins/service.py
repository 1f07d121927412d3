"""Follow-up check-ins: planned when someone is connected, placed inside their own hours,
sent once, answered with one word. Never any free text."""

from __future__ import annotations

import enum
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import select, tuple_, update
from sqlalchemy.orm import Session

from bot.checkins.timers import CHECKIN, checkin_key
from bot.infra import duework
from bot.infra.clock import zone
from bot.infra.models import (
    CheckIn,
    CheckInState,
    ContactHours,
    Offer,
    OfferState,
    RequestKind,
    RequestState,
    Seat,
    SeatState,
    SupportRequest,
)

ANSWERS = {"better": "Doing better", "same": "About the same", "struggling": "Struggling",
           "talk_again": "I'd like to talk to someone again", "stop": "Stop these check-ins"}
# A team's caller is asked about the team; their one check-in has nothing to stop.
TEAM_ANSWERS = {"better": "Doing better", "same": "About the same", "struggling": "Struggling"}
# Recorded when a team's caller asks for another session without answering first.
ANOTHER_SESSION = "another_session"
ANSWER_LABELS = {**ANSWERS, ANOTHER_SESSION: "The team could use another session"}
DEFAULT_START, DEFAULT_END = 9 * 60, 18 * 60
SNOOZE = timedelta(days=1)


class CheckInError(ValueError):
    """A check-in action that cannot be done; the message is for the person."""


class Role(enum.StrEnum):
    """Whose check-in it is, which decides what it asks and what an answer sets off."""

    PERSONAL = "personal"  # someone who asked for support for themselves
    CALLER = "caller"  # who called for their team: asked how the team is doing
    MEMBER = "member"  # a team member who opted in: asked about themselves, named to nobody


def roles_of(session: Session, found: Sequence[CheckIn]) -> dict[int, Role]:
    """Each check-in's role, by id, in one query. A check-in on a team request is a member's
    unless it is the request's caller's (also once the caller's id is forgotten: a member's
    check-in names nobody and tells no supporter, the safe side)."""
    request_ids = {c.request_id for c in found}
    requests = {row.id: (row.kind, row.requester_id) for row in session.execute(
        select(SupportRequest.id, SupportRequest.kind, SupportRequest.requester_id)
        .where(SupportRequest.id.in_(request_ids)))} if request_ids else {}
    roles = {}
    for checkin in found:
        kind, requester = requests.get(checkin.request_id, (RequestKind.PERSONAL, None))
        if kind != RequestKind.TEAM:
            roles[checkin.id] = Role.PERSONAL
        elif checkin.user_id is not None and checkin.user_id == requester:
            roles[checkin.id] = Role.CALLER
        else:
            roles[checkin.id] = Role.MEMBER
    return roles


def role_of(session: Session, checkin: CheckIn) -> Role:
    """One check-in's role (see roles_of)."""
    return roles_of(session, [checkin])[checkin.id]


def choices_for(role: Role) -> dict[str, str]:
    """The answers a check-in offers: about the team to its caller, else about oneself."""
    return TEAM_ANSWERS if role == Role.CALLER else ANSWERS


def team_supporters(session: Session, request: SupportRequest) -> list[str]:
    """Who supported a team: the seats held now or until the request ended, not handed back
    (bot.requests owns seats; check-ins only read them, in the order they were taken)."""
    handed_back = select(Offer.supporter_id).where(
        Offer.request_id == request.id, Offer.state == OfferState.HANDED_BACK,
        Offer.supporter_id.is_not(None))
    ended = Seat.state == SeatState.HELD
    if request.state in (RequestState.CLOSED, RequestState.CANCELLED) and request.closed_at:
        ended = ended | (Seat.left_at == request.closed_at)
    found = session.scalars(select(Seat.supporter_id).where(
        Seat.request_id == request.id, ended, Seat.supporter_id.not_in(handed_back))
        .order_by(Seat.id))
    return list(dict.fromkeys(s for s in found if s))


def within(local_minute: int, start: int, end: int) -> bool:
    """Whether a minute of the day falls in a window (end before start runs overnight)."""
    if start < end:
        return start <= local_minute < end
    return local_minute >= start or local_minute < end


def place(moment: datetime, tz: str, start: int, end: int) -> datetime:
    """`moment` if it falls inside the person's hours, otherwise the next moment that does.

    Hours are wall-clock times in the person's zone, so the answer stays right across
    daylight-saving changes (a 09:00 start is 09:00 local before and after the change).
    """
    zone_info = zone(tz)
    local = moment.astimezone(zone_info)
    if within(local.hour * 60 + local.minute, start, end):
        return moment
    opening = time(start // 60, start % 60)
    candidate = datetime.combine(local.date(), opening, tzinfo=zone_info)
    if candidate <= local:
        candidate = datetime.combine(local.date() + timedelta(days=1), opening, tzinfo=zone_info)
    # A start inside a skipped hour (spring forward) lands on the first real moment after it.
    return candidate.astimezone(moment.tzinfo)


def hours_of(session: Session, user_id: str, *, default_tz: str, now: datetime) -> ContactHours:
    """The person's check-in hours, created with the defaults the first time."""
    hours = session.get(ContactHours, user_id)
    if hours is None:
        hours = ContactHours(user_id=user_id, tz=default_tz, start_minute=DEFAULT_START,
                             end_minute=DEFAULT_END, updated_at=now)
        session.add(hours)
        session.flush()
    return hours


def _timer(session: Session, checkin: CheckIn, now: datetime) -> None:
    duework.schedule(session, CHECKIN, checkin.due_at, now=now,
                     payload={"checkin_id": checkin.id, "version": checkin.version},
                     key=checkin_key(checkin.id, checkin.version))


def plan(session: Session, request: SupportRequest, *, now: datetime,
         offsets_days: Sequence[float], default_tz: str) -> list[CheckIn]:
    """Plan the check-ins for a request whose person welcomed them (none otherwise)."""
    if not request.followups or not request.requester_id:
        return []
    return plan_person(session, request.id, request.requester_id, now=now,
                       offsets_days=offsets_days, default_tz=default_tz)


def plan_person(session: Session, request_id: int, user_id: str, *, now: datetime,
                offsets_days: Sequence[float], default_tz: str) -> list[CheckIn]:
    """Plan one person's check-ins on a request (for a team request, its caller or a member
    who opted in), each placed inside their hours; none if they have a plan on it already."""
    already = session.scalars(select(CheckIn.id).where(
        CheckIn.request_id == request_id, CheckIn.user_id == user_id)).first()
    if already is not None:
        return []  # a repeated connection (hand-back and re-accept) keeps the first plan
    hours = hours_of(session, user_id, default_tz=default_tz, now=now)
    planned = []
    for number, days in enumerate(offsets_days, start=1):
        nominal = now + timedelta(days=days)
        checkin = CheckIn(request_id=request_id, user_id=user_id, number=number,
                          planned_for=nominal,
                          due_at=place(nominal, hours.tz, hours.start_minute, hours.end_minute),
                          version=0, state=CheckInState.SCHEDULED)
        session.add(checkin)
        planned.append(checkin)
    session.flush()
    for checkin in planned:
        _timer(session, checkin, now)
    return planned


def move(session: Session, checkin: CheckIn, due_at: datetime, *, now: datetime) -> None:
    """Give a scheduled check-in a new time (its old timer becomes a no-op)."""
    duework.cancel(session, now=now, key=checkin_key(checkin.id, checkin.version))
    checkin.version += 1
    checkin.due_at = due_at
    _timer(session, checkin, now)


@dataclass
class DueCheckIns:
    """Check-ins whose timers fell due, sorted by what to do with each."""

    send: list[CheckIn] = field(default_factory=list)  # inside the person's hours now
    retry: list[CheckIn] = field(default_factory=list)  # claimed by an attempt that failed
    move: list[tuple[CheckIn, datetime]] = field(default_factory=list)  # to the next good time


def sort_due(session: Session, versions: Mapping[int, int], *, now: datetime,
             default_tz: str) -> DueCheckIns:
    """Load the check-ins whose timers fired (id -> the version each timer was set for) and sort
    them; ones moved, answered, cancelled or sent since are left out. Reads only."""
    due = DueCheckIns()
    found = list(session.scalars(select(CheckIn).where(CheckIn.id.in_(versions))))
    hours = {h.user_id: h for h in session.scalars(select(ContactHours).where(
        ContactHours.user_id.in_({c.user_id for c in found if c.user_id})))}
    for checkin in sorted(found, key=lambda c: c.id):
        if not checkin.user_id or checkin.version != versions[checkin.id] or \
                checkin.state not in (CheckInState.SCHEDULED, CheckInState.SENDING):
            continue
        if checkin.state == CheckInState.SENDING:
            due.retry.append(checkin)
            continue
        stored = hours.get(checkin.user_id)
        tz, start, end = (stored.tz, stored.start_minute, stored.end_minute) if stored else \
            (default_tz, DEFAULT_START, DEFAULT_END)
        placed = place(now, tz, start, end)
        if placed > now:  # late (the clock was down), or the person changed their hours
            due.move.append((checkin, placed))
        else:
            due.send.append(checkin)
    return due


def claim_for_sending(session: Session, due: Sequence[CheckIn]) -> set[int]:
    """Mark scheduled check-ins as being sent, each only if it still has the version it was
    loaded with (not moved meanwhile); returns the ids this call won (one process wins each)."""
    if not due:
        return set()
    return set(session.scalars(
        update(CheckIn)
        .where(tuple_(CheckIn.id, CheckIn.version).in_([(c.id, c.version) for c in due]),
               CheckIn.state == CheckInState.SCHEDULED)
        .values(state=CheckInState.SENDING).returning(CheckIn.id)
        .execution_options(synchronize_session=False)
    ))


def mark_sent(session: Session, checkin: CheckIn, channel: str, ts: str, now: datetime) -> None:
    """Record where the check-in message went."""
    checkin.state, checkin.channel, checkin.ts, checkin.sent_at = \
        CheckInState.SENT, channel, ts, now


def cancel_remaining(session: Session, *, user_id: str, now: datetime) -> int:
    """Cancel every check-in still to come for a person (they said stop, or left Slack)."""
    remaining = list(session.scalars(select(CheckIn).where(
        CheckIn.user_id == user_id, CheckIn.state == CheckInState.SCHEDULED)))
    for checkin in remaining:
        duework.cancel(session, now=now, key=checkin_key(checkin.id, checkin.version))
        checkin.state = CheckInState.CANCELLED
    return len(remaining)


def upcoming(session: Session, user_id: str) -> list[CheckIn]:
    """A person's check-ins still to come, soonest first."""
    return list(session.scalars(select(CheckIn).where(
        CheckIn.user_id == user_id, CheckIn.state == CheckInState.SCHEDULED)
        .order_by(CheckIn.due_at)))


def _own(session: Session, checkin_id: int, user_id: str) -> CheckIn:
    checkin = session.get(CheckIn, checkin_id)
    if checkin is None or checkin.user_id != user_id:
        raise CheckInError("That check-in is not yours.")
    return checkin


def _mark_answered(session: Session, checkin: CheckIn, choice: str, now: datetime) -> bool:
    """The guarded change from sent to answered: of two clicks at once, one wins."""
    won = session.execute(update(CheckIn).where(
        CheckIn.id == checkin.id, CheckIn.state == CheckInState.SENT)
        .values(state=CheckInState.ANSWERED, answer=choice, answered_at=now)
        .execution_options(synchronize_session=False)).rowcount == 1
    session.refresh(checkin)
    return won


def _already(checkin: CheckIn) -> CheckInError:
    label = ANSWER_LABELS.get(checkin.answer or "", "")
    return CheckInError(f"You already answered “{label}”. Thank you." if label else
                        "You already answered. Thank you.")


def answer(session: Session, checkin_id: int, user_id: str, choice: str, *, now: datetime
           ) -> CheckIn:
    """Record the person's one-word answer; a second click keeps the first answer."""
    if choice not in ANSWERS:
        raise CheckInError("That is not one of the answers.")
    checkin = _own(session, checkin_id, user_id)
    if choice not in choices_for(role_of(session, checkin)):
        raise CheckInError("That is not one of the answers.")
    if checkin.state == CheckInState.ANSWERED:
        raise _already(checkin)
    if checkin.state != CheckInState.SENT:
        raise CheckInError("That check-in is no longer open.")
    if not _mark_answered(session, checkin, choice, now):
        raise _already(checkin) if checkin.state == CheckInState.ANSWERED else \
            CheckInError("That check-in is no longer open.")
    if choice == "stop":
        cancel_remaining(session, user_id=user_id, now=now)
    return checkin


def for_another_session(session: Session, checkin_id: int, user_id: str) -> CheckIn:
    """The check-in a team's caller asks for another session from: only they may, once it
    was sent (answered or not). Reads only."""
    checkin = _own(session, checkin_id, user_id)
    if role_of(session, checkin) != Role.CALLER:
        raise CheckInError("That button is not yours.")
    if checkin.state not in (CheckInState.SENT, CheckInState.ANSWERED):
        raise CheckInError("That check-in is no longer open.")
    return checkin


def another_session_asked(session: Session, checkin: CheckIn, *, now: datetime) -> None:
    """Asking for another session answers the caller's check-in if nothing else did yet; an
    earlier answer stays (and a click answering meanwhile wins)."""
    if checkin.state == CheckInState.SENT:
        _mark_answered(session, checkin, ANOTHER_SESSION, now)


def snooze(session: Session, checkin_id: int, user_id: str, *, now: datetime) -> CheckIn:
    """Push a coming check-in back a day, still inside the person's hours."""
    checkin = _own(session, checkin_id, user_id)
    if checkin.state != CheckInState.SCHEDULED:
        raise CheckInError("That check-in has already been sent or cancelled.")
    hours = session.get(ContactHours, user_id)
    tz, start, end = (hours.tz, hours.start_minute, hours.end_minute) if hours else \
        ("UTC", DEFAULT_START, DEFAULT_END)
    move(session, checkin, place(checkin.due_at + SNOOZE, tz, start, end), now=now)
    return checkin


def cancel_one(session: Session, checkin_id: int, user_id: str, *, now: datetime) -> CheckIn:
    """Cancel one coming check-in."""
    checkin = _own(session, checkin_id, user_id)
    if checkin.state != CheckInState.SCHEDULED:
        raise CheckInError("That check-in has already been sent or cancelled.")
    duework.cancel(session, now=now, key=checkin_key(checkin.id, checkin.version))
    checkin.state = CheckInState.CANCELLED
    return checkin


def set_hours(session: Session, user_id: str, *, start: int, end: int, now: datetime,
              default_tz: str, tz: str | None = None) -> ContactHours:
    """Change a person's check-in hours (and zone), and move their coming check-ins to fit."""
    if not (0 <= start < 1440 and 0 <= end < 1440) or start == end:
        raise CheckInError("Choose a start and an end that differ.")
    hours = hours_of(session, user_id, default_tz=default_tz, now=now)
    hours.start_minute, hours.end_minute, hours.updated_at = start, end, now
    if tz:
        hours.tz = tz
    for checkin in upcoming(session, user_id):
        placed = place(max(checkin.planned_for, now), hours.tz, start, end)
        if placed != checkin.due_at:
            move(session, checkin, placed, now=now)
    return hours


def profile_changed(session: Session, user_id: str, *, deleted: bool, tz: str | None,
                    now: datetime) -> None:
    """Slack says a person's profile changed: someone deactivated gets no more check-ins, and a
    new time zone moves their coming check-ins to their hours in it. Nobody else is touched."""
    if deleted:
        cancel_remaining(session, user_id=user_id, now=now)
        return
    hours = session.get(ContactHours, user_id)
    if hours is None or not tz or tz == hours.tz or zone(tz).key != tz:
        return  # not someone we check in with, no change, or a zone this machine cannot place
    set_hours(session, user_id, start=hours.start_minute, end=hours.end_minute, now=now,
              default_tz=tz, tz=tz)
