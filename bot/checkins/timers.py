"""Check-ins' timers: their kinds, and the one function that builds each timer's key."""

from __future__ import annotations

CHECKIN = "checkin"
SUPPORTER_REMINDER = "checkin_supporter_reminder"


def checkin_key(checkin_id: int, version: int) -> str:
    """The timer of one version of one check-in: a move makes a new version, so the old timer
    can be cancelled and a late one recognised as superseded."""
    return f"{CHECKIN}:{checkin_id}:{version}"


def supporter_reminder_key(request_id: int) -> str:
    """The supporter's one optional nudge about a request's check-ins."""
    return f"{SUPPORTER_REMINDER}:{request_id}"
