"""Every session factory the app builds sends what its transactions record, however many were
built before it in the same process (one per test, one per app in a benchmark)."""

from __future__ import annotations

import gc

from bot.infra import outbox
from bot.infra.db import listen_once, make_sessions
from tests.conftest import START, Database


def test_each_new_session_factory_delivers_what_it_commits(database: Database) -> None:
    # Built and dropped one after another, factories land at addresses earlier ones had;
    # sqlalchemy.event.contains took those for already hooked, and their commits sent nothing.
    for attempt in range(60):
        delivered: list[list[str]] = []
        sessions = make_sessions(database.engine)
        sessions.configure(info={outbox.DELIVER_NOW: delivered.append})
        outbox.deliver_on_commit(sessions)
        outbox.deliver_on_commit(sessions)  # asked twice (two apps on one runtime): hooked once
        with sessions.begin() as session:
            outbox.message(session, "U0000001", {"text": "hello"}, key=f"hello:{attempt}",
                           now=START)
        assert delivered == [[f"hello:{attempt}"]], f"factory {attempt} sent {delivered}"
        del sessions, session
        gc.collect()


def test_a_hook_is_added_once_per_factory(database: Database) -> None:
    calls: list[str] = []

    def began(_session: object, _transaction: object, _connection: object) -> None:
        calls.append("began")

    for _ in range(20):
        sessions = make_sessions(database.engine)
        listen_once(sessions, "after_begin", began)
        listen_once(sessions, "after_begin", began)
        calls.clear()
        with sessions.begin() as session:
            session.connection()
        assert calls == ["began"]
        del sessions, session
        gc.collect()

