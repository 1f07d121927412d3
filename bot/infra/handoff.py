"""One outbox item handed to the listening clock in a single statement (PostgreSQL only).

A web process that hands a click over must commit it before Slack gets its answer, and every
round trip to PostgreSQL it makes meanwhile is a moment its thread waits for the interpreter
again behind the others that answer Slack. Checking the delivery, recording the item and waking
the listener as separate statements of a transaction took six round trips (BEGIN and COMMIT
included); here they are one statement, run on its own (so it is its own transaction), and the
pool's liveness check is the only other. What it does is what the separate statements did:

- the delivery key is inserted first; a copy of the same delivery arriving meanwhile waits on
  that key and then records nothing (its statement returns no row);
- the item is inserted only when the key was new, with the row outbox.record would write
  (duework.new_row's columns);
- NOTIFY is sent only for a recorded item, and PostgreSQL delivers it as the statement commits.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Any

from sqlalchemy import Engine, bindparam, func, literal, select
from sqlalchemy.dialects.postgresql import insert

from bot.infra import duework, outbox, wakeup
from bot.infra.models import DueWork, SeenDelivery

_WORK = DueWork.__table__
_SEEN = SeenDelivery.__table__


def _statement(checked: bool) -> Any:
    """The statement, with or without a delivery key to check; returns one row if recorded."""
    # duework.new_row's columns: per item what varies, the rest as every new item has them.
    row = duework.new_row("", datetime.min, datetime.min, None, None)
    columns = _WORK.c
    varying = {"kind": "kind", "key": "key", "payload": "payload", "due_at": "now",
               "created_at": "now"}
    values = select(*(
        bindparam(varying[name], type_=columns[name].type) if name in varying
        else literal(row[name], columns[name].type) for name in row))
    if checked:
        seen = (insert(_SEEN).values(key=bindparam("delivery"), seen_at=bindparam("now"))
                .on_conflict_do_nothing(index_elements=["key"]).returning(_SEEN.c.key)
                .cte("seen"))
        values = values.select_from(seen)
    work = insert(_WORK).from_select(list(row), values).returning(columns.id).cte("work")
    return select(func.pg_notify(wakeup.CHANNEL, "")).select_from(work)


# Built once: building a statement costs more than running this one.
_STATEMENTS = {True: _statement(True), False: _statement(False)}


def hand_over(engine: Engine, kind: outbox.Effect, payload: Mapping[str, Any], *, key: str,
              now: datetime, delivery: str | None) -> bool:
    """Record one effect for the listening clock, check the Slack delivery it came from (when
    `delivery` is a key) and wake the clock, committed before returning. False, with nothing
    recorded, when that delivery was already handled (a repeat)."""
    params = {"kind": kind.value, "key": key, "payload": dict(payload), "now": now,
              "delivery": delivery}
    with engine.connect().execution_options(isolation_level="AUTOCOMMIT") as connection:
        rows = connection.execute(_STATEMENTS[delivery is not None], params).all()
    return bool(rows)
