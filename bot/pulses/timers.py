"""Wellbeing prompts' timers: their kinds, and the one function that builds each timer's key."""

from __future__ import annotations

from datetime import datetime

PULSE_OPEN = "pulse_open"
PULSE_CLOSE = "pulse_close"


def open_key(pulse_id: int, at: datetime) -> str:
    """The opening of one prompt at one moment of its recurrence."""
    return f"{PULSE_OPEN}:{pulse_id}:{at.isoformat()}"


def close_key(run_id: int) -> str:
    """The closing of one run of a prompt."""
    return f"{PULSE_CLOSE}:{run_id}"
