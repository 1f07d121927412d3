"""The request lifecycle's rules that need the program's settings: waves and their timers,
escalation and its alert cadence, check-ins once someone is placed.

Every change goes through bot.requests, whose guarded transitions record the Slack messages
they imply in the same transaction (bot.outbox); handlers/effects.py delivers them. Nothing here
talks to Slack, so a change and what it says are committed together or not at all.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy.orm import Session

from bot.infra import audit, duework
from bot.infra.models import RequestState, SupportRequest
from bot.requests import service as domain
from bot.requests.service import RequestForm
from handlers.checkins import sending as checkin_flow

if TYPE_CHECKING:
    from bot.app.runtime import Runtime

log = logging.getLogger(__name__)
OFFER_TIMEOUT = "offer_timeout"
ESCALATION_REMINDER = "escalation_reminder"


def offer_timeout_key(request_id: int, wave: int) -> str:
    """The one timer of one wave of offers."""
    return f"{OFFER_TIMEOUT}:{request_id}:{wave}"


def reminder_key(request_id: int, escalation: int, number: int) -> str:
    """The timer of one re-notice of one escalation (a request may be escalated again after a
    hand-back: each escalation has reminders of its own)."""
    return f"{ESCALATION_REMINDER}:{request_id}:{escalation}:{number}"


def create(runtime: Runtime, db: Session, user_id: str, form: RequestForm,
           source_key: str | None) -> SupportRequest:
    """Record a new request with its first wave (or its escalation) and every message they
    imply, in the caller's transaction: once it commits, nothing of it can be lost."""
    coordinators = sorted(runtime.roles.coordinator_ids()) if form.crisis else []
    request = domain.create(db, user_id, form, now=runtime.clock.now(), source_key=source_key,
                            crisis_alert_to=coordinators)
    start(runtime, db, request)
    return request


def start(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """A new request: offer it (or escalate when nobody is eligible)."""
    if request.crisis:
        audit.record(db, None, "request.crisis_alert", str(request.id), now=runtime.clock.now())
    dispatch_wave(runtime, db, request)


def dispatch_wave(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """Offer the request to the next wave, with a timer; escalate when nobody is left."""
    now = runtime.clock.now()
    offers = domain.next_wave(db, request, now=now, wave_size=runtime.settings.wave_size)
    if not offers:
        if request.state == RequestState.OPEN:
            escalate(runtime, db, request)
        return
    if request.state == RequestState.OPEN:
        timeout = runtime.settings.offer_timeout(request.urgency)
        duework.schedule(db, OFFER_TIMEOUT, now + timedelta(seconds=timeout), now=now,
                         payload={"request_id": request.id, "wave": request.wave},
                         key=offer_timeout_key(request.id, request.wave))


def advance(runtime: Runtime, db: Session, request: SupportRequest, wave: int) -> None:
    """A wave ended unanswered: expire it and send the next, or escalate."""
    if domain.expire_wave(db, request, wave, now=runtime.clock.now()):
        dispatch_wave(runtime, db, request)


def escalate(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """Nobody eligible is left: one alert to each coordinator, re-noticed on a backing-off
    cadence until someone acts, and the person is told honestly."""
    coordinators = sorted(runtime.roles.coordinator_ids())
    if not domain.escalate(db, request, now=runtime.clock.now(), coordinators=coordinators):
        return
    if not coordinators:
        log.error("request %d needs a coordinator but none is configured", request.id)
    _schedule_reminder(runtime, db, request, 1)


def reminder_delay(runtime: Runtime, number: int) -> timedelta:
    """How long after the previous notice re-notice `number` comes (the last step repeats)."""
    cadence = runtime.settings.escalation_alert_minutes
    return timedelta(minutes=cadence[min(number, len(cadence)) - 1])


def _schedule_reminder(runtime: Runtime, db: Session, request: SupportRequest, number: int
                       ) -> None:
    now = runtime.clock.now()
    duework.schedule(db, ESCALATION_REMINDER, now + reminder_delay(runtime, number), now=now,
                     payload={"request_id": request.id, "escalation": request.escalations,
                              "number": number},
                     key=reminder_key(request.id, request.escalations, number))


def remind(runtime: Runtime, db: Session, request_id: int, escalation: int, number: int
           ) -> None:
    """The escalation timer: while the request has no supporter, ask anyone who has become
    eligible since, refresh and re-notice each coordinator's alert, and re-arm."""
    request = db.get(SupportRequest, request_id)
    if request is None or request.state != RequestState.ESCALATED \
            or request.escalations != escalation:
        return
    domain.next_wave(db, request, now=runtime.clock.now(), wave_size=runtime.settings.wave_size)
    if domain.remind(db, request_id, escalation, number, now=runtime.clock.now(),
                     coordinators=sorted(runtime.roles.coordinator_ids())) is not None:
        _schedule_reminder(runtime, db, request, number + 1)


def _cancel_timers(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    for kind in (OFFER_TIMEOUT, ESCALATION_REMINDER):
        duework.cancel(db, now=runtime.clock.now(), kind=kind,
                       payload_match={"request_id": request.id})


def accepted(runtime: Runtime, db: Session, result: domain.AcceptResult) -> None:
    """After a winning accept (or a coordinator taking it): timers stop, check-ins are planned."""
    request = result.request
    assert request is not None
    _cancel_timers(runtime, db, request)
    checkin_flow.plan_for(runtime, db, request)


def declined(runtime: Runtime, db: Session, result: domain.AcceptResult) -> None:
    """After a decline: move on at once if the whole wave has declined."""
    request = result.request
    assert request is not None
    if request.state == RequestState.OPEN and domain.wave_settled(db, request):
        advance(runtime, db, request, request.wave)


def handed_back(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """The supporter could not continue: look for someone else."""
    _cancel_timers(runtime, db, request)
    dispatch_wave(runtime, db, request)


def cancelled(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """After the requester withdraws (or leaves): no timer of it may fire."""
    _cancel_timers(runtime, db, request)


def not_safe(runtime: Runtime, db: Session, user_id: str) -> SupportRequest | None:
    """The person with an open request says they are not safe: coordinators are alerted at
    once and, while nobody has it, every available supporter not yet asked is asked now."""
    request = domain.not_safe(db, user_id, now=runtime.clock.now(),
                              coordinators=sorted(runtime.roles.coordinator_ids()))
    if request is None:
        return None
    audit.record(db, None, "request.crisis_alert", str(request.id), now=runtime.clock.now())
    if request.state in (RequestState.OPEN, RequestState.ESCALATED):
        _cancel_timers(runtime, db, request)  # its waves now run on the urgent timings
        dispatch_wave(runtime, db, request)
        if request.state == RequestState.ESCALATED:
            _schedule_reminder(runtime, db, request, 1)
    return request


def requester_left(runtime: Runtime, db: Session, user_id: str) -> None:
    """The person who asked was deactivated: their open request ends (it expires), and whoever
    was helping or alerted is told; no timer of it may fire."""
    request = domain.expire(db, user_id, now=runtime.clock.now())
    if request is not None:
        _cancel_timers(runtime, db, request)


def direct_offer(runtime: Runtime, db: Session, request: SupportRequest, supporter_id: str
                 ) -> None:
    """A coordinator's pick: a personal offer to one supporter."""
    domain.offer_to(db, request, supporter_id, now=runtime.clock.now())
