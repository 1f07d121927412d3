"""Check-ins' lifecycle: planning them when someone is connected, keeping them to the person's
time zone and presence as Slack reports it, and what an answer or a planned nudge sets off."""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime
from typing import Any, Protocol

from sqlalchemy.orm import Session, sessionmaker

from bot.checkins import service as checkins
from bot.checkins.service import Role
from bot.checkins.timers import SUPPORTER_REMINDER, supporter_reminder_key
from bot.infra import duework, outbox
from bot.infra.clock import Clock
from bot.infra.db import after_commit
from bot.infra.messaging import Messenger, SlackUnreachable
from bot.infra.models import CheckIn, ContactHours, RequestKind, SupportRequest
from bot.infra.roles import RoleResolver
from bot.infra.settings import Settings
from bot.roster import supporters as roster


class Needs(Protocol):
    """What check-ins' lifecycle uses of the running app."""

    settings: Settings
    clock: Clock
    messenger: Messenger
    roles: RoleResolver
    sessions: sessionmaker[Session]


def plan_for(services: Needs, db: Session, request: SupportRequest) -> None:
    """When someone is connected: plan their check-ins (if welcome) and the supporter's nudge."""
    now = services.clock.now()
    planned = checkins.plan(db, request, now=now, offsets_days=services.settings.checkin_days,
                            default_tz=services.settings.program_timezone)
    if not planned:
        return
    supporter = roster.get(db, request.supporter_id or "")
    if supporter is not None and supporter.checkin_reminders:
        nudge = planned[1] if len(planned) > 1 else planned[0]
        duework.schedule(db, SUPPORTER_REMINDER, nudge.due_at, now=now,
                         payload={"request_id": request.id},
                         key=supporter_reminder_key(request.id))
    user_id = request.requester_id
    after_commit(db, lambda: refresh_time_zone(services, user_id))


def plan_for_caller(services: Needs, db: Session, request: SupportRequest) -> None:
    """When a team request is placed: one check-in for its caller, about the team,
    `team_checkin_hours` later inside their own hours (a placement again keeps the first)."""
    caller = request.requester_id
    if request.kind != RequestKind.TEAM or not caller:
        return
    hours = services.settings.team_checkin_hours
    planned = checkins.plan_person(db, request.id, caller, now=services.clock.now(),
                                   offsets_days=[hours / 24],
                                   default_tz=services.settings.program_timezone)
    if planned:
        after_commit(db, lambda: refresh_time_zone(services, caller))


def refresh_time_zone(services: Needs, user_id: str | None) -> None:
    """Take the person's time zone from Slack and move their check-ins to fit, if it changed."""
    if not user_id:
        return
    try:
        tz = str(services.messenger.user_info(user_id).get("tz") or "")
    except SlackUnreachable:
        return
    with services.sessions.begin() as session:
        hours = session.get(ContactHours, user_id)
        if tz and hours is not None and hours.tz != tz:
            checkins.set_hours(session, user_id, start=hours.start_minute, end=hours.end_minute,
                               now=services.clock.now(), default_tz=tz, tz=tz)


def profile_changed(services: Needs, db: Session, user: dict[str, Any]) -> None:
    """A `user_change` event: apply a departure or a new time zone to the person's check-ins."""
    user_id = user.get("id")
    if isinstance(user_id, str) and user_id:
        tz = user.get("tz")
        checkins.profile_changed(db, user_id, deleted=user.get("deleted") is True,
                                 tz=tz if isinstance(tz, str) else None,
                                 now=services.clock.now())


def remind_supporter(db: Session, request_id: int, *, nudge: Callable[[str], Mapping[str, Any]],
                     item_id: int, now: datetime) -> None:
    """The supporter's optional nudge (worded by `nudge`, given the person's id), if they still
    want them and the request is still theirs. It names the request's own person only: of a
    team request, the caller the supporter met, never a member (who is told to nobody)."""
    request = db.get(SupportRequest, request_id)
    if request is None or not request.supporter_id or not request.requester_id:
        return
    supporter = roster.get(db, request.supporter_id)
    if supporter is None or not supporter.checkin_reminders:
        return
    outbox.message(db, supporter.user_id, nudge(request.requester_id),
                   key=f"nudge:{request.id}:{item_id}", now=now)


def after_answer(services: Needs, db: Session, checkin: CheckIn, *,
                 alert: Callable[[Role], Mapping[str, Any]],
                 note: Callable[[Role, str], Mapping[str, Any]]) -> None:
    """What an answer sets off beyond its own message: for 'struggling', an alert to every
    coordinator (when the program wants them; `alert`, given the check-in's role, names
    nobody) and a note (`note`, given the role and the person's id) to whoever supported them:
    a personal requester's supporter, or every supporter of a team whose caller answered. A
    team member's answer tells no supporter: that would say who opted in."""
    if checkin.answer != "struggling":
        return
    role = checkins.role_of(db, checkin)
    request = db.get(SupportRequest, checkin.request_id)
    person = checkin.user_id
    coordinators = sorted(services.roles.coordinator_ids()) \
        if services.settings.alert_on_struggling else []
    now = services.clock.now()
    for coordinator in coordinators:
        outbox.message(db, coordinator, alert(role),
                       key=f"struggling:{checkin.id}:{coordinator}", now=now)
    if request is None or not person or role == Role.MEMBER:
        return
    if role == Role.CALLER:
        for supporter_id in checkins.team_supporters(db, request):
            outbox.message(db, supporter_id, note(role, person),
                           key=f"struggling:{checkin.id}:supporter:{supporter_id}", now=now)
    elif request.supporter_id:
        outbox.message(db, request.supporter_id, note(role, person),
                       key=f"struggling:{checkin.id}:supporter", now=now)
