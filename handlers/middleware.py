"""One database session per Slack request, committed in one place."""

from __future__ import annotations

import functools
from collections.abc import Callable
from typing import Any, TypeVar

from bot.db import discard_after_commit, run_after_commit

Listener = TypeVar("Listener", bound=Callable[..., Any])


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
        try:
            result = listener(*args, **kwargs)
            db.commit()
        except BaseException:
            db.rollback()
            discard_after_commit(db)
            db.close()
            raise
        db.close()
        run_after_commit(db)
        return result

    run.__transactional__ = True  # type: ignore[attr-defined]
    return run  # type: ignore[return-value]
