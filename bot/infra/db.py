"""Database engine, sessions and migrations; the same code runs on SQLite and PostgreSQL."""

from __future__ import annotations

import contextlib
import fcntl
import logging
import weakref
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

from alembic import command
from alembic.config import Config
from sqlalchemy import Engine, create_engine, event, text
from sqlalchemy.dialects.postgresql import Insert as PgInsert
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import Insert as SqliteInsert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session, sessionmaker

log = logging.getLogger(__name__)
MIGRATIONS = Path(__file__).parent / "migrations"
# Any constant works; it only has to be the same in every process that migrates this database.
_MIGRATION_LOCK_ID = 0x5EE7_5AFE


def make_engine(url: str, **kwargs: Any) -> Engine:
    """Create an engine with the connection settings each backend needs for concurrent use."""
    # A database error's message and traceback otherwise quote the statement's parameters: the
    # ids and text of the request that caused it would reach the logs.
    kwargs.setdefault("hide_parameters", True)
    if url.startswith("sqlite"):
        engine = create_engine(url, connect_args={"timeout": 30, "check_same_thread": False}, **kwargs)
        event.listen(engine, "connect", _sqlite_pragmas)
        return engine
    kwargs.setdefault("pool_pre_ping", True)
    kwargs.setdefault("pool_size", 10)
    kwargs.setdefault("max_overflow", 20)
    return create_engine(url, **kwargs)


def _sqlite_pragmas(dbapi_connection: Any, _record: Any) -> None:
    # WAL lets readers work while a writer commits; busy_timeout makes a second writer wait
    # instead of failing, which is what lets two clock processes share one SQLite file.
    cursor = dbapi_connection.cursor()
    cursor.execute("PRAGMA journal_mode=WAL")
    cursor.execute("PRAGMA busy_timeout=30000")
    cursor.execute("PRAGMA foreign_keys=ON")
    cursor.close()


def make_sessions(engine: Engine) -> sessionmaker[Session]:
    """A session factory; `with sessions.begin() as s:` commits on success and rolls back on error."""
    return sessionmaker(engine, expire_on_commit=False)


def alembic_config(engine: Engine) -> Config:
    """An Alembic configuration pointing at the packaged migrations and the given engine."""
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS))
    config.attributes["engine"] = engine
    return config


def migrate(engine: Engine, revision: str = "head") -> None:
    """Apply migrations up to `revision`; safe to call from several processes at once."""
    config = alembic_config(engine)
    if engine.dialect.name == "postgresql":
        # Several web workers may start together: an advisory lock makes them migrate in turn.
        with engine.connect() as lock_conn:
            lock_conn.execute(text("SELECT pg_advisory_lock(:id)"), {"id": _MIGRATION_LOCK_ID})
            try:
                command.upgrade(config, revision)
            finally:
                lock_conn.execute(text("SELECT pg_advisory_unlock(:id)"), {"id": _MIGRATION_LOCK_ID})
                lock_conn.commit()
    else:
        # SQLite runs DDL outside transactions, so processes starting together take turns
        # through a lock file beside the database.
        with _file_lock(engine.url.database):
            command.upgrade(config, revision)


@contextlib.contextmanager
def _file_lock(database: str | None) -> Iterator[None]:
    if not database or database == ":memory:":
        yield
        return
    with open(f"{database}.migrate-lock", "a") as handle:
        fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# The session hooks each sessionmaker was given (listen_once); weak, so a sessionmaker that is
# gone takes its entry with it.
_HOOKED: weakref.WeakKeyDictionary[sessionmaker[Session], set[tuple[str, Callable[..., Any]]]] = \
    weakref.WeakKeyDictionary()


def listen_once(sessions: sessionmaker[Session], identifier: str,
                hook: Callable[..., Any]) -> None:
    """Give every session of `sessions` the event hook `hook`, once however often it is asked.

    sqlalchemy.event.contains cannot answer this: it keys on the target's id(), so a new
    sessionmaker at the address of one already collected passes for hooked, and its sessions
    would silently go without (no message delivered after a commit)."""
    hooked = _HOOKED.setdefault(sessions, set())
    if (identifier, hook) in hooked:
        return
    event.listen(sessions, identifier, hook)
    hooked.add((identifier, hook))


_AFTER = "after_commit"  # in a session's info: work to run once it has committed
_FIRST = "after_commit_first"  # the same, run before the rest


def after_commit(session: Session, work: Callable[[], None], *, first: bool = False) -> None:
    """Run `work` once this session's transaction has committed (Slack calls that must not
    happen before the rows they refer to are visible to every process); `first` runs it before
    every work registered without it (still in the order such work was registered)."""
    session.info.setdefault(_FIRST if first else _AFTER, []).append(work)


def run_after_commit(session: Session) -> None:
    """Run and forget the work registered with after_commit, in order; one failure is logged
    and does not stop the rest (whatever it left undone is retried by its own timers)."""
    for work in [*session.info.pop(_FIRST, []), *session.info.pop(_AFTER, [])]:
        try:
            work()
        except Exception as error:  # noqa: BLE001
            log.error("after-commit work failed: %s", type(error).__name__, exc_info=error)


def discard_after_commit(session: Session) -> None:
    """Forget registered work (the transaction rolled back, so it must not happen)."""
    session.info.pop(_FIRST, None)
    session.info.pop(_AFTER, None)


def insert_for(session: Session, table: Any) -> PgInsert | SqliteInsert:
    """An INSERT into `table` in the session's own dialect, so ON CONFLICT (DO NOTHING, DO
    UPDATE) and RETURNING can be used alike on PostgreSQL and SQLite."""
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    return insert(table)
