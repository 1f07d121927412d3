"""Durable Slack effects (a transactional outbox) kept as due-work rows.

Every message a state change implies is recorded here in the same transaction as the change: if
the transaction commits, the message will be delivered; if it rolls back, it never existed. Each
effect is a due-work item due at once, with a unique key naming the change that implied it, so
recording the same effect twice keeps one. Once the transaction commits, the process that made
the change delivers its effects straight away (`DELIVER_NOW` in the session's info); the clock
is the safety net for a process that died first. Delivery is at least once, and every effect
that posts marks its message with its key (Slack message metadata) and, on a retry, looks for it
before posting again, so a retry after a crash, timeout or 429 never posts twice.

This module knows nothing of Slack: how each kind of effect is delivered is registered by the
handlers (handlers/requests/effects.py).
"""

from __future__ import annotations

import enum
import logging
from collections.abc import Iterable, Mapping, Sequence
from datetime import date, datetime, timedelta
from typing import Any

from sqlalchemy import Connection, and_, func, or_, select
from sqlalchemy.orm import Session, sessionmaker

from bot.infra import duework
from bot.infra.db import after_commit, listen_once
from bot.infra.models import DueWork, WorkState

log = logging.getLogger(__name__)


class Effect(enum.StrEnum):
    """The kinds of message the outbox carries; each is delivered by a feature's handlers
    (handlers/requests/effects.py, handlers/teams/effects.py)."""

    OFFER_POST = "effect.offer.post"  # an offer DM with Accept / Decline
    OFFER_END = "effect.offer.end"  # an offer DM updated: accepted, taken, withdrawn, expired...
    STATUS = "effect.request.status"  # the requester's status DM, posted once then updated
    INTRO = "effect.request.intro"  # the group DM introducing requester and supporter
    CASE = "effect.request.case"  # the supporter's case message with tips and buttons
    ALERT = "effect.alert"  # one coordinator's alert, posted once, then updated in place
    NOTICE = "effect.notice"  # a fixed note to one person (handed back, withdrawn)
    MESSAGE = "effect.message"  # a prepared message to one person (coverage, digest, nudges)
    TEAM_SESSION = "effect.team.session"  # a group conversation's change, in the team's group DM
    TEAM_INVITATION = "effect.team.invitation"  # the invitation, posted in the team's channel
    TEAM_OUTREACH_START = "effect.team.outreach.start"  # resolve the members, record their notes
    TEAM_OUTREACH = "effect.team.outreach"  # one member's private note
    # A click handed to the clock to apply (handlers/common/handover.py): what it changes and
    # the messages that follow come from there.
    CLICK = "effect.click"


# Every effect kind starts with this, so coordinators' views can tell messages from timers.
PREFIX = "effect."
# The key, in a session's info, of the function that delivers effects right after commit.
DELIVER_NOW = "outbox_deliver_now"
# The key, in a session's info, of the function that, when the messages are handed to a
# listening clock, wakes it from inside the recording transaction (NOTIFY is sent at commit)
# and says so: the commit then needs no connection of its own to wake it.
WAKE_IN = "outbox_wake_in"
_WOKEN = "outbox_woken"
# The key, in a session's info, that defers delivery until bot.infra.db.run_after_commit.
DEFER = "outbox_defer"
_KEYS = "outbox_keys"
MESSAGE = Effect.MESSAGE.value  # the kind handlers/requests/effects.py delivers as a prepared DM
# Every kind of effect: named in full, so counting them uses the (kind, state) index.
KINDS = tuple(effect.value for effect in Effect)
# Effects delivered before the others of the same commit: a person is waiting on them (a
# supporter for an offer, a coordinator for an alert, both people for their introduction, the
# clicker for their click).
URGENT = frozenset({Effect.OFFER_POST.value, Effect.ALERT.value, Effect.INTRO.value,
                    Effect.CLICK.value})
UNFINISHED = (WorkState.PENDING, WorkState.RUNNING)


def record(session: Session, kind: str, payload: Mapping[str, Any], *, key: str,
           now: datetime) -> None:
    """Record one effect in the session's transaction; delivered once it commits."""
    record_many(session, [(kind, payload, key)], now=now)


def record_many(session: Session, effects: Sequence[tuple[str, Mapping[str, Any], str]], *,
                now: datetime) -> None:
    """Record several effects (kind, payload, key) in one statement; delivered once the
    transaction commits."""
    for kind, _payload, _key in effects:
        if not kind.startswith(PREFIX):
            raise ValueError(f"effect kinds start with {PREFIX!r}: {kind!r}")
    duework.schedule_many(session, [duework.Timer(kind, now, key, dict(payload))
                                    for kind, payload, key in effects], now=now)
    session.info.setdefault(_KEYS, []).extend(key for _kind, _payload, key in effects)
    wake_in = session.info.get(WAKE_IN)
    if wake_in is not None and _WOKEN not in session.info:
        session.info[_WOKEN] = wake_in(session)


def deliver_on_commit(sessions: sessionmaker[Session]) -> None:
    """Make every session of `sessions` deliver what it recorded as soon as it commits.

    A session whose info has DEFER (a Slack request's) delivers after its listener has
    returned and Slack has its answer (bot.infra.db.run_after_commit) instead of inside the commit.
    """
    listen_once(sessions, "after_commit", _committed)
    listen_once(sessions, "after_rollback", _rolled_back)


def _committed(session: Session) -> None:
    keys = session.info.pop(_KEYS, None)
    deliver = session.info.get(DELIVER_NOW)
    if session.info.pop(_WOKEN, False) or not keys or deliver is None:
        return  # a listening clock was woken by this commit, nothing was recorded, or no
        # process delivers at once (the clock will)
    if session.info.get(DEFER):
        # Messages someone is waiting on go before housekeeping the transaction also left
        # (a time zone looked up for check-ins days away must not delay an introduction).
        after_commit(session, lambda: deliver(keys), first=True)
        return
    try:
        deliver(keys)
    except Exception as error:  # noqa: BLE001 - the clock delivers what this could not
        log.error("delivering the outbox after a commit failed: %s", type(error).__name__,
                  exc_info=error)


def _rolled_back(session: Session) -> None:
    session.info.pop(_KEYS, None)
    session.info.pop(_WOKEN, None)


def message(session: Session, user_id: str, content: Mapping[str, Any], *, key: str,
            now: datetime) -> None:
    """Record a prepared message (text and blocks we wrote, never anything a person typed) to
    one person: coverage warnings, digests, nudges and alerts that belong to no transition."""
    record(session, MESSAGE, {"user_id": user_id, "message": dict(content)}, key=key, now=now)


def earlier_unfinished(session: Session | Connection, kind: str, key_prefix: str,
                       item_id: int) -> bool:
    """True when an effect of `kind` recorded before `item_id` under `key_prefix` is still to
    run. Effects that post one message and then update it (a status DM, an alert, an offer) wait
    for the post: run side by side, both could post."""
    return session.scalar(select(func.count()).select_from(DueWork).where(
        DueWork.kind == kind, DueWork.state.in_(UNFINISHED), DueWork.id < item_id,
        DueWork.key.like(_escaped(key_prefix) + "%", escape="\\"))) > 0


def handed_back_until(session: Session | Connection, kind: str, key_prefix: str,
                      item_id: int, *, now: datetime) -> datetime | None:
    """When the latest earlier effect of `kind` under `key_prefix` that was handed to a later
    tick is next due, if one was; None when every unfinished one is running or due now (so it
    is about to finish, and waiting for it in place makes sense)."""
    return session.scalar(select(func.max(DueWork.due_at)).where(
        DueWork.kind == kind, DueWork.state == WorkState.PENDING, DueWork.id < item_id,
        DueWork.due_at > now, DueWork.key.like(_escaped(key_prefix) + "%", escape="\\")))


def keys_like(session: Session, kind: str, key_prefix: str) -> list[str]:
    """The keys of every effect of `kind` recorded under `key_prefix`, in any state."""
    return list(session.scalars(select(DueWork.key).where(
        DueWork.kind == kind, DueWork.key.like(_escaped(key_prefix) + "%", escape="\\"))))


def _escaped(prefix: str) -> str:
    return prefix.replace("\\", "\\\\").replace("%", r"\%").replace("_", r"\_")


def due_ids(session: Session, keys: Sequence[str]) -> list[list[int]]:
    """The ids of the effects recorded under `keys` still waiting to run, in the order to run
    them: offers and coordinators' alerts first (someone is waiting on those), then the rest."""
    if not keys:
        return []
    rows = session.execute(select(DueWork.id, DueWork.kind).where(
        DueWork.key.in_(list(keys)), DueWork.state == WorkState.PENDING)).all()
    first = [item_id for item_id, kind in rows if kind in URGENT]
    rest = [item_id for item_id, kind in rows if kind not in URGENT]
    return [ids for ids in (first, rest) if ids]


def due_now(session: Session, *, now: datetime, limit: int) -> list[list[int]]:
    """The ids of up to `limit` effects due by `now` and not yet taken (or taken by a process
    whose lease ran out by `now`: it died), oldest first, as due_ids groups them (urgent ones
    first)."""
    rows = session.execute(select(DueWork.id, DueWork.kind).where(
        DueWork.kind.in_(KINDS), or_(
            and_(DueWork.state == WorkState.PENDING, DueWork.due_at <= now),
            and_(DueWork.state == WorkState.RUNNING, DueWork.lease_until < now)))
        .order_by(DueWork.due_at, DueWork.id).limit(limit)).all()
    first = [item_id for item_id, kind in rows if kind in URGENT]
    rest = [item_id for item_id, kind in rows if kind not in URGENT]
    return [ids for ids in (first, rest) if ids]


def refused(session: Session, *, since: datetime) -> int:
    """How many messages Slack kept refusing (failed for good) since `since`: for coordinators."""
    return session.scalar(select(func.count()).select_from(DueWork).where(
        DueWork.kind.in_(KINDS), DueWork.state == WorkState.FAILED,
        DueWork.finished_at >= since)) or 0


def backlog(session: Session, *, now: datetime, older_than_seconds: int = 300) -> int:
    """Messages still waiting to go out after `older_than_seconds` (Slack slow or refusing)."""
    return session.scalar(select(func.count()).select_from(DueWork).where(
        DueWork.kind.in_(KINDS), DueWork.state.in_(UNFINISHED),
        DueWork.created_at < now - timedelta(seconds=older_than_seconds))) or 0


def tell_coordinators(session: Session, coordinator_ids: Iterable[str], what: str,
                      content: Mapping[str, Any], *, day: date, now: datetime) -> None:
    """A daily job's message to every coordinator: one coordinator's trouble never stops the
    others', and the job run again never sends it twice that day."""
    for user_id in sorted(coordinator_ids):
        message(session, user_id, content, key=f"{what}:{day.isoformat()}:{user_id}", now=now)
