"""The app's own health as the database shows it: the clock's heartbeat and when it counts as
stopped, telling coordinators once when it stops and once when it is back, messages Slack keeps
refusing, and whether the schema is at the newest migration. Nothing here calls Slack."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from datetime import datetime, timedelta
from typing import Any, Literal

from alembic.migration import MigrationContext
from alembic.script import ScriptDirectory
from sqlalchemy import Connection, func, select, update
from sqlalchemy.orm import Session

from bot.infra import outbox
from bot.infra.db import alembic_config, insert_for
from bot.infra.models import ClockHeartbeat, DueWork
from bot.infra.settings import Settings

# A clock is stopped once its last tick is older than this many ticks plus the due-work grace
# period: within the grace, late work still runs as if on time, so nobody has been let down yet.
STALE_TICKS = 3
ROW = 1  # the heartbeat's single row
# The bot scopes manifest.yml asks for (a test keeps the two equal); the doctor checks that
# Slack granted each of them to the token.
SLACK_SCOPES = ("commands", "chat:write", "chat:write.public", "channels:read", "groups:read",
                "im:write", "im:history", "mpim:history", "channels:history", "groups:history",
                "mpim:write", "users:read", "usergroups:read", "files:write")
# Messages held back this long by Slack refusing the app count as "Slack keeps refusing".
HELD_BACK = timedelta(minutes=5)
REFUSED_WINDOW = timedelta(days=1)  # the doctor's look-back for messages refused for good
Change = Literal["stopped", "back"]


def stale_limit(tick_seconds: float, grace_seconds: float) -> timedelta:
    """How old the last tick may be before the clock counts as stopped."""
    return timedelta(seconds=STALE_TICKS * tick_seconds + grace_seconds)


def limit_for(settings: Settings) -> timedelta:
    """The stale limit for these settings' tick and grace period."""
    return stale_limit(settings.tick_seconds, settings.duework_grace_seconds)


def is_stale(since: datetime | None, now: datetime, limit: timedelta) -> bool:
    """Whether a clock last seen at `since` (its last tick, or when it was first expected) has
    stopped by `now`; None (nobody has looked yet) is not stale."""
    return since is not None and now - since > limit


@dataclass(frozen=True)
class ClockStatus:
    """What the heartbeat says at one moment."""

    ticked_at: datetime | None  # None: no clock has ticked on this database
    process: str  # which process ticked last (host:pid)
    since: datetime | None  # what lateness counts from: the last tick, else the row's creation
    limit: timedelta
    stale: bool
    told: bool  # coordinators were told it stopped, and not yet that it is back


def clock_status(session: Session | Connection, *, now: datetime,
                 limit: timedelta) -> ClockStatus:
    """The clock's state at `now`, read only."""
    row = session.execute(select(ClockHeartbeat.ticked_at, ClockHeartbeat.process,
                                 ClockHeartbeat.created_at, ClockHeartbeat.stop_told_at)
                          .where(ClockHeartbeat.id == ROW)).first()
    if row is None:
        return ClockStatus(None, "", None, limit, stale=False, told=False)
    since = row.ticked_at or row.created_at
    return ClockStatus(row.ticked_at, row.process or "", since, limit,
                       stale=is_stale(since, now, limit), told=row.stop_told_at is not None)


def beat(session: Session, process: str, now: datetime) -> None:
    """Record that `process` (a clock) ticked at `now`."""
    statement = insert_for(session, ClockHeartbeat).values(id=ROW, ticked_at=now, process=process[:100],
                                        created_at=now, stops=0)
    session.execute(statement.on_conflict_do_update(
        index_elements=["id"], set_={"ticked_at": now, "process": process[:100]}))


def watch_clock(session: Session, *, now: datetime, limit: timedelta,
                coordinators: Iterable[str],
                stopped: Callable[[ClockStatus], Mapping[str, Any]],
                back: Callable[[ClockStatus], Mapping[str, Any]]) -> Change | None:
    """Tell every coordinator (through the outbox, in this transaction) when the clock has
    stopped, and again when it is back: once per stop, however many processes watch.

    Each message is recorded only by the process whose guarded UPDATE of the heartbeat's row
    changes it; the others find it already changed. `stopped` and `back` word the message.
    """
    # Until some process made the row, nobody knew since when to wait for a tick.
    session.execute(insert_for(session, ClockHeartbeat).values(
        id=ROW, ticked_at=None, process="", created_at=now, stops=0)
        .on_conflict_do_nothing(index_elements=["id"]))
    status = clock_status(session, now=now, limit=limit)
    since = func.coalesce(ClockHeartbeat.ticked_at, ClockHeartbeat.created_at)
    if status.stale and not status.told:
        episode = session.scalar(
            update(ClockHeartbeat)
            .where(ClockHeartbeat.id == ROW, ClockHeartbeat.stop_told_at.is_(None),
                   since < now - limit)
            .values(stop_told_at=now, stops=ClockHeartbeat.stops + 1)
            .returning(ClockHeartbeat.stops).execution_options(synchronize_session=False))
        change: Change = "stopped"
        content = stopped(status)
    elif not status.stale and status.told:
        episode = session.scalar(
            update(ClockHeartbeat)
            .where(ClockHeartbeat.id == ROW, ClockHeartbeat.stop_told_at.is_not(None),
                   ClockHeartbeat.ticked_at >= now - limit)
            .values(stop_told_at=None)
            .returning(ClockHeartbeat.stops).execution_options(synchronize_session=False))
        change = "back"
        content = back(status)
    else:
        return None
    if episode is None:
        return None  # another process got there first
    for user_id in sorted(set(coordinators)):
        outbox.message(session, user_id, content, key=f"clock:{change}:{episode}:{user_id}",
                       now=now)
    return change


@dataclass(frozen=True)
class Refusals:
    """Messages Slack would not take."""

    refused: int  # failed for good since the look-back's start: never delivered
    held_back: int  # still to go out, held back over five minutes by Slack refusing the app
    errors: tuple[str, ...]  # Slack's error codes for those held back, e.g. missing_scope


def refusals(session: Session, *, now: datetime, since: datetime) -> Refusals:
    """Messages Slack refused for good since `since`, and those it keeps refusing now."""
    rows = session.execute(
        select(DueWork.last_error, func.count()).where(
            DueWork.kind.in_(outbox.KINDS), DueWork.state.in_(outbox.UNFINISHED),
            DueWork.last_error.like("slack: %"), DueWork.last_error != "slack: ratelimited",
            DueWork.created_at < now - HELD_BACK)
        .group_by(DueWork.last_error).order_by(DueWork.last_error)).all()
    return Refusals(refused=outbox.refused(session, since=since),
                    held_back=sum(count for _error, count in rows),
                    errors=tuple(str(error).removeprefix("slack: ") for error, _count in rows))


@dataclass(frozen=True)
class Health:
    """What coordinators' Home shows under Health."""

    clock: ClockStatus
    refusals: Refusals
    now: datetime


def overview(session: Session, settings: Settings, now: datetime) -> Health:
    """The clock and Slack's refusals, for the coordinators' Home."""
    return Health(clock=clock_status(session, now=now, limit=limit_for(settings)),
                  refusals=refusals(session, now=now, since=now - timedelta(days=7)), now=now)


def migration_state(connection: Connection) -> tuple[str | None, str | None]:
    """The schema's current migration and the newest this code has (None: none applied)."""
    current = MigrationContext.configure(connection).get_current_revision()
    newest = ScriptDirectory.from_config(alembic_config(connection.engine)).get_current_head()
    return current, newest
