"""Support requests: asking, matching, offers, first accept wins, hand-back, escalation, close.

Only preferences are stored: how soon, how to connect, department and role wishes. Never what
happened, never any patient detail. Every function takes a session and plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import delete, func, select, text, update
from sqlalchemy.orm import Session, aliased, lazyload

from bot.infra import outbox
from bot.infra.db import insert_for
from bot.infra.models import (
    ACTIVE_STATES,
    UNASSIGNED_STATES,
    CheckIn,
    CheckInState,
    ContactHours,
    CoordinatorAlert,
    Offer,
    OfferState,
    OutreachState,
    RequestKind,
    RequestState,
    Seat,
    SeatState,
    SessionProposal,
    Supporter,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.requests.transitions import OFFER_SOURCES, Event, apply
from bot.roster import duty

URGENCIES = {"now": "As soon as possible", "today": "Today", "week": "This week"}
CONNECTIONS = {"slack": "A Slack conversation", "phone": "A phone call",
               "in_person": "In person"}
DURATIONS = {"under_15": "Under 15 minutes", "15_30": "15 to 30 minutes",
             "30_60": "30 to 60 minutes", "over_60": "Over an hour"}
NEED_MET = {"yes": "Yes", "partly": "Partly", "no": "No", "unsure": "Not sure"}
# Any constant: the first half of the advisory lock key that serialises one supporter's accepts.
_CAP_LOCK = 0x5EE7


class RequestError(ValueError):
    """An action on a request that cannot be done; the message is for the person who tried."""


@dataclass(frozen=True)
class RequestForm:
    """What the request modal asks: preferences only."""

    urgency: str
    connection: str
    outside_department: bool = False
    same_role: bool = False
    department: str | None = None
    role: str | None = None
    followups: bool = False
    crisis: bool = False

    def check(self) -> None:
        """Refuse values the modal could not have sent."""
        if self.urgency not in URGENCIES or self.connection not in CONNECTIONS:
            raise RequestError("Choose how soon and how you would like to connect.")
        if self.same_role and not self.role:
            raise RequestError("To match your role, say which role is yours.")
        if self.outside_department and not self.department:
            raise RequestError("To find someone outside your department, say which is yours.")
        if not fits(self.department, 80):
            raise RequestError("That department name is too long, or has characters it cannot "
                               "hold: choose it from the list.")
        if not fits(self.role, 32):
            raise RequestError("That role is not one of the choices: choose it from the list.")


def fits(value: str | None, length: int) -> bool:
    """A free value fits its column: short enough, and printable (no control characters)."""
    return value is None or (len(value) <= length and value.isprintable())


class AlreadyOpen(Exception):
    """The person already has an open request; they are shown it instead of a second one."""

    def __init__(self, request: SupportRequest):
        super().__init__("already open")
        self.request = request
        self.request_id = request.id


def open_request_of(session: Session, user_id: str) -> SupportRequest | None:
    """The person's request that is still open, escalated or assigned, if any."""
    # Its id first, and the whole row only when there is one: every form opened asks, nearly
    # always to find none, and describing a row's thirty columns cost more than the query.
    found = session.scalar(select(SupportRequest.id).where(
        SupportRequest.requester_id == user_id, SupportRequest.state.in_(ACTIVE_STATES),
        SupportRequest.kind == RequestKind.PERSONAL)
        .order_by(SupportRequest.id.desc()).limit(1))
    return session.get(SupportRequest, found) if found is not None else None


def create(session: Session, requester_id: str, form: RequestForm, *, now: datetime,
           source_key: str | None = None, crisis_alert_to: Sequence[str] = ()
           ) -> SupportRequest:
    """Record a new request and its first messages; AlreadyOpen if the person has one (or this
    submission was seen). The database decides between two submitted at once: one wins, the
    other is shown the winner."""
    form.check()
    values = dict(
        source_key=source_key, requester_id=requester_id, urgency=form.urgency,
        connection=form.connection, outside_department=form.outside_department,
        same_role=form.same_role, requester_department=form.department,
        requester_role=form.role, followups=form.followups, crisis=form.crisis,
        state=RequestState.OPEN, wave=0, version=1, escalations=0, created_at=now)
    new_id = session.execute(insert_for(session, SupportRequest).values(**values).on_conflict_do_nothing()
                             .returning(SupportRequest.id)).scalar()
    if new_id is None:
        seen = session.scalars(select(SupportRequest).where(
            SupportRequest.source_key == source_key)).first() if source_key else None
        seen = seen or open_request_of(session, requester_id)
        if seen is None:  # the other one was withdrawn in between: nothing to show, ask again
            raise RequestError("Please send the form again.")
        raise AlreadyOpen(seen)
    request = session.get(SupportRequest, new_id)
    assert request is not None
    record_status(session, request, now)
    if form.crisis:
        # Someone not safe: a human is alerted at once, not when the offers run out.
        for coordinator in crisis_alert_to:
            _alert(session, request, coordinator, now)
    return request


def again(session: Session, earlier: SupportRequest, *, now: datetime) -> SupportRequest:
    """A new request for someone who asked to talk again, preferring their earlier supporter.
    Only a personal request is copied: talking again after a team's support is a personal
    request of one's own (bot.requests.flows.talk_again)."""
    if earlier.kind != RequestKind.PERSONAL:
        raise RequestError("A team's request is not copied for one person; ask for yourself.")
    form = RequestForm(urgency="today", connection=earlier.connection,
                       outside_department=earlier.outside_department,
                       same_role=earlier.same_role, department=earlier.requester_department,
                       role=earlier.requester_role, followups=earlier.followups)
    request = create(session, earlier.requester_id or "", form, now=now)
    request.preferred_supporter_id = earlier.supporter_id
    return request


def _workload(session: Session) -> tuple[dict[str, int], dict[str, datetime]]:
    active = dict(session.execute(
        select(SupportRequest.supporter_id, func.count()).where(
            SupportRequest.state == RequestState.ASSIGNED,
            SupportRequest.kind == RequestKind.PERSONAL).group_by(SupportRequest.supporter_id)
    ).all())
    for supporter_id, seats in session.execute(
            select(Seat.supporter_id, func.count()).where(Seat.state == SeatState.HELD)
            .group_by(Seat.supporter_id)).all():
        active[supporter_id] = active.get(supporter_id, 0) + seats
    last_closed = dict(session.execute(
        select(SupportRequest.supporter_id, func.max(SupportRequest.closed_at)).where(
            SupportRequest.state == RequestState.CLOSED, SupportRequest.supporter_id.is_not(None))
        .group_by(SupportRequest.supporter_id)).all())
    return active, last_closed


def eligible_supporters(session: Session, request: SupportRequest, *, now: datetime
                        ) -> list[Supporter]:
    """Who may be offered this request now, least recently offered first (round-robin).

    Normally: on duty in their own zone, under their case cap, rested since their last case,
    not the requester, not asked before for this request, and matching the department and role
    wishes. For someone who is not safe: everyone available who has not been asked yet.
    """
    asked = set(session.scalars(select(Offer.supporter_id).where(
        Offer.request_id == request.id)))
    active, last_closed = _workload(session)
    hours = duty.weekly_hours(session)
    chosen = []
    # Hours are read above in one plain query; loading them per supporter would dominate.
    for supporter in session.scalars(select(Supporter).options(lazyload(Supporter.hours))):
        if supporter.user_id in asked or supporter.user_id == request.requester_id:
            continue
        if not duty.is_available(supporter, now):
            continue
        if request.crisis:
            chosen.append(supporter)
            continue
        if not duty.within_hours(hours.get(supporter.user_id, ()), supporter.tz, now):
            continue
        if active.get(supporter.user_id, 0) >= supporter.case_cap:
            continue
        closed = last_closed.get(supporter.user_id)
        if closed is not None and closed + timedelta(hours=supporter.cooldown_hours) > now:
            continue
        if request.outside_department and supporter.department == request.requester_department:
            continue
        if request.same_role and supporter.role != request.requester_role:
            continue
        chosen.append(supporter)
    epoch = datetime.min.replace(tzinfo=now.tzinfo)
    chosen.sort(key=lambda s: (s.last_offered_at or epoch, s.user_id))
    return chosen


# -- the messages transitions imply (bot.infra.outbox), each named by what implied it ----------------

def _effect(session: Session, effect: Effect, key: str, now: datetime, **payload: Any) -> None:
    outbox.record(session, effect.value, payload, key=key, now=now)


def record_status(session: Session, request: SupportRequest, now: datetime) -> None:
    """Record the person's status message for the request as it stands now."""
    if request.requester_id:
        _effect(session, Effect.STATUS, f"status:{request.id}:v{request.version}", now,
                request_id=request.id)


def _offer_posts(session: Session, request: SupportRequest, offers: Sequence[Offer],
                 now: datetime) -> None:
    outbox.record_many(session, [
        (Effect.OFFER_POST.value, {"offer_id": offer.id},
         f"offer:{offer.id}:post:v{request.version}") for offer in offers], now=now)


def _offer_ends(session: Session, offers: Sequence[Offer], how: str, now: datetime,
                version: int) -> None:
    if offers:
        outbox.record_many(session, [
            (Effect.OFFER_END.value, {"offer_id": offer.id, "how": how},
             f"offer:{offer.id}:end:{how}:v{version}") for offer in offers], now=now)


def _alert(session: Session, request: SupportRequest, coordinator: str, now: datetime,
           renotify: int = 0) -> None:
    _effect(session, Effect.ALERT,
            f"alert:{request.id}:{coordinator}:v{request.version}:{renotify}", now,
            request_id=request.id, coordinator_id=coordinator, renotify=renotify)


def _notice(session: Session, request: SupportRequest, user_id: str | None, notice: str,
            now: datetime, *, per_person: bool = False) -> None:
    if user_id:
        whom = f"{user_id}:" if per_person else ""
        _effect(session, Effect.NOTICE, f"notice:{notice}:{request.id}:{whom}v{request.version}",
                now, request_id=request.id, user_id=user_id, notice=notice)


def alerted(session: Session, request_id: int) -> set[str]:
    """Coordinators alerted about a request (or about to be): whose alerts an outcome updates."""
    posted = set(session.scalars(select(CoordinatorAlert.coordinator_id).where(
        CoordinatorAlert.request_id == request_id)))
    prefix = f"alert:{request_id}:"
    recorded = {key.removeprefix(prefix).split(":")[0]
                for key in outbox.keys_like(session, Effect.ALERT.value, prefix)}
    return {c for c in posted | recorded if c}


def _resolve_alerts(session: Session, request: SupportRequest, now: datetime) -> None:
    for coordinator in sorted(alerted(session, request.id)):
        _alert(session, request, coordinator, now)


# -- guarded changes ---------------------------------------------------------------------------

def _lock(session: Session, request_id: int) -> SupportRequest | None:
    """The request, locked for this transaction and read fresh: every change to one request
    (and its offers) takes this lock first, so they queue instead of deadlocking."""
    return session.scalars(select(SupportRequest).where(SupportRequest.id == request_id)
                           .with_for_update().execution_options(populate_existing=True)).first()


def _move_offer(session: Session, offer: Offer, state: OfferState, **values: Any) -> bool:
    """One offer's guarded change: it happens only from the states the table allows."""
    won = session.execute(update(Offer).where(
        Offer.id == offer.id, Offer.state.in_(OFFER_SOURCES[state]))
        .values(state=state, **values).execution_options(synchronize_session=False)
    ).rowcount == 1
    session.refresh(offer)
    return won


def _move_offers(session: Session, request: SupportRequest, state: OfferState, *,
                 wave: int | None = None, now: datetime) -> list[Offer]:
    """Every offer of the request (or of one wave) that may move to `state`, moved."""
    conditions = [Offer.request_id == request.id, Offer.state.in_(OFFER_SOURCES[state])]
    if wave is not None:
        conditions.append(Offer.wave == wave)
    ids = list(session.scalars(update(Offer).where(*conditions)
                               .values(state=state, responded_at=now).returning(Offer.id)
                               .execution_options(synchronize_session=False)))
    if not ids:
        return []
    return list(session.scalars(select(Offer).where(Offer.id.in_(ids)).order_by(Offer.id)
                                .execution_options(populate_existing=True)))


def _end_offers(session: Session, request: SupportRequest, state: OfferState, how: str, *,
                now: datetime, wave: int | None = None) -> list[Offer]:
    moved = _move_offers(session, request, state, wave=wave, now=now)
    _offer_ends(session, moved, how, now, request.version)
    return moved


def _hold_supporter(session: Session, user_id: str) -> None:
    """Serialise one supporter's accepts (PostgreSQL), so two at once respect their case cap.
    SQLite runs one writer at a time, and the cap is checked inside the claim itself."""
    if session.get_bind().dialect.name == "postgresql":
        session.execute(text("SELECT pg_advisory_xact_lock(:a, hashtext(:b))"),
                        {"a": _CAP_LOCK, "b": user_id})


def next_wave(session: Session, request: SupportRequest, *, now: datetime,
              wave_size: int) -> list[Offer]:
    """Offer the request to the next few eligible supporters (all of them in a crisis)."""
    if _lock(session, request.id) is None or request.state not in UNASSIGNED_STATES:
        return []
    supporters = eligible_supporters(session, request, now=now)
    preferred = [s for s in supporters if s.user_id == request.preferred_supporter_id]
    if preferred and request.wave == 0:
        supporters = preferred  # "talk again": their earlier supporter first, when available
    elif not request.crisis:
        supporters = supporters[:wave_size]
    if not supporters:
        return []
    if not apply(session, request, Event.OFFER, expect={"wave": request.wave},
                 wave=request.wave + 1):
        return []
    offers = []
    for supporter in supporters:
        supporter.last_offered_at = now
        offer = Offer(request_id=request.id, supporter_id=supporter.user_id, wave=request.wave,
                      state=OfferState.PENDING, created_at=now)
        session.add(offer)
        offers.append(offer)
    session.flush()
    _offer_posts(session, request, offers, now)
    return offers


def offer_to(session: Session, request: SupportRequest, supporter_id: str, *,
             now: datetime) -> Offer:
    """A coordinator's direct offer of a request to one supporter they picked."""
    if supporter_id == request.requester_id:
        raise RequestError("The person who asked cannot support themselves; pick someone else.")
    if _lock(session, request.id) is None or not apply(session, request, Event.PICK):
        raise RequestError("This request already has a supporter, or was withdrawn.")
    offer = session.scalars(select(Offer).where(
        Offer.request_id == request.id, Offer.supporter_id == supporter_id)).first()
    if offer is not None:
        if offer.state == OfferState.HANDED_BACK:
            raise RequestError("That supporter handed this request back; pick someone else.")
        if offer.state == OfferState.PENDING:
            offer.direct = True
            return offer  # their offer is live and on their screen already
        if not _move_offer(session, offer, OfferState.PENDING, responded_at=None):
            raise RequestError("That supporter cannot be offered this request; pick someone "
                               "else.")
        # A personal ask is a new message: the old one keeps saying how that offer ended.
        offer.direct, offer.channel, offer.ts = True, None, None
    else:
        offer = Offer(request_id=request.id, supporter_id=supporter_id, wave=request.wave,
                      direct=True, state=OfferState.PENDING, created_at=now)
        session.add(offer)
        session.flush()
    _offer_posts(session, request, [offer], now)
    return offer


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    JOINED = "joined"  # a seat of a team request that still needs another supporter
    ALREADY_YOURS = "already_yours"
    TAKEN = "taken"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    NOT_YOURS = "not_yours"
    NOT_FOUND = "not_found"
    DECLINED = "declined"
    EXPIRED = "expired"  # this offer's time ran out and it went to others
    AT_CAP = "at_cap"  # the supporter already has as many open cases as their cap


@dataclass
class AcceptResult:
    """What an accept (or decline) click did, and which other offers now need updating."""

    outcome: Outcome
    request: SupportRequest | None = None
    offer: Offer | None = None
    others: list[Offer] = field(default_factory=list)


def _refusal(request: SupportRequest, user_id: str) -> Outcome:
    if request.state == RequestState.CANCELLED:
        return Outcome.CANCELLED
    if request.state == RequestState.CLOSED:
        return Outcome.CLOSED
    if request.supporter_id == user_id:
        return Outcome.ALREADY_YOURS
    return Outcome.TAKEN


def _refused(session: Session, offer_id: int, user_id: str
             ) -> tuple[Offer | None, SupportRequest | None, Outcome | None]:
    """The offer, its request (locked), and why this person cannot answer it (None if they can)."""
    offer = session.get(Offer, offer_id)
    if offer is None:
        return None, None, Outcome.NOT_FOUND
    request = _lock(session, offer.request_id)
    session.refresh(offer)
    if offer.supporter_id != user_id:
        return offer, request, Outcome.NOT_YOURS
    if request is None:
        return offer, None, Outcome.NOT_FOUND
    if offer.state == OfferState.ACCEPTED and request.state in ACTIVE_STATES:
        return offer, request, Outcome.ALREADY_YOURS  # a double click, or a seat already held
    if request.state not in UNASSIGNED_STATES or offer.state in (
            OfferState.HANDED_BACK, OfferState.ACCEPTED):
        return offer, request, _refusal(request, user_id)
    return offer, request, None


def _claim(session: Session, request: SupportRequest, event: Event, supporter_id: str,
           now: datetime, cap: int | None) -> bool | None:
    """The one conditional UPDATE that makes first accept win, within the supporter's cap.

    None if it lost. True if it placed the request (`event`). A team request fills a seat at
    a time, guarded on the seats taken so far, so exactly `seats` win: False when this seat
    only joined it (another is still needed)."""
    also = [] if cap is None else [_open_cases(supporter_id) < cap]
    if request.kind == RequestKind.PERSONAL:
        return True if apply(session, request, event, also=also, supporter_id=supporter_id,
                             assigned_at=now) else None
    while True:
        taken = request.filled
        last = taken + 1 >= request.seats
        values: dict[str, Any] = {"filled": taken + 1}
        if request.supporter_id is None:
            values["supporter_id"] = supporter_id  # the first to take a seat leads
        if last:
            values["assigned_at"] = now
        if apply(session, request, event if last else Event.JOIN, expect={"filled": taken},
                 also=also, **values):
            break
        # Another seat was taken since the request was read (SQLite reads without the row
        # lock): read it again and try for the next seat, while one is left, unless the seat
        # taken meanwhile is this supporter's own (a double click).
        session.refresh(request)
        if request.state not in UNASSIGNED_STATES or request.filled == taken \
                or supporter_id in seat_holders(session, request.id):
            return None
    session.add(Seat(request_id=request.id, supporter_id=supporter_id, state=SeatState.HELD,
                     joined_at=now))
    session.flush()
    return last


def _open_cases(supporter_id: str) -> Any:
    """How many cases the supporter has open, as a subquery: personal requests placed with them,
    and seats they hold on team requests (placed or not)."""
    mine = aliased(SupportRequest)
    personal = select(func.count()).select_from(mine).where(
        mine.supporter_id == supporter_id, mine.state == RequestState.ASSIGNED,
        mine.kind == RequestKind.PERSONAL).scalar_subquery()
    seats = select(func.count()).select_from(Seat).where(
        Seat.supporter_id == supporter_id, Seat.state == SeatState.HELD).scalar_subquery()
    return personal + seats


def accept(session: Session, offer_id: int, user_id: str, *, now: datetime) -> AcceptResult:
    """First accept wins, within the supporter's case cap, whatever process the click reached."""
    offer, request, refusal = _refused(session, offer_id, user_id)
    if refusal is not None:
        return AcceptResult(refusal, request, offer)
    assert offer is not None and request is not None
    if offer.state != OfferState.PENDING:  # it was taken, declined, or its time ran out
        return AcceptResult(Outcome.TAKEN if offer.state == OfferState.TAKEN
                            else Outcome.EXPIRED, request, offer)
    _hold_supporter(session, user_id)
    supporter = session.get(Supporter, user_id)
    placed = _claim(session, request, Event.ACCEPT, user_id, now,
                    supporter.case_cap if supporter is not None else None)
    if placed is None:
        if request.kind == RequestKind.TEAM and user_id in seat_holders(session, request.id):
            return AcceptResult(Outcome.ALREADY_YOURS, request, offer)  # a double click
        outcome = _refusal(request, user_id) if request.state not in UNASSIGNED_STATES \
            else Outcome.AT_CAP
        return AcceptResult(outcome, request, offer)
    _move_offer(session, offer, OfferState.ACCEPTED, responded_at=now)
    if not placed:  # a seat of a team request that still needs another supporter
        _offer_ends(session, [offer], "joined", now, request.version)
        record_status(session, request, now)
        _resolve_alerts(session, request, now)  # coordinators' alerts show the seats taken
        return AcceptResult(Outcome.JOINED, request, offer)
    _offer_ends(session, [offer], "accepted", now, request.version)
    return AcceptResult(Outcome.ACCEPTED, request, offer, _placed(session, request, now))


def _placed(session: Session, request: SupportRequest, now: datetime) -> list[Offer]:
    """What every placement says: the others' offers end, the person and their supporters are
    introduced, each supporter gets the case, the person their status, and coordinators'
    alerts are resolved."""
    others = _end_offers(session, request, OfferState.TAKEN, "taken", now=now)
    if request.kind == RequestKind.PERSONAL:
        payload = {"request_id": request.id, "supporter_id": request.supporter_id}
        _effect(session, Effect.INTRO, f"intro:{request.id}:v{request.version}", now, **payload)
        _effect(session, Effect.CASE, f"case:{request.id}:v{request.version}", now, **payload)
    else:
        supporters = seat_holders(session, request.id)
        # Those who joined before the last seat was taken were told to wait for the others:
        # their offers now say they are in.
        joined = session.scalars(select(Offer).where(
            Offer.request_id == request.id, Offer.state == OfferState.ACCEPTED,
            Offer.supporter_id.in_(supporters)).order_by(Offer.id)).all()
        _offer_ends(session, joined, "accepted", now, request.version)
        _effect(session, Effect.INTRO, f"intro:{request.id}:v{request.version}", now,
                request_id=request.id, supporter_id=request.supporter_id,
                supporter_ids=supporters, version=request.version)
        for supporter_id in supporters:
            _effect(session, Effect.CASE, f"case:{request.id}:{supporter_id}:v{request.version}",
                    now, request_id=request.id, supporter_id=supporter_id,
                    version=request.version)
        begin_outreach(session, request.id, now, placed=True)
    record_status(session, request, now)
    _resolve_alerts(session, request, now)
    return others


def begin_outreach(session: Session, request_id: int, now: datetime, *,
                   placed: bool = False) -> bool:
    """Record the start of a team's private outreach when it is due: at placement when no group
    conversation was asked for, else once its time is picked or it is called off (`placed`
    False). Repeating it is harmless: the start runs once (its state moves on when it does)."""
    team = session.get(TeamRequest, request_id)
    if team is None or team.outreach_state != OutreachState.WAITING or (placed and team.group):
        return False
    _effect(session, Effect.TEAM_OUTREACH_START, f"outreach:{request_id}:start", now,
            request_id=request_id)
    return True


def seat_holders(session: Session, request_id: int) -> list[str]:
    """Who holds a seat on a team request, in the order they took it."""
    return [s for s in session.scalars(select(Seat.supporter_id).where(
        Seat.request_id == request_id, Seat.state == SeatState.HELD).order_by(Seat.id)) if s]


def decline(session: Session, offer_id: int, user_id: str, *, now: datetime) -> AcceptResult:
    """The supporter cannot take it; the offer is marked and the wave carries on."""
    offer, request, refusal = _refused(session, offer_id, user_id)
    if refusal is not None:
        return AcceptResult(refusal, request, offer)
    assert offer is not None and request is not None
    if _move_offer(session, offer, OfferState.DECLINED, responded_at=now):
        apply(session, request, Event.DECLINE)
        _offer_ends(session, [offer], "declined", now, request.version)
    return AcceptResult(Outcome.DECLINED, request, offer)


def wave_settled(session: Session, request: SupportRequest) -> bool:
    """True when nobody in the current wave can still answer (all declined or failed)."""
    return not session.scalars(select(Offer.id).where(
        Offer.request_id == request.id, Offer.wave == request.wave,
        Offer.state == OfferState.PENDING)).first()


def offer_failed(session: Session, offer_id: int, *, now: datetime) -> SupportRequest | None:
    """The offer's DM could not be delivered (the supporter left): mark it; returns the request
    when that leaves its current wave with nobody who can answer."""
    offer = session.get(Offer, offer_id)
    if offer is None:
        return None
    request = _lock(session, offer.request_id)
    if not _move_offer(session, offer, OfferState.FAILED, responded_at=now) or request is None:
        return None
    if request.state == RequestState.OPEN and offer.wave == request.wave \
            and wave_settled(session, request):
        return request
    return None


def expire_wave(session: Session, request: SupportRequest, wave: int, *, now: datetime
                ) -> bool:
    """The wave's time ran out: its unanswered offers expire (and say so). False, and nothing
    changes, if the request moved on meanwhile (placed, withdrawn, or past this wave)."""
    if _lock(session, request.id) is None or not apply(
            session, request, Event.OFFER_TIMEOUT, expect={"wave": wave}):
        return False
    _end_offers(session, request, OfferState.EXPIRED, "expired", now=now, wave=wave)
    return True


def escalate(session: Session, request: SupportRequest, *, now: datetime,
             coordinators: Sequence[str] = ()) -> bool:
    """Hand the request to the coordinators (one alert each); True the first time."""
    if _lock(session, request.id) is None or not apply(
            session, request, Event.ESCALATE, escalated_at=now,
            escalations=request.escalations + 1):
        return False
    for coordinator in coordinators:
        _alert(session, request, coordinator, now)
    record_status(session, request, now)
    return True


def remind(session: Session, request_id: int, escalation: int, number: int, *, now: datetime,
           coordinators: Sequence[str] = ()) -> SupportRequest | None:
    """Still unplaced: refresh each coordinator's alert and notify them again; None (and
    nothing) if the request was placed, withdrawn, or escalated again since."""
    request = _lock(session, request_id)
    if request is None or not apply(session, request, Event.REMIND,
                                    expect={"escalations": escalation}):
        return None
    for coordinator in sorted(set(coordinators) | alerted(session, request.id)):
        _alert(session, request, coordinator, now, renotify=number)
    return request


def _own_request(session: Session, request_id: int, user_id: str) -> SupportRequest:
    request = _lock(session, request_id)
    if request is None or request.requester_id != user_id:
        raise RequestError("That request is not yours.")
    return request


def cancel(session: Session, request_id: int, user_id: str, *, now: datetime
           ) -> tuple[SupportRequest, list[Offer]]:
    """The requester withdraws: open offers are withdrawn, and whoever was helping is told."""
    request = _own_request(session, request_id, user_id)
    helping = _helping(session, request)
    if not apply(session, request, Event.CANCEL, expect={"requester_id": user_id},
                 closed_at=now):
        raise RequestError("That request is already " + request.state + ".")
    helping = _still_helping(session, request, helping)
    withdrawn = _end_offers(session, request, OfferState.WITHDRAWN, "withdrawn", now=now)
    _ended(session, request, helping, "withdrawn", now)
    record_status(session, request, now)
    _resolve_alerts(session, request, now)
    return request, withdrawn


def _helping(session: Session, request: SupportRequest) -> list[str]:
    """Who is helping with a request now: its supporter, or a team request's seat holders."""
    if request.kind == RequestKind.TEAM:
        return seat_holders(session, request.id)
    return [request.supporter_id] if request.state == RequestState.ASSIGNED and \
        request.supporter_id else []


def _still_helping(session: Session, request: SupportRequest, before: list[str]) -> list[str]:
    """Who to tell a team request ended, read again after its guarded write: on SQLite a seat
    can be taken between the first read and the write, and that supporter must be told too."""
    if request.kind != RequestKind.TEAM:
        return before
    return seat_holders(session, request.id)


def _ended(session: Session, request: SupportRequest, helping: Sequence[str], notice: str,
           now: datetime) -> None:
    """A request ended: each supporter who was helping is told, and their seats are freed."""
    for supporter_id in helping:
        _notice(session, request, supporter_id, notice, now,
                per_person=request.kind == RequestKind.TEAM)
    _free_seats(session, request, now)


def _free_seats(session: Session, request: SupportRequest, now: datetime,
                supporter_id: str | None = None) -> None:
    if request.kind != RequestKind.TEAM:
        return  # a personal request holds no seats
    conditions = [Seat.request_id == request.id, Seat.state == SeatState.HELD]
    if supporter_id is not None:
        conditions.append(Seat.supporter_id == supporter_id)
    session.execute(update(Seat).where(*conditions).values(state=SeatState.LEFT, left_at=now)
                    .execution_options(synchronize_session=False))


def expire(session: Session, requester_id: str, *, now: datetime) -> SupportRequest | None:
    """The person who asked has left the workspace: their request ends, and whoever was
    helping or alerted is told."""
    request = open_request_of(session, requester_id)
    if request is None or _lock(session, request.id) is None:
        return None
    helping = _helping(session, request)
    if not apply(session, request, Event.EXPIRE, closed_at=now):
        return None
    helping = _still_helping(session, request, helping)
    _end_offers(session, request, OfferState.WITHDRAWN, "withdrawn", now=now)
    _ended(session, request, helping, "withdrawn", now)
    _resolve_alerts(session, request, now)
    return request


def not_safe(session: Session, requester_id: str, *, now: datetime,
             coordinators: Sequence[str] = ()) -> SupportRequest | None:
    """Someone whose request is already open says they are not safe: it becomes urgent, every
    coordinator is alerted at once (naming them: safety comes first), and their status says
    so. None when they have no open request."""
    request = open_request_of(session, requester_id)
    if request is None or _lock(session, request.id) is None or not apply(
            session, request, Event.NOT_SAFE, expect={"requester_id": requester_id},
            crisis=True, urgency="now"):
        return None
    for coordinator in sorted(set(coordinators) | alerted(session, request.id)):
        _alert(session, request, coordinator, now)
    record_status(session, request, now)
    return request


def supports(session: Session, request: SupportRequest, user_id: str) -> bool:
    """True when `user_id` is helping with the request: its supporter, or a seat holder."""
    if request.kind == RequestKind.TEAM:
        return user_id in seat_holders(session, request.id)
    return request.supporter_id == user_id


def _assigned_to(session: Session, request_id: int, user_id: str) -> SupportRequest:
    request = _lock(session, request_id)
    if request is not None and request.state != RequestState.ASSIGNED \
            and request.kind == RequestKind.TEAM and _held_a_seat(session, request.id, user_id):
        # A colleague closed it a moment ago (the seats are freed with it): say so.
        raise RequestError("That request is already " + request.state + ".")
    if request is None or not supports(session, request, user_id):
        raise RequestError("That request is not with you.")
    if request.state != RequestState.ASSIGNED:
        raise RequestError("That request is already " + request.state + ".")
    return request


def _held_a_seat(session: Session, request_id: int, user_id: str) -> bool:
    """Whether `user_id` ever held a seat on the team request (so may hear how it stands)."""
    return session.scalars(select(Seat.id).where(
        Seat.request_id == request_id, Seat.supporter_id == user_id)).first() is not None


def hand_back(session: Session, request_id: int, user_id: str, *, now: datetime
              ) -> SupportRequest:
    """The supporter cannot continue (they know the person, or were involved): re-open it. Of
    a team request, their seat is freed, placed or not, and one more supporter is looked for;
    the caller is told kindly either way."""
    request = _lock(session, request_id)
    if request is None or not supports(session, request, user_id):
        raise RequestError("That request is not with you.")
    if request.kind == RequestKind.PERSONAL:
        if request.state != RequestState.ASSIGNED:
            raise RequestError("That request is already " + request.state + ".")
        event, notice = Event.HAND_BACK, "handed_back"
        changed = apply(session, request, event, expect={"supporter_id": user_id},
                        supporter_id=None, assigned_at=None)
    else:
        if request.state not in ACTIVE_STATES:
            raise RequestError("That request is not with you.")
        others = [s for s in seat_holders(session, request.id) if s != user_id]
        event = Event.HAND_BACK if request.state == RequestState.ASSIGNED else Event.LEAVE
        notice = "team_handed_back"
        changed = apply(session, request, event, expect={"filled": request.filled},
                        filled=request.filled - 1, supporter_id=others[0] if others else None,
                        assigned_at=None)
    if not changed:
        raise RequestError("That request is not with you.")
    _free_seats(session, request, now, user_id)
    offer = session.scalars(select(Offer).where(
        Offer.request_id == request.id, Offer.supporter_id == user_id)).first()
    if offer is not None:
        _move_offer(session, offer, OfferState.HANDED_BACK, responded_at=now)
    _notice(session, request, request.requester_id, notice, now)
    record_status(session, request, now)
    # "Placed" no longer holds (Take is back), or one fewer seat is taken: alerts say so.
    _resolve_alerts(session, request, now)
    return request


def close(session: Session, request_id: int, user_id: str, *, now: datetime, duration: str,
          referred: bool, need_met: str, people_present: str | None = None) -> SupportRequest:
    """The supporter closes the encounter with aggregate-only answers (no free text). Of a
    team request, any seat holder closes it for all, says roughly how many took part
    (`people_present`, a range key bot.requests.teams.close_team checks), and the other seat
    holder is told."""
    if duration not in DURATIONS or need_met not in NEED_MET:
        raise RequestError("Choose an answer for each question.")
    request = _assigned_to(session, request_id, user_id)
    team = request.kind == RequestKind.TEAM
    if team and (not people_present or not fits(people_present, 8)):
        raise RequestError("Choose roughly how many people took part.")
    if not team and people_present is not None:
        raise RequestError("Only a team's support asks how many people took part.")
    others = [s for s in seat_holders(session, request.id) if s != user_id] if team else []
    expect = {"supporter_id": user_id} if not team else {}
    if not apply(session, request, Event.CLOSE, expect=expect, closed_at=now,
                 duration=duration, referred=referred, need_met=need_met):
        raise RequestError("That request is not with you.")
    if team:
        session.execute(update(TeamRequest).where(TeamRequest.request_id == request.id)
                        .values(people_present=people_present)
                        .execution_options(synchronize_session=False))
        for supporter_id in others:
            _notice(session, request, supporter_id, "team_closed", now, per_person=True)
    _free_seats(session, request, now)
    record_status(session, request, now)
    # Members still waiting for a group time to be picked are reached now: none will come.
    begin_outreach(session, request.id, now)
    return request


def take_as_coordinator(session: Session, request_id: int, coordinator_id: str, *,
                        now: datetime) -> AcceptResult:
    """A coordinator takes an unassigned request themselves (they become its supporter; of a
    team request, they take a seat)."""
    request = _lock(session, request_id)
    if request is None:
        raise RequestError("That request no longer exists.")
    if request.kind == RequestKind.TEAM and coordinator_id in seat_holders(session, request.id):
        raise RequestError("You already hold a seat on it.")
    placed = _claim(session, request, Event.TAKE, coordinator_id, now, None)
    if placed is None:
        if request.kind == RequestKind.TEAM and coordinator_id in seat_holders(session,
                                                                                request.id):
            raise RequestError("You already hold a seat on it.")  # a double click (SQLite)
        raise RequestError("Someone has already taken it, or it was cancelled.")
    if not placed:
        record_status(session, request, now)
        _resolve_alerts(session, request, now)
        return AcceptResult(Outcome.JOINED, request, None)
    return AcceptResult(Outcome.ACCEPTED, request, None, _placed(session, request, now))


def unassigned(session: Session) -> Sequence[SupportRequest]:
    """Requests still looking for a supporter, oldest first (for coordinators' eyes)."""
    return session.scalars(select(SupportRequest).where(
        SupportRequest.state.in_(UNASSIGNED_STATES)).order_by(SupportRequest.created_at)).all()


def active_cases(session: Session, supporter_id: str) -> Sequence[SupportRequest]:
    """Requests assigned to a supporter and not yet closed (of team requests, those they hold
    a seat on, placed or not)."""
    seated = select(Seat.request_id).where(Seat.supporter_id == supporter_id,
                                           Seat.state == SeatState.HELD)
    return session.scalars(select(SupportRequest).where(
        ((SupportRequest.supporter_id == supporter_id)
         & (SupportRequest.state == RequestState.ASSIGNED)
         & (SupportRequest.kind == RequestKind.PERSONAL))
        | SupportRequest.id.in_(seated)).order_by(SupportRequest.id)).all()


def pending_offers(session: Session, supporter_id: str) -> Sequence[Offer]:
    """Offers a supporter can still accept."""
    return session.scalars(select(Offer).join(SupportRequest).where(
        Offer.supporter_id == supporter_id, Offer.state == OfferState.PENDING,
        SupportRequest.state.in_(UNASSIGNED_STATES)).order_by(Offer.id)).all()


def forget_identities(session: Session, *, now: datetime, retention_days: int) -> int:
    """Remove both people's ids from requests closed or cancelled long enough ago."""
    cutoff = now - timedelta(days=retention_days)
    old = list(session.scalars(select(SupportRequest).where(
        SupportRequest.state.in_([RequestState.CLOSED, RequestState.CANCELLED]),
        SupportRequest.closed_at < cutoff,
        (SupportRequest.requester_id.is_not(None)) | (SupportRequest.supporter_id.is_not(None)))))
    for request in old:
        request.requester_id = request.supporter_id = None
        request.status_channel = request.status_ts = request.intro_channel = None
    if old:
        ids = [r.id for r in old]
        session.execute(update(Offer).where(Offer.request_id.in_(ids))
                        .values(supporter_id=None, channel=None, ts=None)
                        .execution_options(synchronize_session=False))
        session.execute(update(Seat).where(Seat.request_id.in_(ids)).values(supporter_id=None)
                        .execution_options(synchronize_session=False))
        session.execute(update(TeamRequest).where(TeamRequest.request_id.in_(ids)).values(
            people=None, usergroup_id=None, channel_id=None, session_place=None)
            .execution_options(synchronize_session=False))
        session.execute(update(SessionProposal).where(SessionProposal.request_id.in_(ids))
                        .values(proposed_by=None).execution_options(synchronize_session=False))
        # Check-ins of these requests that are over (answered, cancelled, or never answered).
        session.execute(update(CheckIn).where(
            CheckIn.request_id.in_(ids), CheckIn.state != CheckInState.SCHEDULED)
            .values(user_id=None, channel=None, ts=None)
            .execution_options(synchronize_session=False))
    # Check-in hours exist only for people who were supported: keep them no longer than needed.
    needed = select(CheckIn.user_id).where(CheckIn.state == CheckInState.SCHEDULED)
    active = select(SupportRequest.requester_id).where(SupportRequest.state.in_(ACTIVE_STATES))
    session.execute(delete(ContactHours).where(
        ContactHours.updated_at < cutoff, ContactHours.user_id.not_in(needed),
        ContactHours.user_id.not_in(active)).execution_options(synchronize_session=False))
    return len(old)
