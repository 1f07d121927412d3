"""Support requests: asking, matching, offers, first accept wins, hand-back, escalation, close.

Only preferences are stored: how soon, how to connect, department and role wishes. Never what
happened, never any patient detail. Every function takes a session and plain values.
"""

from __future__ import annotations

import enum
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import delete, func, select, update
from sqlalchemy.orm import Session, lazyload

from bot import duty
from bot.models import (
    ACTIVE_STATES,
    UNASSIGNED_STATES,
    CheckIn,
    CheckInState,
    ContactHours,
    Offer,
    OfferState,
    RequestState,
    Supporter,
    SupportRequest,
)

URGENCIES = {"now": "As soon as possible", "today": "Today", "week": "This week"}
CONNECTIONS = {"slack": "A Slack conversation", "phone": "A phone call",
               "in_person": "In person"}
DURATIONS = {"under_15": "Under 15 minutes", "15_30": "15 to 30 minutes",
             "30_60": "30 to 60 minutes", "over_60": "Over an hour"}
NEED_MET = {"yes": "Yes", "partly": "Partly", "no": "No", "unsure": "Not sure"}


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


class AlreadyOpen(Exception):
    """The person already has an open request; they are shown it instead of a second one."""

    def __init__(self, request: SupportRequest):
        super().__init__("already open")
        self.request = request
        self.request_id = request.id


def open_request_of(session: Session, user_id: str) -> SupportRequest | None:
    """The person's request that is still open, escalated or assigned, if any."""
    return session.scalars(select(SupportRequest).where(
        SupportRequest.requester_id == user_id, SupportRequest.state.in_(ACTIVE_STATES))
        .order_by(SupportRequest.id.desc())).first()


def create(session: Session, requester_id: str, form: RequestForm, *, now: datetime,
           source_key: str | None = None) -> SupportRequest:
    """Record a new request; AlreadyOpen if the person has one (or this submission was seen)."""
    form.check()
    if source_key is not None:
        seen = session.scalars(select(SupportRequest).where(
            SupportRequest.source_key == source_key)).first()
        if seen is not None:
            raise AlreadyOpen(seen)
    existing = open_request_of(session, requester_id)
    if existing is not None:
        raise AlreadyOpen(existing)
    request = SupportRequest(
        source_key=source_key, requester_id=requester_id, urgency=form.urgency,
        connection=form.connection, outside_department=form.outside_department,
        same_role=form.same_role, requester_department=form.department,
        requester_role=form.role, followups=form.followups, crisis=form.crisis,
        state=RequestState.OPEN, wave=0, created_at=now)
    session.add(request)
    session.flush()
    return request


def again(session: Session, earlier: SupportRequest, *, now: datetime) -> SupportRequest:
    """A new request for someone who asked to talk again, preferring their earlier supporter."""
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
            SupportRequest.state == RequestState.ASSIGNED).group_by(SupportRequest.supporter_id)
    ).all())
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


def next_wave(session: Session, request: SupportRequest, *, now: datetime,
              wave_size: int) -> list[Offer]:
    """Offer the request to the next few eligible supporters (all of them in a crisis)."""
    supporters = eligible_supporters(session, request, now=now)
    preferred = [s for s in supporters if s.user_id == request.preferred_supporter_id]
    if preferred and request.wave == 0:
        supporters = preferred  # "talk again": their earlier supporter first, when available
    elif not request.crisis:
        supporters = supporters[:wave_size]
    if not supporters:
        return []
    request.wave += 1
    offers = []
    for supporter in supporters:
        supporter.last_offered_at = now
        offer = Offer(request_id=request.id, supporter_id=supporter.user_id, wave=request.wave,
                      state=OfferState.PENDING, created_at=now)
        session.add(offer)
        offers.append(offer)
    session.flush()
    return offers


def offer_to(session: Session, request: SupportRequest, supporter_id: str, *,
             now: datetime) -> Offer:
    """A coordinator's direct offer of a request to one supporter they picked."""
    existing = session.scalars(select(Offer).where(
        Offer.request_id == request.id, Offer.supporter_id == supporter_id)).first()
    if existing is not None:
        if existing.state == OfferState.HANDED_BACK:
            raise RequestError("That supporter handed this request back; pick someone else.")
        existing.state, existing.direct = OfferState.PENDING, True
        return existing
    if supporter_id == request.requester_id:
        raise RequestError("The person who asked cannot support themselves; pick someone else.")
    offer = Offer(request_id=request.id, supporter_id=supporter_id, wave=request.wave,
                  direct=True, state=OfferState.PENDING, created_at=now)
    session.add(offer)
    session.flush()
    return offer


class Outcome(enum.StrEnum):
    ACCEPTED = "accepted"
    ALREADY_YOURS = "already_yours"
    TAKEN = "taken"
    CLOSED = "closed"
    CANCELLED = "cancelled"
    NOT_YOURS = "not_yours"
    NOT_FOUND = "not_found"
    DECLINED = "declined"


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


def _claim(session: Session, request: SupportRequest, supporter_id: str,
           now: datetime) -> bool:
    """The one conditional UPDATE that makes first accept win, on any database and process."""
    won = session.execute(
        update(SupportRequest)
        .where(SupportRequest.id == request.id, SupportRequest.state.in_(UNASSIGNED_STATES))
        .values(state=RequestState.ASSIGNED, supporter_id=supporter_id, assigned_at=now)
        .execution_options(synchronize_session=False)
    ).rowcount == 1
    session.refresh(request)
    return won


def _settle_open_offers(session: Session, request: SupportRequest, state: OfferState
                        ) -> list[Offer]:
    """Mark every offer that could still be answered with `state`; return them for updating."""
    settled = list(session.scalars(select(Offer).where(
        Offer.request_id == request.id,
        Offer.state.in_([OfferState.PENDING, OfferState.EXPIRED]))))
    for offer in settled:
        offer.state = state
    return settled


def _refused(session: Session, offer_id: int, user_id: str
             ) -> tuple[Offer | None, SupportRequest | None, Outcome | None]:
    """The offer, its request, and why this person cannot answer it (None when they can)."""
    offer = session.get(Offer, offer_id)
    if offer is None:
        return None, None, Outcome.NOT_FOUND
    request = session.get(SupportRequest, offer.request_id)
    if offer.supporter_id != user_id:
        return offer, request, Outcome.NOT_YOURS
    if offer.state == OfferState.HANDED_BACK:
        return offer, request, Outcome.TAKEN
    return offer, request, None


def accept(session: Session, offer_id: int, user_id: str, *, now: datetime) -> AcceptResult:
    """First accept wins: one conditional UPDATE decides, whatever process the click reached."""
    offer, request, refusal = _refused(session, offer_id, user_id)
    if refusal is not None:
        return AcceptResult(refusal, request, offer)
    if not _claim(session, request, user_id, now):
        return AcceptResult(_refusal(request, user_id), request, offer)
    offer.state, offer.responded_at = OfferState.ACCEPTED, now
    return AcceptResult(Outcome.ACCEPTED, request, offer,
                        _settle_open_offers(session, request, OfferState.TAKEN))


def decline(session: Session, offer_id: int, user_id: str, *, now: datetime) -> AcceptResult:
    """The supporter cannot take it; the offer is marked and the wave carries on."""
    offer, request, refusal = _refused(session, offer_id, user_id)
    if refusal is not None:
        return AcceptResult(refusal, request, offer)
    if request.state not in UNASSIGNED_STATES:
        return AcceptResult(_refusal(request, user_id), request, offer)
    if offer.state in (OfferState.PENDING, OfferState.EXPIRED):
        offer.state, offer.responded_at = OfferState.DECLINED, now
    return AcceptResult(Outcome.DECLINED, request, offer)


def wave_settled(session: Session, request: SupportRequest) -> bool:
    """True when nobody in the current wave can still answer (all declined or failed)."""
    return not session.scalars(select(Offer.id).where(
        Offer.request_id == request.id, Offer.wave == request.wave,
        Offer.state == OfferState.PENDING)).first()


def expire_wave(session: Session, request: SupportRequest, wave: int, *, now: datetime
                ) -> list[Offer]:
    """Mark a wave's unanswered offers expired (they may still accept while it is open)."""
    expired = list(session.scalars(select(Offer).where(
        Offer.request_id == request.id, Offer.wave == wave, Offer.state == OfferState.PENDING)))
    for offer in expired:
        offer.state, offer.responded_at = OfferState.EXPIRED, now
    return expired


def escalate(session: Session, request: SupportRequest, *, now: datetime) -> bool:
    """Hand the request to the coordinators; True the first time."""
    if request.state != RequestState.OPEN:
        return False
    request.state, request.escalated_at = RequestState.ESCALATED, now
    return True


def _own_request(session: Session, request_id: int, user_id: str) -> SupportRequest:
    request = session.get(SupportRequest, request_id)
    if request is None or request.requester_id != user_id:
        raise RequestError("That request is not yours.")
    return request


def cancel(session: Session, request_id: int, user_id: str, *, now: datetime
           ) -> tuple[SupportRequest, list[Offer]]:
    """The requester withdraws: open offers are withdrawn; returns them for updating."""
    request = _own_request(session, request_id, user_id)
    if request.state not in ACTIVE_STATES:
        raise RequestError("That request is already " + request.state + ".")
    request.state, request.closed_at = RequestState.CANCELLED, now
    return request, _settle_open_offers(session, request, OfferState.WITHDRAWN)


def _assigned_to(session: Session, request_id: int, user_id: str) -> SupportRequest:
    request = session.get(SupportRequest, request_id)
    if request is None or request.supporter_id != user_id:
        raise RequestError("That request is not with you.")
    if request.state != RequestState.ASSIGNED:
        raise RequestError("That request is already " + request.state + ".")
    return request


def hand_back(session: Session, request_id: int, user_id: str, *, now: datetime
              ) -> SupportRequest:
    """The supporter cannot continue (they know the person, or were involved): re-open it."""
    request = _assigned_to(session, request_id, user_id)
    offer = session.scalars(select(Offer).where(
        Offer.request_id == request.id, Offer.supporter_id == user_id)).first()
    if offer is not None:
        offer.state, offer.responded_at = OfferState.HANDED_BACK, now
    request.state, request.supporter_id, request.assigned_at = RequestState.OPEN, None, None
    return request


def close(session: Session, request_id: int, user_id: str, *, now: datetime, duration: str,
          referred: bool, need_met: str) -> SupportRequest:
    """The supporter closes the encounter with aggregate-only answers (no free text)."""
    if duration not in DURATIONS or need_met not in NEED_MET:
        raise RequestError("Choose an answer for each question.")
    request = _assigned_to(session, request_id, user_id)
    request.state, request.closed_at = RequestState.CLOSED, now
    request.duration, request.referred, request.need_met = duration, referred, need_met
    return request


def take_as_coordinator(session: Session, request_id: int, coordinator_id: str, *,
                        now: datetime) -> AcceptResult:
    """A coordinator takes an unassigned request themselves (they become its supporter)."""
    request = session.get(SupportRequest, request_id)
    if request is None:
        raise RequestError("That request no longer exists.")
    if not _claim(session, request, coordinator_id, now):
        raise RequestError("Someone has already taken it, or it was cancelled.")
    return AcceptResult(Outcome.ACCEPTED, request, None,
                        _settle_open_offers(session, request, OfferState.TAKEN))


def unassigned(session: Session) -> Sequence[SupportRequest]:
    """Requests still looking for a supporter, oldest first (for coordinators' eyes)."""
    return session.scalars(select(SupportRequest).where(
        SupportRequest.state.in_(UNASSIGNED_STATES)).order_by(SupportRequest.created_at)).all()


def active_cases(session: Session, supporter_id: str) -> Sequence[SupportRequest]:
    """Requests assigned to a supporter and not yet closed."""
    return session.scalars(select(SupportRequest).where(
        SupportRequest.supporter_id == supporter_id,
        SupportRequest.state == RequestState.ASSIGNED).order_by(SupportRequest.id)).all()


def pending_offers(session: Session, supporter_id: str) -> Sequence[Offer]:
    """Offers a supporter can still accept."""
    return session.scalars(select(Offer).join(SupportRequest).where(
        Offer.supporter_id == supporter_id,
        Offer.state.in_([OfferState.PENDING, OfferState.EXPIRED]),
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
