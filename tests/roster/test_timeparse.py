"""Weekday words in 'until' times: whole words and standard abbreviations only."""

from __future__ import annotations

from datetime import UTC, datetime
from zoneinfo import ZoneInfo

import pytest

from bot.roster.timeparse import TimeParseError, parse_until, weekday

MONDAY_NOON_NY = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)
NEW_YORK = "America/New_York"


@pytest.mark.parametrize(("word", "number"), [
    ("mon", 0), ("monday", 0), ("mondays", 0), ("Monday", 0), ("MON", 0),
    ("tue", 1), ("tues", 1), ("tuesday", 1), ("Tuesdays", 1),
    ("wed", 2), ("wednesday", 2), ("wednesdays", 2),
    ("thu", 3), ("thur", 3), ("thurs", 3), ("Thurs.", 3), ("thursday", 3),
    ("fri", 4), ("fri.", 4), ("friday", 4), ("Friday,", 4), ("fridays", 4),
    ("sat", 5), ("saturday", 5), ("saturdays", 5),
    ("sun", 6), ("sunday", 6), ("Sundays", 6),
])
def test_standard_weekday_forms_are_weekdays(word: str, number: int) -> None:
    assert weekday(word) == number


@pytest.mark.parametrize("word", ["monthly", "satisfied", "sunny", "wednesdayish", "thursdays!",
                                  "frizzy", "tuesd", "mo", "th", "weds?", "monday2", ""])
def test_words_that_only_begin_like_a_weekday_are_not_weekdays(word: str) -> None:
    assert weekday(word) is None


@pytest.mark.parametrize("text", ["monthly", "satisfied", "sunny", "wednesdayish",
                                  "monthly 09:00", "sunny 6pm"])
def test_until_refuses_words_that_only_begin_like_a_weekday(text: str) -> None:
    with pytest.raises(TimeParseError):
        parse_until(text, now=MONDAY_NOON_NY, tz=NEW_YORK)


@pytest.mark.parametrize(("text", "expected_local"), [
    ("Tues 9am", "2026-03-03 09:00"),
    ("thurs", "2026-03-05 08:00"),
    ("Wednesdays 18:00", "2026-03-04 18:00"),
    ("friday, 6pm", "2026-03-06 18:00"),
    ("SAT", "2026-03-07 08:00"),
    ("mon", "2026-03-09 08:00"),
])
def test_until_reads_weekday_abbreviations_and_plurals(text: str, expected_local: str) -> None:
    moment = parse_until(text, now=MONDAY_NOON_NY, tz=NEW_YORK)
    assert f"{moment.astimezone(ZoneInfo(NEW_YORK)):%Y-%m-%d %H:%M}" == expected_local
