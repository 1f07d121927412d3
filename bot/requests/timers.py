"""Requests' timers: their kinds, and the one function that builds each timer's key."""

from __future__ import annotations

OFFER_TIMEOUT = "offer_timeout"
ESCALATION_REMINDER = "escalation_reminder"
ESCALATION_DIGEST = "escalation_digest"
RETENTION = "retention"
OUTREACH_DEADLINE = "team_outreach_deadline"
# How long a team's private notes wait for its group conversation's time to be picked, at most:
# after that they go without it, since members should not wait days to hear support is there.
OUTREACH_WAIT_HOURS = 24
RETENTION_MINUTE = 3 * 60 + 30  # 03:30 in the program's zone, when little else happens


def offer_timeout_key(request_id: int, wave: int) -> str:
    """The one timer of one wave of offers."""
    return f"{OFFER_TIMEOUT}:{request_id}:{wave}"


def reminder_key(request_id: int, escalation: int, number: int) -> str:
    """The timer of one re-notice of one escalation (a request may be escalated again after a
    hand-back: each escalation has reminders of its own)."""
    return f"{ESCALATION_REMINDER}:{request_id}:{escalation}:{number}"


def outreach_deadline_key(request_id: int) -> str:
    """The one timer after which a team's private notes stop waiting for the group's time."""
    return f"{OUTREACH_DEADLINE}:{request_id}"
