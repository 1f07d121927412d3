"""The request lifecycle's rules that need the program's settings: waves and their timers,
escalation and its alert cadence, check-ins once someone is placed.

Every change goes through bot.requests.service, whose guarded transitions record the Slack
messages they imply in the same transaction (bot.infra.outbox); handlers/requests/effects.py
delivers them. Nothing here talks to Slack, so a change and what it says are committed together
or not at all.
"""

from __future__ import annotations

import logging
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy.orm import Session

from bot.checkins import flows as checkin_flow
from bot.checkins import service as checkins
from bot.checkins.service import Role
from bot.infra import audit, deliveries, duework
from bot.infra.duework import JobContext, JobKind, JobRegistry
from bot.infra.messaging import retry_on_slack_trouble
from bot.infra.models import CheckIn, RequestKind, RequestState, SupportRequest, TeamRequest
from bot.requests import service as domain
from bot.requests import sessions, teams
from bot.requests.service import RequestError, RequestForm
from bot.requests.timers import (
    ESCALATION_REMINDER,
    OFFER_TIMEOUT,
    OUTREACH_DEADLINE,
    OUTREACH_WAIT_HOURS,
    RETENTION,
    RETENTION_MINUTE,
    offer_timeout_key,
    outreach_deadline_key,
    reminder_key,
)

log = logging.getLogger(__name__)


class Needs(checkin_flow.Needs, Protocol):
    """What the request lifecycle uses of the running app: its settings, clock and roles, and
    what check-ins' lifecycle needs, since a placement plans the check-ins."""


def create(services: Needs, db: Session, user_id: str, form: RequestForm,
           source_key: str | None) -> SupportRequest:
    """Record a new request with its first wave (or its escalation) and every message they
    imply, in the caller's transaction: once it commits, nothing of it can be lost."""
    coordinators = sorted(services.roles.coordinator_ids()) if form.crisis else []
    request = domain.create(db, user_id, form, now=services.clock.now(), source_key=source_key,
                            crisis_alert_to=coordinators)
    start(services, db, request)
    return request


def create_team(services: Needs, db: Session, caller_id: str, form: teams.TeamForm,
                source_key: str | None) -> SupportRequest:
    """Record a team request (one supporter, or two for a larger team) with its first wave,
    in the caller's transaction, as for a personal request."""
    seats = teams.seats_for(form.size, services.settings.team_pair_from) if form.size in \
        teams.SIZES else 1
    request = teams.create_team(db, caller_id, form, seats=seats, now=services.clock.now(),
                                source_key=source_key)
    start(services, db, request)
    return request


def start(services: Needs, db: Session, request: SupportRequest) -> None:
    """A new request: offer it (or escalate when nobody is eligible)."""
    if request.crisis:
        audit.record(db, None, "request.crisis_alert", str(request.id), now=services.clock.now())
    dispatch_wave(services, db, request)


def dispatch_wave(services: Needs, db: Session, request: SupportRequest) -> None:
    """Offer the request to the next wave, with a timer; escalate when nobody is left."""
    now = services.clock.now()
    offers = domain.next_wave(db, request, now=now, wave_size=services.settings.wave_size)
    if not offers:
        if request.state == RequestState.OPEN:
            escalate(services, db, request)
        return
    if request.state == RequestState.OPEN:
        timeout = services.settings.offer_timeout(request.urgency)
        duework.schedule(db, OFFER_TIMEOUT, now + timedelta(seconds=timeout), now=now,
                         payload={"request_id": request.id, "wave": request.wave},
                         key=offer_timeout_key(request.id, request.wave))


def advance(services: Needs, db: Session, request: SupportRequest, wave: int) -> None:
    """A wave ended unanswered: expire it and send the next, or escalate."""
    if domain.expire_wave(db, request, wave, now=services.clock.now()):
        dispatch_wave(services, db, request)


def escalate(services: Needs, db: Session, request: SupportRequest) -> None:
    """Nobody eligible is left: one alert to each coordinator, re-noticed on a backing-off
    cadence until someone acts, and the person is told honestly."""
    coordinators = sorted(services.roles.coordinator_ids())
    if not domain.escalate(db, request, now=services.clock.now(), coordinators=coordinators):
        return
    if not coordinators:
        log.error("request %d needs a coordinator but none is configured", request.id)
    _schedule_reminder(services, db, request, 1)


def reminder_delay(services: Needs, number: int) -> timedelta:
    """How long after the previous notice re-notice `number` comes (the last step repeats)."""
    cadence = services.settings.escalation_alert_minutes
    return timedelta(minutes=cadence[min(number, len(cadence)) - 1])


def _schedule_reminder(services: Needs, db: Session, request: SupportRequest, number: int
                       ) -> None:
    now = services.clock.now()
    duework.schedule(db, ESCALATION_REMINDER, now + reminder_delay(services, number), now=now,
                     payload={"request_id": request.id, "escalation": request.escalations,
                              "number": number},
                     key=reminder_key(request.id, request.escalations, number))


def remind(services: Needs, db: Session, request_id: int, escalation: int, number: int
           ) -> None:
    """The escalation timer: while the request has no supporter, ask anyone who has become
    eligible since, refresh and re-notice each coordinator's alert, and re-arm."""
    request = db.get(SupportRequest, request_id)
    if request is None or request.state != RequestState.ESCALATED \
            or request.escalations != escalation:
        return
    domain.next_wave(db, request, now=services.clock.now(), wave_size=services.settings.wave_size)
    if domain.remind(db, request_id, escalation, number, now=services.clock.now(),
                     coordinators=sorted(services.roles.coordinator_ids())) is not None:
        _schedule_reminder(services, db, request, number + 1)


def _cancel_timers(services: Needs, db: Session, request: SupportRequest) -> None:
    for kind in (OFFER_TIMEOUT, ESCALATION_REMINDER):
        duework.cancel(db, now=services.clock.now(), kind=kind,
                       payload_match={"request_id": request.id})


def accepted(services: Needs, db: Session, result: domain.AcceptResult) -> None:
    """After a winning accept (or a coordinator taking it): timers stop, check-ins are planned
    (of a team request, the caller's one check-in about the team)."""
    request = result.request
    assert request is not None
    _cancel_timers(services, db, request)
    if request.kind == RequestKind.TEAM:
        checkin_flow.plan_for_caller(services, db, request)
        now = services.clock.now()
        # Notes waiting for the group's time go at the latest a day after placement.
        duework.schedule(db, OUTREACH_DEADLINE, now + timedelta(hours=OUTREACH_WAIT_HOURS),
                         now=now, payload={"request_id": request.id},
                         key=outreach_deadline_key(request.id))
    else:
        checkin_flow.plan_for(services, db, request)


def another_session(services: Needs, db: Session, checkin_id: int, user_id: str
                    ) -> SupportRequest:
    """A team's caller says, from their check-in, that the team could use another session: a
    new team request like the first (unit, size, what would help, who is on the team), offered
    first to the first one's lead supporter. Once per check-in: a second click raises
    AlreadyOpen with the request the first made."""
    now = services.clock.now()
    checkin = checkins.for_another_session(db, checkin_id, user_id)
    previous = db.get(SupportRequest, checkin.request_id)
    team = db.get(TeamRequest, checkin.request_id)
    if previous is None or team is None:
        raise RequestError("That team request is no longer on record: ask for team support "
                           "again with `/peersupport`.")
    form = teams.TeamForm(unit=team.unit, size=team.size, urgency="today", visit=team.visit,
                          group=team.group, private=team.private,
                          people=tuple(team.people or ()), usergroup=team.usergroup_id,
                          channel=team.channel_id)
    request = teams.create_team(
        db, user_id, form, seats=teams.seats_for(team.size, services.settings.team_pair_from),
        now=now, source_key=f"another:{checkin.id}")
    request.preferred_supporter_id = previous.supporter_id  # wave 0 asks them first
    follow = db.get(TeamRequest, request.id)
    assert follow is not None
    follow.previous_id = previous.id
    db.flush()
    checkins.another_session_asked(db, checkin, now=now)
    start(services, db, request)
    return request


def talk_again(services: Needs, db: Session, checkin: CheckIn) -> SupportRequest:
    """'I'd like to talk to someone again' from a check-in: a personal requester's earlier
    request, copied and offered first to their supporter; anyone checked in with on a team
    request (a member, or the caller for themselves) gets a personal request of their own with
    gentle defaults. A team request is never copied this way. AlreadyOpen if they have one."""
    if checkins.role_of(db, checkin) != Role.PERSONAL:
        if not checkin.user_id:
            raise RequestError("That check-in is no longer open.")
        return create(services, db, checkin.user_id,
                      RequestForm(urgency="today", connection="slack"), source_key=None)
    earlier = db.get(SupportRequest, checkin.request_id)
    if earlier is None or earlier.kind != RequestKind.PERSONAL or not earlier.requester_id:
        raise RequestError("That check-in is no longer open.")
    request = domain.again(db, earlier, now=services.clock.now())
    start(services, db, request)
    return request


def declined(services: Needs, db: Session, result: domain.AcceptResult) -> None:
    """After a decline: move on at once if the whole wave has declined."""
    request = result.request
    assert request is not None
    if request.state == RequestState.OPEN and domain.wave_settled(db, request):
        advance(services, db, request, request.wave)


def handed_back(services: Needs, db: Session, request: SupportRequest) -> None:
    """The supporter could not continue: look for someone else."""
    if request.state != RequestState.ESCALATED:
        # A seat holder stepping back from an escalated team request: its reminders go on.
        _cancel_timers(services, db, request)
    if request.kind == RequestKind.TEAM:
        # Times agreed with the one who left are set aside; whoever joins proposes anew.
        sessions.reset_for_new_supporters(db, request.id, services.clock.now())
    dispatch_wave(services, db, request)


def cancelled(services: Needs, db: Session, request: SupportRequest) -> None:
    """After the requester withdraws (or leaves): no timer of it may fire, and a team's group
    conversation is called off."""
    _cancel_timers(services, db, request)
    if request.kind == RequestKind.TEAM:
        sessions.end_with_request(db, request.id, services.clock.now())


def closed(services: Needs, db: Session, request: SupportRequest) -> None:
    """After a team request is closed: a group conversation still ahead is called off."""
    if request.kind == RequestKind.TEAM:
        sessions.end_with_request(db, request.id, services.clock.now())


def not_safe(services: Needs, db: Session, user_id: str) -> SupportRequest | None:
    """The person with an open request says they are not safe: coordinators are alerted at
    once and, while nobody has it, every available supporter not yet asked is asked now."""
    request = domain.not_safe(db, user_id, now=services.clock.now(),
                              coordinators=sorted(services.roles.coordinator_ids()))
    if request is None:
        return None
    audit.record(db, None, "request.crisis_alert", str(request.id), now=services.clock.now())
    if request.state in (RequestState.OPEN, RequestState.ESCALATED):
        _cancel_timers(services, db, request)  # its waves now run on the urgent timings
        dispatch_wave(services, db, request)
        if request.state == RequestState.ESCALATED:
            _schedule_reminder(services, db, request, 1)
    return request


def requester_left(services: Needs, db: Session, user_id: str) -> None:
    """The person who asked was deactivated: their open request ends (it expires), and whoever
    was helping or alerted is told; no timer of it may fire."""
    request = domain.expire(db, user_id, now=services.clock.now())
    if request is not None:
        _cancel_timers(services, db, request)
        if request.kind == RequestKind.TEAM:
            sessions.end_with_request(db, request.id, services.clock.now())


def direct_offer(services: Needs, db: Session, request: SupportRequest, supporter_id: str
                 ) -> None:
    """A coordinator's pick: a personal offer to one supporter."""
    domain.offer_to(db, request, supporter_id, now=services.clock.now())


def register_jobs(jobs: JobRegistry, services: Needs) -> None:
    """Register the requests' timers. They run however late: a request must never wait longer
    for being late."""

    def offer_timeout(ctx: JobContext) -> None:
        request = ctx.session.get(SupportRequest, ctx.payload["request_id"])
        if request is not None:
            advance(services, ctx.session, request, int(ctx.payload["wave"]))

    def escalation_reminder(ctx: JobContext) -> None:
        remind(services, ctx.session, int(ctx.payload["request_id"]),
               int(ctx.payload.get("escalation") or 1), int(ctx.payload["number"]))

    def retention(ctx: JobContext) -> None:
        domain.forget_identities(ctx.session, now=ctx.now,
                                 retention_days=services.settings.retention_days)
        deliveries.forget_old(ctx.session, now=ctx.now)
        audit.forget_old(ctx.session, now=ctx.now,
                         retention_days=services.settings.audit_retention_days)
        bootstrap(services, ctx.session, after=ctx.now)

    def outreach_deadline(ctx: JobContext) -> None:
        # Does nothing when the notes already started (a time was picked or called off).
        domain.begin_outreach(ctx.session, int(ctx.payload["request_id"]), ctx.now)

    for name, run in ((OFFER_TIMEOUT, offer_timeout), (ESCALATION_REMINDER, escalation_reminder),
                      (RETENTION, retention), (OUTREACH_DEADLINE, outreach_deadline)):
        jobs.register(JobKind(name, retry_on_slack_trouble(run), always_run=True))


def bootstrap(services: Needs, session: Session, *, after: datetime) -> None:
    """Keep the next nightly forgetting of old identities, deliveries and audit entries
    scheduled."""
    duework.schedule_daily(session, RETENTION, RETENTION_MINUTE,
                           tz_name=services.settings.program_timezone, after=after,
                           now=services.clock.now())
