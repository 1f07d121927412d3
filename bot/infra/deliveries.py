"""Deduplication of Slack deliveries across processes: the first to record a key handles it."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any

from sqlalchemy import Connection, delete
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from bot.infra.models import SeenDelivery

KEEP = timedelta(days=1)  # Slack retries within minutes; a day is ample


# Events whose handling is safe to repeat and that arrive for everyone in the workspace: a key
# for each would be a write per profile change, for nothing.
IDEMPOTENT_EVENTS = frozenset({"user_change"})


def delivery_key(body: dict[str, Any]) -> str | None:
    """What identifies one delivery: an event's event_id, or an interaction's trigger_id; None
    for deliveries that need no de-duplication."""
    if body.get("type") == "event_callback" and isinstance(body.get("event_id"), str):
        event = body.get("event")
        if isinstance(event, dict) and event.get("type") in IDEMPOTENT_EVENTS:
            return None
        return "event:" + body["event_id"][:100]
    if body.get("type") in ("block_actions", "view_submission", "shortcut", "message_action") \
            and isinstance(body.get("trigger_id"), str):
        return "trigger:" + body["trigger_id"][:100]
    return None


# Built once: this runs for nearly every click and event, and building the statement (not
# running it) was most of its cost. The table, not the ORM entity, keeps it off the ORM's bulk path.
_TABLE = SeenDelivery.__table__
_RECORD = {
    dialect: insert(_TABLE).on_conflict_do_nothing(index_elements=["key"]).returning(_TABLE.c.key)
    for dialect, insert in (("postgresql", pg_insert), ("sqlite", sqlite_insert))
}


def first_delivery(connection: Connection, key: str, *, now: datetime) -> bool:
    """Record `key` in the connection's transaction; True only for the first delivery to do so,
    in any process. A second copy arriving while the first's transaction is open waits for it
    (the unique key), so it is dropped if the first commits and handled if the first fails."""
    statement = _RECORD[connection.dialect.name]
    return connection.execute(statement, {"key": key, "seen_at": now}).scalar() is not None


def forget_delivery(connection: Connection, key: str) -> None:
    """Drop one record, so a retry of a delivery whose work failed is handled."""
    connection.execute(delete(SeenDelivery).where(SeenDelivery.key == key))


def forget_old(session: Session, *, now: datetime) -> int:
    """Drop records older than a day."""
    return session.execute(delete(SeenDelivery).where(SeenDelivery.seen_at < now - KEEP)).rowcount
