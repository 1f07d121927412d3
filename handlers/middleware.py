"""Listener middleware shared by handlers."""

from __future__ import annotations

from typing import Any


def db_session(context: dict[str, Any], next: Any) -> None:  # noqa: A002 - Bolt's name
    """One database session per Slack request, committed once when the listener returns.

    Bolt runs a listener (and its listener middleware) on a worker thread after ack(), so the
    session has to live here rather than in a global middleware, which returns at ack time.
    """
    with context["runtime"].sessions.begin() as session:
        context["db"] = session
        next()
