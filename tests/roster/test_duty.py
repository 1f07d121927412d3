"""On-duty rules: hours in each supporter's own zone, overnight shifts, daylight saving, gaps."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from zoneinfo import ZoneInfo

from bot.infra.models import DutyHours, Supporter, SupporterStatus
from bot.roster.duty import (
    coverage,
    coverage_gaps,
    describe_hours,
    is_available,
    is_on_duty,
    within_hours,
)

NY = ZoneInfo("America/New_York")
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def supporter(user_id: str = "USUP000001", *, tz: str = "America/New_York",
              hours: dict[int, tuple[str, str]] | None = None, department: str = "ICU",
              status: str = SupporterStatus.AVAILABLE, away_until: datetime | None = None
              ) -> Supporter:
    def minutes(text: str) -> int:
        hour, minute = text.split(":")
        return int(hour) * 60 + int(minute)

    return Supporter(
        user_id=user_id, department=department, role="nurse", status=status,
        away_until=away_until, tz=tz, case_cap=2, cooldown_hours=12,
        hours=[DutyHours(weekday=day, start_minute=minutes(a), end_minute=minutes(b))
               for day, (a, b) in (hours or {}).items()])


def local(year: int, month: int, day: int, hour: int, minute: int = 0,
          tz: ZoneInfo = NY) -> datetime:
    return datetime(year, month, day, hour, minute, tzinfo=tz).astimezone(UTC)


def test_no_hours_means_on_duty_whenever_available() -> None:
    assert is_on_duty(supporter(), NOW)
    assert not is_on_duty(supporter(status=SupporterStatus.AWAY), NOW)


def test_away_until_ends_by_itself() -> None:
    away = supporter(status=SupporterStatus.AWAY, away_until=NOW + timedelta(hours=2))
    assert not is_available(away, NOW)
    assert is_available(away, NOW + timedelta(hours=2))


def test_day_shift_in_the_supporters_own_zone() -> None:
    day_shift = supporter(hours={0: ("08:00", "16:00")})  # Mondays, New York time
    assert within_hours(day_shift.hours, day_shift.tz, local(2026, 3, 2, 8, 0))
    assert within_hours(day_shift.hours, day_shift.tz, local(2026, 3, 2, 15, 59))
    assert not within_hours(day_shift.hours, day_shift.tz, local(2026, 3, 2, 16, 0))
    assert not within_hours(day_shift.hours, day_shift.tz, local(2026, 3, 3, 9, 0))
    berlin = supporter(tz="Europe/Berlin", hours={0: ("08:00", "16:00")})
    assert is_on_duty(berlin, local(2026, 3, 2, 9, 0)), "09:00 in New York is 15:00 in Berlin"
    assert not is_on_duty(berlin, local(2026, 3, 2, 11, 0)), "and 11:00 is 17:00"


def test_overnight_shift_runs_into_the_next_day() -> None:
    nights = supporter(hours={4: ("22:00", "07:00")})  # Friday night into Saturday
    assert within_hours(nights.hours, nights.tz, local(2026, 3, 6, 23, 0))
    assert within_hours(nights.hours, nights.tz, local(2026, 3, 7, 6, 59))
    assert not within_hours(nights.hours, nights.tz, local(2026, 3, 7, 7, 0))
    assert not within_hours(nights.hours, nights.tz, local(2026, 3, 6, 21, 59))
    assert not within_hours(nights.hours, nights.tz, local(2026, 3, 8, 1, 0)), "not Sat night"


def test_sunday_night_shift_wraps_to_monday() -> None:
    nights = supporter(hours={6: ("20:00", "04:00")})
    assert within_hours(nights.hours, nights.tz, local(2026, 3, 2, 3, 0))  # Monday 03:00


def test_hours_stay_on_the_wall_clock_across_daylight_saving() -> None:
    # New York springs forward on Sunday 8 March 2026 and falls back on Sunday 1 November.
    mornings = supporter(hours={0: ("08:00", "09:00")})
    before, after = local(2026, 3, 2, 8, 30), local(2026, 3, 9, 8, 30)
    assert within_hours(mornings.hours, mornings.tz, before)
    assert within_hours(mornings.hours, mornings.tz, after)
    assert after - before == timedelta(days=7) - timedelta(hours=1), "UTC offset changed"
    assert not within_hours(mornings.hours, mornings.tz, before + timedelta(days=7)), \
        "the same UTC instant a week later is 09:30 on the wall clock"
    autumn = local(2026, 11, 2, 8, 30)
    assert within_hours(mornings.hours, mornings.tz, autumn)


def test_overnight_shift_through_the_spring_forward_night() -> None:
    nights = supporter(hours={5: ("22:00", "06:00")})  # Saturday 7 March into Sunday 8 March
    start = local(2026, 3, 7, 22, 0)
    end = datetime(2026, 3, 8, 6, 0, tzinfo=NY).astimezone(UTC)
    assert end - start == timedelta(hours=7), "one hour of that night does not exist"
    assert within_hours(nights.hours, nights.tz, start)
    assert within_hours(nights.hours, nights.tz, end - timedelta(minutes=1))
    assert not within_hours(nights.hours, nights.tz, end)


def test_coverage_counts_by_department() -> None:
    roster = [supporter("U1", department="ICU"), supporter("U2", department="ICU",
                                                             status=SupporterStatus.AWAY),
              supporter("U3", department="ED", hours={1: ("08:00", "09:00")})]
    result = coverage(roster, local(2026, 3, 2, 10))
    assert (result.total, result.available, result.on_duty) == (3, 2, 1)
    icu = result.departments[0]
    assert (icu.department, icu.total, icu.available, icu.on_duty) == ("ICU", 2, 1, 1)


def test_nobody_on_duty_tonight_is_found() -> None:
    days = [supporter(f"U{i}", hours={d: ("07:00", "22:00") for d in range(7)}) for i in range(3)]
    gaps = coverage_gaps(days, local(2026, 3, 2, 12), hours=24, minimum=1)
    assert len(gaps) == 1
    assert gaps[0].start.astimezone(NY).strftime("%a %H:%M") == "Mon 22:00"
    assert gaps[0].end.astimezone(NY).strftime("%a %H:%M") == "Tue 07:00"
    assert gaps[0].fewest == 0


def test_full_cover_has_no_gaps_and_a_higher_minimum_finds_thin_spots() -> None:
    team = [supporter("U1"), supporter("U2", hours={0: ("09:00", "17:00")})]
    start = local(2026, 3, 2, 0)
    assert coverage_gaps(team, start, hours=24, minimum=1) == []
    thin = coverage_gaps(team, start, hours=24, minimum=2)
    assert [g.fewest for g in thin] == [1, 1]


def test_hours_are_described_for_people() -> None:
    assert describe_hours([]) == ["No set hours: on duty whenever available"]
    nights = supporter(hours={4: ("22:00", "07:30")})
    assert describe_hours(nights.hours) == ["Friday 22:00–07:30 (overnight)"]
