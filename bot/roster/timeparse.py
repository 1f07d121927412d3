"""Reads 'until' times people type: 'tomorrow', 'friday 18:00', '2026-12-01 7am', '3d', '8h'."""

from __future__ import annotations

import re
from datetime import datetime, time, timedelta

from bot.infra.clock import zone

DAY_START = time(8, 0)  # a date without a time means the start of that working day
_WEEKDAYS = ("monday", "tuesday", "wednesday", "thursday", "friday", "saturday", "sunday")
# Whole words only: matching on three letters read "monthly" as Monday and "satisfied" as Saturday.
_ABBREVIATIONS = (("mon",), ("tue", "tues"), ("wed",), ("thu", "thur", "thurs"), ("fri",),
                  ("sat",), ("sun",))
_WEEKDAY_WORDS = {
    word: number
    for number, (name, short) in enumerate(zip(_WEEKDAYS, _ABBREVIATIONS, strict=True))
    for word in (name, name + "s", *short)
}
_DURATION = re.compile(r"^(\d{1,3})\s*(h|hr|hrs|hours?|d|days?|w|wk|weeks?)$")
_TIME = re.compile(r"^(\d{1,2})(?::(\d{2}))?\s*(am|pm)?$")
_DATE = re.compile(r"^(\d{4})-(\d{2})-(\d{2})$")

EXAMPLES = "`tomorrow`, `friday 18:00`, `2026-12-01 7am`, `8h` or `3d`"


class TimeParseError(ValueError):
    """The text is not a time we understand; the message gives examples."""


def parse_until(text: str, *, now: datetime, tz: str) -> datetime:
    """The moment `text` names, in the person's zone `tz`, as an aware datetime after `now`."""
    words = text.strip().lower().split()
    if not words:
        raise TimeParseError(f"Say until when, for example {EXAMPLES}.")
    local_now = now.astimezone(zone(tz))
    duration = _DURATION.match(" ".join(words))
    if duration:
        amount, unit = int(duration.group(1)), duration.group(2)[0]
        delta = {"h": timedelta(hours=amount), "d": timedelta(days=amount),
                 "w": timedelta(weeks=amount)}[unit]
        return now + delta
    day_word, rest = words[0], " ".join(words[1:])
    if day_word == "today":
        day = local_now.date()
    elif day_word == "tomorrow":
        day = local_now.date() + timedelta(days=1)
    elif (target := weekday(day_word)) is not None:
        ahead = (target - local_now.weekday()) % 7 or 7
        day = local_now.date() + timedelta(days=ahead)
    elif _DATE.match(day_word):
        try:
            day = datetime.strptime(day_word, "%Y-%m-%d").date()
        except ValueError:
            raise TimeParseError(f"{day_word} is not a real date.") from None
    elif _TIME.match(" ".join(words)):
        day, rest = local_now.date(), " ".join(words)
    else:
        raise TimeParseError(f"I could not read that time. Try {EXAMPLES}.")
    at = _time(rest) if rest else DAY_START
    moment = datetime.combine(day, at, tzinfo=zone(tz))
    if moment <= local_now and day == local_now.date() and words[0] != "today":
        moment += timedelta(days=1)  # "18:00" said after six means tomorrow's
    if moment <= local_now:
        raise TimeParseError("That time has already passed.")
    return moment


def weekday(word: str) -> int | None:
    """The weekday (Monday is 0) a word names, as in "fri", "Thurs." or "mondays"; else None."""
    return _WEEKDAY_WORDS.get(word.lower().rstrip(".,"))


def _time(text: str) -> time:
    match = _TIME.match(text.strip())
    if not match:
        raise TimeParseError(f"I could not read the time {text!r}. Try {EXAMPLES}.")
    hour, minute, meridiem = int(match.group(1)), int(match.group(2) or 0), match.group(3)
    if meridiem:
        if not 1 <= hour <= 12:
            raise TimeParseError(f"{text} is not a time of day.")
        hour = hour % 12 + (12 if meridiem == "pm" else 0)
    if hour > 23 or minute > 59:
        raise TimeParseError(f"{text} is not a time of day.")
    return time(hour, minute)
