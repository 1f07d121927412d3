"""One database session per Slack request, committed in one place, and the checks that ride on
it: work slots after acknowledging, and dropping a delivery Slack (or a proxy) repeated."""

from __future__ import annotations

import functools
import logging
import threading
from collections.abc import Callable
from typing import Any, TypeVar

from sqlalchemy import Connection
from sqlalchemy.orm import Session, SessionTransaction

from bot.infra.db import discard_after_commit, run_after_commit
from bot.infra.deliveries import first_delivery, forget_delivery

Listener = TypeVar("Listener", bound=Callable[..., Any])
# The key, in a request session's `info`, of the semaphore bounding work after acknowledgements.
WORK_SLOTS = "work_slots"
# The key, in a request session's `info`, of (delivery key, now) still to be checked.
DELIVERY = "delivery"
# The key, in a request session's `info`, of a delivery recorded in its own transaction.
RECORDED = "delivery_recorded"
# The key, in a Bolt request's context, of a function taking work to run in the same thread once
# the HTTP answer has gone out (set by the web transport; absent in Socket Mode).
AFTER_ANSWER = "after_answer"
log = logging.getLogger(__name__)


class RepeatedDelivery(Exception):
    """This delivery was already handled (by any process): acknowledge it and do nothing."""


def check_delivery(session: Session, _transaction: SessionTransaction,
                   connection: Connection) -> None:
    """Session hook (after_begin): a request's first transaction checks its delivery key first.

    Checking here, not before acknowledging, keeps the acknowledgement free of database work.
    On PostgreSQL the key is recorded in the work's own transaction: a copy arriving meanwhile
    waits for it on the key alone, and if the work fails the record goes with it, so Slack's
    retry is handled. SQLite has a single writer: recorded there, the key would hold the whole
    database's write lock for as long as the work runs, Slack calls included. It is committed
    on its own instead, and forgotten again if the work fails (see transactional).
    """
    pending = session.info.pop(DELIVERY, None)
    if pending is None:
        return
    key, now = pending
    if connection.dialect.name == "sqlite":
        with connection.engine.begin() as own:
            first = first_delivery(own, key, now=now)
        if first:
            session.info[RECORDED] = key
    else:
        first = first_delivery(connection, key, now=now)
    if not first:
        raise RepeatedDelivery()


def _forget_recorded(db: Session) -> None:
    key = db.info.pop(RECORDED, None)
    if key is None:
        return
    try:
        with db.get_bind().connect() as own:
            forget_delivery(own, key)
            own.commit()
    except Exception:  # noqa: BLE001 - the work's own failure is what gets reported
        log.warning("could not forget a failed delivery; a retry of it will be dropped")


class _AckThenWait:
    """The listener's ack(), which answers Slack at once and then waits for a work slot.

    Every listener runs on Bolt's listener pool and answers Slack from there. When that pool's
    threads were all busy with slow Web API calls, new requests waited for a thread before they
    could even acknowledge. Now the pool is large, acknowledging never waits, and the work after
    it is what is bounded: a listener that has acknowledged parks (using no CPU) until one of
    `work_slots` is free. One that already holds a database transaction (it did its work
    before answering, as a form submission does) finishes at once instead: parked, it would
    hold a pooled connection and its locks while it waited.
    """

    def __init__(self, ack: Callable[..., Any], slots: threading.Semaphore, db: Session):
        self._ack, self._slots, self._db, self._held = ack, slots, db, False
        self.acked = False

    def __call__(self, *args: Any, **kwargs: Any) -> Any:
        answer = self._ack(*args, **kwargs)
        self.acked = True
        if not self._held and not self._db.in_transaction():
            self._slots.acquire()
            self._held = True
        if DELIVERY in self._db.info:
            # A listener that never touches the database is still checked, now that Slack has
            # its answer: beginning the transaction runs check_delivery.
            self._db.connection()
        return answer

    def answer_only(self) -> None:
        """Acknowledge with an empty answer, taking no work slot (there is no work to do)."""
        if not self.acked:
            self.acked = True
            self._ack()

    def release(self) -> None:
        if self._held:
            self._held = False
            self._slots.release()


def transactional(listener: Listener) -> Listener:
    """Commit the request's session when `listener` returns, roll it back if it raises.

    The session itself is put in the context (as `db`) by the app's global middleware. Bolt runs
    a listener on a worker thread after ack(), after every middleware has already returned, so
    the commit cannot live in a middleware: it wraps the listener instead. functools.wraps keeps
    the listener's own signature, which is what Bolt reads to inject its arguments.
    """

    @functools.wraps(listener)
    def run(*args: Any, **kwargs: Any) -> Any:
        db = kwargs["db"] if "db" in kwargs else kwargs["context"]["db"]
        slots = db.info.get(WORK_SLOTS)
        acked = _AckThenWait(kwargs["ack"], slots, db) if "ack" in kwargs and slots else None
        if acked is not None:
            kwargs["ack"] = acked
        try:
            done, result = in_transaction(db, lambda: listener(*args, **kwargs))
            if not done and acked is not None:
                acked.answer_only()  # empty: the first copy gave (or gives) the real answer
            return result
        finally:
            if acked is not None:
                acked.release()

    run.__transactional__ = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]


def in_transaction(db: Session, work: Callable[[], Any]) -> tuple[bool, Any]:
    """Run `work` in the request's session and commit, then run what it left for after the
    commit; roll back and re-raise if it raises. Returns (False, None) without doing anything
    when the delivery is a repeat of one already handled, else (True, what `work` returned)."""
    try:
        result = work()
        db.commit()
    except RepeatedDelivery:
        db.rollback()
        discard_after_commit(db)
        db.close()
        log.info("dropped a repeated Slack delivery")
        return False, None
    except BaseException:
        db.rollback()
        discard_after_commit(db)
        _forget_recorded(db)
        db.close()
        raise
    db.close()
    run_after_commit(db)  # the Slack calls: part of the work (and of a listener's slot)
    return True, result
