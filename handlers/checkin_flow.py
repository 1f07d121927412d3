"""Check-ins' Slack side: planning at connection, sending once, and what answers set off."""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING

from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot import checkins, duework, roster
from bot.db import after_commit
from bot.duework import JobContext, RetryLater
from bot.library import Moment
from bot.messaging import SlackUnreachable
from bot.models import CheckIn, CheckInState, ContactHours, SupportRequest
from handlers.blocks.checkins import (
    METADATA_TYPE,
    checkin_message,
    struggling_alert,
    struggling_note,
    supporter_reminder,
)

if TYPE_CHECKING:
    from bot.runtime import Runtime

log = logging.getLogger(__name__)
SUPPORTER_REMINDER = "checkin_supporter_reminder"


def plan_for(runtime: Runtime, db: Session, request: SupportRequest) -> None:
    """When someone is connected: plan their check-ins (if welcome) and the supporter's nudge."""
    now = runtime.clock.now()
    planned = checkins.plan(db, request, now=now, offsets_days=runtime.settings.checkin_days,
                            default_tz=runtime.settings.program_timezone)
    if not planned:
        return
    supporter = roster.get(db, request.supporter_id or "")
    if supporter is not None and supporter.checkin_reminders:
        nudge = planned[1] if len(planned) > 1 else planned[0]
        duework.schedule(db, SUPPORTER_REMINDER, nudge.due_at, now=now,
                         payload={"request_id": request.id},
                         key=f"{SUPPORTER_REMINDER}:{request.id}")
    user_id = request.requester_id
    after_commit(db, lambda: refresh_time_zone(runtime, user_id))


def refresh_time_zone(runtime: Runtime, user_id: str | None) -> None:
    """Take the person's time zone from Slack and move their check-ins to fit, if it changed."""
    if not user_id:
        return
    try:
        tz = str(runtime.messenger.user_info(user_id).get("tz") or "")
    except SlackUnreachable:
        return
    with runtime.sessions.begin() as session:
        hours = session.get(ContactHours, user_id)
        if tz and hours is not None and hours.tz != tz:
            checkins.set_hours(session, user_id, start=hours.start_minute, end=hours.end_minute,
                               now=runtime.clock.now(), default_tz=tz, tz=tz)


def send(runtime: Runtime, ctx: JobContext) -> None:
    """The check-in timer: send the question once, inside the person's hours.

    The check-in is claimed ('sending') and committed before it is posted, and the message
    carries the check-in's id as metadata. If this process dies after posting, the retry finds
    the message in the DM and records it instead of posting again: sent once, never lost.
    This function writes nothing in its own session before the claim, so the claim (another
    session) never waits on a lock this one holds, even on SQLite.
    """
    db = ctx.session
    checkin = db.get(CheckIn, ctx.payload["checkin_id"])
    if checkin is None or checkin.version != ctx.payload.get("version") or \
            checkin.state not in (CheckInState.SCHEDULED, CheckInState.SENDING):
        return  # moved, answered, cancelled, or already sent
    user_id = checkin.user_id or ""
    try:
        user = runtime.messenger.user_info(user_id)
    except SlackUnreachable:
        user = {"deleted": True}
    if user.get("deleted"):
        checkins.cancel_remaining(db, user_id=user_id, now=ctx.now)
        if checkin.state == CheckInState.SENDING:
            checkin.state = CheckInState.CANCELLED
        return
    stored = db.get(ContactHours, user_id)
    tz = str(user.get("tz") or (stored.tz if stored else runtime.settings.program_timezone))
    start, end = (stored.start_minute, stored.end_minute) if stored else \
        (checkins.DEFAULT_START, checkins.DEFAULT_END)
    retrying = checkin.state == CheckInState.SENDING
    if not retrying:
        placed = checkins.place(ctx.now, tz, start, end)
        if placed > ctx.now:  # late (the clock was down), or the person changed their hours
            checkins.move(db, checkin, placed, now=ctx.now)
            return
        with runtime.sessions.begin() as claim:
            if not checkins.claim_for_sending(claim, checkin.id):
                return  # another clock has it
    channel = runtime.messenger.open_conversation([user_id])
    # Only a check-in claimed by an earlier attempt can already be in the DM.
    posted = runtime.messenger.find_marked(channel, METADATA_TYPE, "checkin_id", checkin.id) \
        if retrying else None
    if posted is None:
        try:
            posted = runtime.messenger.post_message(channel, **checkin_message(checkin.id))
        except SlackApiError as error:
            if error.response.get("error") == "ratelimited":
                retry = int(error.response.headers.get("Retry-After", 60) or 60)
                raise RetryLater(retry, "ratelimited") from None
            raise
    db.refresh(checkin)
    checkins.mark_sent(db, checkin, posted.channel, posted.ts, ctx.now)
    checkins.hours_of(db, user_id, default_tz=tz, now=ctx.now).tz = tz


def remind_supporter(runtime: Runtime, ctx: JobContext) -> None:
    """The supporter's optional nudge, if they still want them and the request is theirs."""
    request = ctx.session.get(SupportRequest, ctx.payload["request_id"])
    if request is None or not request.supporter_id or not request.requester_id:
        return
    supporter = roster.get(ctx.session, request.supporter_id)
    if supporter is None or not supporter.checkin_reminders:
        return
    try:
        runtime.messenger.post_dm(supporter.user_id, **supporter_reminder(request.requester_id))
    except SlackUnreachable:
        return


def after_answer(runtime: Runtime, db: Session, checkin: CheckIn) -> None:
    """What an answer sets off beyond its own message: alerts for 'struggling'."""
    if checkin.answer != "struggling":
        return
    request = db.get(SupportRequest, checkin.request_id)
    supporter_id = request.supporter_id if request is not None else None
    requester_id = checkin.user_id
    coordinators = sorted(runtime.roles.coordinator_ids()) \
        if runtime.settings.alert_on_struggling else []

    def send_alerts() -> None:
        for coordinator in coordinators:
            try:
                runtime.messenger.post_dm(coordinator, **struggling_alert())
            except SlackUnreachable:
                continue
        if supporter_id and requester_id:
            try:
                runtime.messenger.post_dm(supporter_id, **struggling_note(requester_id))
            except SlackUnreachable:
                pass

    after_commit(db, send_alerts)


def struggling_surfacing(runtime: Runtime):  # noqa: ANN201
    """Professional help and resources shown to someone who answers 'struggling'."""
    return runtime.library.for_moment(Moment.CHECKIN_STRUGGLING, audience="clinician")

