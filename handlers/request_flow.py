"""The request lifecycle's Slack side, shared by listeners and timers.

Each function changes the database through bot.requests in the caller's session, and registers
the Slack messages to send once that transaction has committed (bot.db.after_commit): an offer
or a button is never shown before the rows it points at are visible to every process.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import TYPE_CHECKING

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot import audit, duework
from bot import requests as domain
from bot.db import after_commit, first_time, run_after_commit
from bot.library import Moment
from bot.messaging import SlackUnreachable
from bot.models import CoordinatorAlert, Offer, OfferState, RequestState, SupportRequest
from handlers import checkin_flow
from handlers.blocks.requests import (
    alert_resolved,
    coordinator_alert,
    introduction,
    offer_ended,
    offer_message,
    requester_status,
    supporter_case,
)

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)
OFFER_TIMEOUT = "offer_timeout"
ESCALATION_REMINDER = "escalation_reminder"


def start(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """A new request: tell the person what happens next, alert at once if they are not safe,
    and send the first wave of offers (or escalate when nobody is eligible)."""
    if request.crisis:
        _alert_coordinators(runtime, db, request)
        audit.record(db, None, "request.crisis_alert", str(request.id), now=runtime.clock.now())
    dispatch_wave(runtime, db, request)
    _refresh_status(runtime, db, request)


def dispatch_wave(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """Offer the request to the next wave, with a timer; escalate when nobody is left."""
    now = runtime.clock.now()
    offers = domain.next_wave(db, request, now=now, wave_size=runtime.settings.wave_size)
    if not offers:
        escalate(runtime, db, request)
        return
    timeout = runtime.settings.offer_timeout(request.urgency)
    duework.schedule(db, OFFER_TIMEOUT, now + timedelta(seconds=timeout), now=now,
                     payload={"request_id": request.id, "wave": request.wave},
                     key=f"{OFFER_TIMEOUT}:{request.id}:{request.wave}")
    _post_after_commit(runtime, db, request, offers)


def _post_after_commit(runtime: Runtime, db: Session, request: SupportRequest,
                       offers: list[Offer]) -> None:
    request_id, wave, offer_ids = request.id, request.wave, [offer.id for offer in offers]
    after_commit(db, lambda: _post_offers(runtime, request_id, wave, offer_ids))


def _post_offers(runtime: Runtime, request_id: int, wave: int, offer_ids: list[int]) -> None:
    with runtime.sessions.begin() as db:
        request = db.get(SupportRequest, request_id)
        by_id = {o.id: o for o in db.scalars(select(Offer).where(Offer.id.in_(offer_ids)))}
        offers = [by_id[offer_id] for offer_id in offer_ids]
        message = {offer.id: offer_message(request, offer.id) for offer in offers}
    # Posted a few at a time: a wave of fifty, one after another, would take seconds.
    results = runtime.messenger.post_dms(
        [(offer.supporter_id, message[offer.id]) for offer in offers])
    delivered = {offer.id: result for offer, result in zip(offers, results, strict=True)}
    with runtime.sessions.begin() as db:
        request = db.get(SupportRequest, request_id)
        stored = {o.id: o for o in db.scalars(select(Offer).where(Offer.id.in_(offer_ids)))}
        for offer_id, posted in delivered.items():
            offer = stored[offer_id]
            if posted is None:
                offer.state = OfferState.FAILED
                continue
            offer.channel, offer.ts = posted.channel, posted.ts
            if offer.state == OfferState.TAKEN or request.state not in (
                    RequestState.OPEN, RequestState.ESCALATED):
                # Taken while we were still posting: show it at once.
                how = "withdrawn" if request.state == RequestState.CANCELLED else "taken"
                after_commit(db, lambda o=offer, h=how: _end_offer(runtime, o.channel, o.ts, h))
        if request.state == RequestState.OPEN and request.wave == wave \
                and domain.wave_settled(db, request):
            # Nobody in this wave could be reached: move on now instead of at the timeout.
            advance(runtime, db, request, wave)
    run_after_commit(db)  # the `with` block committed: send what it registered


def _end_offer(runtime: Runtime, channel: str | None, ts: str | None, how: str) -> None:
    if channel and ts:
        try:
            runtime.messenger.update_message(channel, ts, **offer_ended(how))
        except SlackUnreachable:
            pass


def advance(runtime: Runtime, db: Session, request: SupportRequest, wave: int) -> None:
    """A wave ended unanswered: expire it and send the next, or escalate."""
    if request.state != RequestState.OPEN or request.wave != wave:
        return
    domain.expire_wave(db, request, wave, now=runtime.clock.now())
    dispatch_wave(runtime, db, request)


def escalate(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """Nobody eligible is left: alert every coordinator, repeat until someone acts, and tell
    the person honestly."""
    if not domain.escalate(db, request, now=runtime.clock.now()):
        return
    if not request.crisis:  # someone not safe was already alerted on at once
        _alert_coordinators(runtime, db, request)
    _schedule_reminder(runtime, db, request, 1)
    _refresh_status(runtime, db, request)


def _schedule_reminder(runtime: Runtime, db: Session, request: SupportRequest, number: int
                       ) -> None:
    now = runtime.clock.now()
    duework.schedule(db, ESCALATION_REMINDER,
                     now + timedelta(seconds=runtime.settings.escalation_repeat_seconds), now=now,
                     payload={"request_id": request.id, "number": number},
                     key=f"{ESCALATION_REMINDER}:{request.id}:{number}")


def remind(runtime: Runtime, db: Session, request_id: int, number: int) -> None:
    """The escalation timer: while the request has no supporter, alert again and re-arm."""
    request = db.get(SupportRequest, request_id)
    if request is None or request.state not in (RequestState.OPEN, RequestState.ESCALATED):
        return
    if request.state == RequestState.OPEN:
        dispatch_wave(runtime, db, request)  # someone may have come on duty meanwhile
        if request.state == RequestState.OPEN:
            return
    # Still escalated: ask anyone who has become eligible since, as well as the coordinators.
    newcomers = domain.next_wave(db, request, now=runtime.clock.now(),
                                 wave_size=runtime.settings.wave_size)
    if newcomers:
        _post_after_commit(runtime, db, request, newcomers)
    _alert_coordinators(runtime, db, request, reminder=number)
    _schedule_reminder(runtime, db, request, number + 1)


def _alert_coordinators(runtime: Runtime, db: Session, request: SupportRequest, *,
                        reminder: int = 0) -> None:
    content = coordinator_alert(request, reminder=reminder)
    coordinators = sorted(runtime.roles.coordinator_ids())
    request_id = request.id

    def send() -> None:
        sent = []
        for coordinator in coordinators:
            try:
                posted = runtime.messenger.post_dm(coordinator, **content)
            except SlackUnreachable:
                continue
            sent.append(CoordinatorAlert(request_id=request_id, coordinator_id=coordinator,
                                         channel=posted.channel, ts=posted.ts,
                                         created_at=runtime.clock.now()))
        if not sent:
            log.error("request %d: no coordinator could be alerted", request_id)
        with runtime.sessions.begin() as session:
            session.add_all(sent)

    if not coordinators:
        log.error("request %d needs a coordinator but none is configured", request.id)
    after_commit(db, send)


def _resolve_alerts(runtime: Runtime, db: Session, request: SupportRequest, text: str) -> None:
    alerts = [(a.channel, a.ts) for a in db.scalars(select(CoordinatorAlert).where(
        CoordinatorAlert.request_id == request.id))]

    def send() -> None:
        for channel, ts in alerts:
            try:
                runtime.messenger.update_message(channel, ts, **alert_resolved(text))
            except SlackUnreachable:
                continue

    if alerts:
        after_commit(db, send)


def _cancel_timers(db: Session, request: SupportRequest, now) -> None:  # noqa: ANN001
    for kind in (OFFER_TIMEOUT, ESCALATION_REMINDER):
        duework.cancel(db, now=now, kind=kind, payload_match={"request_id": request.id})


def _refresh_status(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """Post the requester's status DM, or update it in place, once this transaction commits.

    Registered at most once per request per transaction, and built from the database when it
    is sent, so several changes in one transaction send one message showing the last state.
    """
    if not request.requester_id or not first_time(db, ("status", request.id)):
        return
    request_id = request.id

    def send() -> None:
        with runtime.sessions.begin() as session:
            stored = session.get(SupportRequest, request_id)
            if stored is None or not stored.requester_id:
                return
            content = requester_status(stored, runtime.library.for_moment(
                Moment.REQUEST_WAITING, audience="clinician"))
            try:
                if stored.status_channel and stored.status_ts:
                    runtime.messenger.update_message(stored.status_channel, stored.status_ts,
                                                     **content)
                else:
                    posted = runtime.messenger.post_dm(stored.requester_id, **content)
                    stored.status_channel, stored.status_ts = posted.channel, posted.ts
            except SlackUnreachable:
                return

    after_commit(db, send)


def accepted(runtime: Runtime, db: Session, result: domain.AcceptResult) -> None:
    """After a winning accept (or a coordinator taking it): the other offers, the introduction,
    the supporter's tips, the requester's status and the coordinators' alerts."""
    request = result.request
    assert request is not None
    _cancel_timers(db, request, runtime.clock.now())
    checkin_flow.plan_for(runtime, db, request)
    others = [(o.channel, o.ts) for o in result.others]
    own = (result.offer.channel, result.offer.ts) if result.offer is not None else (None, None)
    intro = introduction(request)
    case = supporter_case(request, runtime.library.for_moment(Moment.SUPPORTER_ACCEPTED,
                                                              audience="supporter"))
    requester_id, supporter_id, request_id = request.requester_id, request.supporter_id, \
        request.id

    def send() -> None:
        _end_offer(runtime, *own, "accepted")
        for channel, ts in others:
            _end_offer(runtime, channel, ts, "taken")
        try:
            channel = runtime.messenger.open_conversation([requester_id, supporter_id])
            runtime.messenger.post_message(channel, **intro)
        except SlackUnreachable:
            channel = None
        runtime.messenger.post_dm(supporter_id, **case)
        if channel:
            with runtime.sessions.begin() as session:
                session.get(SupportRequest, request_id).intro_channel = channel

    after_commit(db, send)
    _refresh_status(runtime, db, request)
    _resolve_alerts(runtime, db, request, f"Placed: <@{supporter_id}> has this request.")


def declined(runtime: Runtime, db: Session, result: domain.AcceptResult) -> None:
    """After a decline: thank them, and move on at once if the whole wave has declined."""
    offer, request = result.offer, result.request
    assert offer is not None and request is not None
    after_commit(db, lambda c=offer.channel, t=offer.ts: _end_offer(runtime, c, t, "declined"))
    if request.state == RequestState.OPEN and domain.wave_settled(db, request):
        advance(runtime, db, request, request.wave)


def handed_back(runtime: Runtime, db: Session, request: SupportRequest, supporter_id: str
                ) -> None:
    """Tell the person kindly and look for someone else."""
    _cancel_timers(db, request, runtime.clock.now())
    user_id = request.requester_id
    after_commit(db, lambda: runtime.messenger.post_dm(user_id, text=(
        "Your supporter cannot continue with this conversation: this happens, for example when "
        "they know you, and it is not about you. We are finding someone else for you now.")))
    dispatch_wave(runtime, db, request)
    _refresh_status(runtime, db, request)


def cancelled(runtime: Runtime, db: Session, request: SupportRequest, withdrawn: list[Offer],
              supporter_id: str | None) -> None:
    """After the requester withdraws: offers, timers, the supporter and coordinators."""
    _cancel_timers(db, request, runtime.clock.now())
    ended = [(o.channel, o.ts) for o in withdrawn]

    def send() -> None:
        for channel, ts in ended:
            _end_offer(runtime, channel, ts, "withdrawn")
        if supporter_id:
            runtime.messenger.post_dm(supporter_id, text=(
                "The person you were supporting has closed their request. Thank you."))

    after_commit(db, send)
    _refresh_status(runtime, db, request)
    _resolve_alerts(runtime, db, request, "Withdrawn by the person who asked.")


def closed(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """After the supporter closes the encounter."""
    _refresh_status(runtime, db, request)


def direct_offer(runtime: Runtime, db: Session, request: SupportRequest, supporter_id: str
                 ) -> None:
    """A coordinator's pick: a personal offer to one supporter."""
    offer = domain.offer_to(db, request, supporter_id, now=runtime.clock.now())
    offer_id = offer.id
    content = offer_message(request, offer.id, direct=True)

    def send() -> None:
        try:
            posted = runtime.messenger.post_dm(supporter_id, **content)
        except SlackUnreachable:
            return
        with runtime.sessions.begin() as session:
            stored = session.get(Offer, offer_id)
            stored.channel, stored.ts = posted.channel, posted.ts

    after_commit(db, send)
