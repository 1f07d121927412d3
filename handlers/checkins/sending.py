"""Check-ins' Slack side: each question sent once, in batches, inside the person's hours."""

from __future__ import annotations

import logging
from collections.abc import Sequence

from slack_sdk.errors import SlackApiError
from sqlalchemy.orm import Session

from bot.checkins import service as checkins
from bot.checkins.service import Role
from bot.infra.duework import JobContext, RetryLater
from bot.infra.messaging import Posted, SlackUnreachable
from bot.infra.models import CheckIn, CheckInState
from handlers.checkins.blocks import (
    METADATA_TYPE,
    checkin_message,
)
from handlers.common.services import Services

log = logging.getLogger(__name__)


def send(services: Services, ctx: JobContext) -> None:
    """The check-in timer for one check-in (see send_batch); raises what went wrong."""
    failures = send_batch(services, [ctx])
    if ctx.item_id in failures:
        raise failures[ctx.item_id]


def send_batch(services: Services, contexts: Sequence[JobContext]) -> dict[int, Exception]:
    """The check-in timers that fell due together: send each question once, inside the
    person's hours. Returns what failed, by due-work item, to be retried.

    The check-ins are claimed ('sending') and committed before anything is posted, and each
    message carries its check-in's id as metadata. If this process dies after posting, the retry
    finds the message in the DM and records it instead of posting again: sent once, never lost.
    Nothing is written in the batch's session before the claim, so the claim (another session)
    never waits on a lock this one holds, even on SQLite.

    One chat.postMessage per check-in, to the person's id (Slack posts it in the app's DM): no
    conversations.open or users.info first, which Slack rate-limits far more tightly. Time zone
    and departures come from the stored hours, kept current by `user_change` events.
    """
    if not contexts:
        return {}
    db, now = contexts[0].session, contexts[0].now
    by_checkin: dict[int, JobContext] = {}
    for ctx in contexts:
        # Two timers for one check-in (a crashed clock's, retaken, and a move's) can fall due
        # together: the newer speaks for it, and the older, superseded, finishes as done.
        checkin_id = int(ctx.payload["checkin_id"])
        if checkin_id not in by_checkin or _version(ctx) > _version(by_checkin[checkin_id]):
            by_checkin[checkin_id] = ctx
    due = checkins.sort_due(db, {i: _version(ctx) for i, ctx in by_checkin.items()},
                            now=now, default_tz=services.settings.program_timezone)
    if due.send:
        with services.sessions.begin() as claim:
            won = checkins.claim_for_sending(claim, due.send)
        due.send = [checkin for checkin in due.send if checkin.id in won]
    failures: dict[int, Exception] = {}
    # A team's caller is asked about the team; everyone else about themselves.
    roles = checkins.roles_of(db, [*due.send, *due.retry])
    posted = services.messenger.post_each(
        [(checkin.user_id or "", checkin_message(checkin.id, roles[checkin.id]))
         for checkin in due.send])
    for checkin, result in zip(due.send, posted, strict=True):
        _record(db, by_checkin[checkin.id], checkin, result, failures)
    for checkin in due.retry:
        _record(db, by_checkin[checkin.id], checkin,
                _find_or_post(services, checkin, roles[checkin.id]), failures)
    for checkin, placed in due.move:
        checkins.move(db, checkin, placed, now=now)
    return failures


def _version(ctx: JobContext) -> int:
    return int(ctx.payload.get("version") or 0)


def _find_or_post(services: Services, checkin: CheckIn, role: Role) -> Posted | Exception:
    """A claimed check-in's retry: the message an earlier attempt posted, or a new one."""
    try:
        channel = services.messenger.open_conversation([checkin.user_id or ""])
        found = services.messenger.find_marked(channel, METADATA_TYPE, "checkin_id", checkin.id)
        return found or services.messenger.post_message(
            channel, **checkin_message(checkin.id, role))
    except Exception as error:  # noqa: BLE001 - recorded per check-in by the caller
        return error


def _record(db: Session, ctx: JobContext, checkin: CheckIn, result: Posted | Exception,
            failures: dict[int, Exception]) -> None:
    if isinstance(result, Posted):
        checkins.mark_sent(db, checkin, result.channel, result.ts, ctx.now)
    elif isinstance(result, SlackUnreachable):
        # The DM is gone (the person left): nothing more will reach them.
        checkins.cancel_remaining(db, user_id=checkin.user_id or "", now=ctx.now)
        checkin.state = CheckInState.CANCELLED
    elif isinstance(result, SlackApiError) and result.response.get("error") == "ratelimited":
        retry = int(result.response.headers.get("Retry-After", 60) or 60)
        failures[ctx.item_id] = RetryLater(retry, "ratelimited")
    else:
        failures[ctx.item_id] = result
