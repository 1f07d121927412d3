"""Who is on duty when: availability, away-until, and weekly hours in each supporter's own zone."""

from __future__ import annotations

from collections import defaultdict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta
from typing import Protocol

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.infra.clock import zone
from bot.infra.models import DutyHours, Supporter, SupporterStatus

WEEKDAYS = ("Monday", "Tuesday", "Wednesday", "Thursday", "Friday", "Saturday", "Sunday")
MINUTES_PER_DAY = 24 * 60



def is_available(supporter: Supporter | OnCall, at: datetime) -> bool:
    """Available, or away only until a moment that has passed."""
    if supporter.status == SupporterStatus.AVAILABLE:
        return True
    return supporter.away_until is not None and supporter.away_until <= at


class Window(Protocol):
    """One weekly on-duty window: a DutyHours row, or a plain row read for many at once."""

    weekday: int
    start_minute: int
    end_minute: int


def weekly_hours(session: Session) -> dict[str, list[Window]]:
    """Every supporter's windows in one plain query: matching reads a whole roster's hours,
    and loading them as ORM collections cost far more than reading them."""
    hours: dict[str, list[Window]] = defaultdict(list)
    for row in session.execute(select(DutyHours.user_id, DutyHours.weekday,
                                      DutyHours.start_minute, DutyHours.end_minute)):
        hours[row.user_id].append(row)
    return hours


@dataclass(frozen=True)
class OnCall:
    """What duty questions need of one supporter, read as plain rows rather than ORM objects."""

    user_id: str
    department: str
    status: str
    away_until: datetime | None
    tz: str
    hours: tuple[Window, ...]


def on_call(session: Session) -> list[OnCall]:
    """The whole roster for coverage questions (by department, then id), in two queries."""
    hours = weekly_hours(session)
    rows = session.execute(select(
        Supporter.user_id, Supporter.department, Supporter.status, Supporter.away_until,
        Supporter.tz).order_by(Supporter.department, Supporter.user_id))
    return [OnCall(r.user_id, r.department, r.status, r.away_until, r.tz,
                   tuple(hours.get(r.user_id, ()))) for r in rows]


def within_hours(hours: Sequence[Window], tz: str, at: datetime) -> bool:
    """Whether `at` falls inside the weekly windows (no windows at all means any time).

    Windows are wall-clock times in the supporter's zone, so a 08:00-16:00 shift stays
    08:00-16:00 across a daylight-saving change; a window whose end is not after its start
    runs past midnight into the next day.
    """
    if not hours:
        return True
    local = at.astimezone(zone(tz))
    minute = local.hour * 60 + local.minute
    today = local.weekday()
    yesterday = (today - 1) % 7
    for window in hours:
        overnight = window.end_minute <= window.start_minute
        if window.weekday == today:
            if window.start_minute <= minute and (overnight or minute < window.end_minute):
                return True
        if overnight and window.weekday == yesterday and minute < window.end_minute:
            return True
    return False


def is_on_duty(supporter: Supporter | OnCall, at: datetime) -> bool:
    """Available and inside their hours at `at`."""
    return is_available(supporter, at) and within_hours(supporter.hours, supporter.tz, at)


@dataclass
class DepartmentCoverage:
    department: str
    total: int = 0
    available: int = 0
    on_duty: int = 0


@dataclass
class Coverage:
    """How many supporters there are, how many are available, and how many on duty now."""

    total: int = 0
    available: int = 0
    on_duty: int = 0
    departments: list[DepartmentCoverage] = field(default_factory=list)


def coverage(supporters: Iterable[Supporter | OnCall], at: datetime) -> Coverage:
    """Counts for the whole roster and per department (largest first)."""
    result = Coverage()
    by_department: dict[str, DepartmentCoverage] = {}
    for supporter in supporters:
        department = by_department.setdefault(
            supporter.department, DepartmentCoverage(supporter.department or "No department"))
        available = is_available(supporter, at)
        on_duty = available and within_hours(supporter.hours, supporter.tz, at)
        for bucket in (result, department):
            bucket.total += 1
            bucket.available += available
            bucket.on_duty += on_duty
    result.departments = sorted(by_department.values(), key=lambda d: (-d.total, d.department))
    return result


@dataclass(frozen=True)
class Gap:
    """A stretch of time in which fewer than the minimum number of supporters are on duty."""

    start: datetime
    end: datetime
    fewest: int


def _same_duty(supporters: Iterable[Supporter | OnCall]) -> list[tuple[Supporter | OnCall, int]]:
    """One supporter standing for each group with the same status, zone and hours, and the
    group's size: most of a roster shares a few shift patterns, so each is checked once."""
    groups: dict[tuple, list] = {}
    for supporter in supporters:
        key = (supporter.status, supporter.away_until, supporter.tz,
               tuple((h.weekday, h.start_minute, h.end_minute) for h in supporter.hours))
        groups.setdefault(key, [supporter, 0])[1] += 1
    return [(first, size) for first, size in groups.values()]


def coverage_gaps(supporters: Sequence[Supporter | OnCall], start: datetime, hours: int,
                  minimum: int, *, step: timedelta = timedelta(minutes=15)) -> list[Gap]:
    """Gaps in the next `hours` from `start`, sampled every `step` and merged."""
    gaps: list[Gap] = []
    current_start: datetime | None = None
    fewest = minimum
    moment = start
    end = start + timedelta(hours=hours)
    groups = _same_duty(supporters)
    while moment < end:
        count = sum(size for first, size in groups if is_on_duty(first, moment))
        if count < minimum:
            if current_start is None:
                current_start, fewest = moment, count
            fewest = min(fewest, count)
        elif current_start is not None:
            gaps.append(Gap(current_start, moment, fewest))
            current_start = None
        moment += step
    if current_start is not None:
        gaps.append(Gap(current_start, end, fewest))
    return gaps


def describe_hours(hours: Sequence[DutyHours]) -> list[str]:
    """Lines such as 'Monday 08:00-16:00' (or one line saying there are no set hours)."""
    if not hours:
        return ["No set hours: on duty whenever available"]
    return [f"{WEEKDAYS[h.weekday]} {clock_text(h.start_minute)}–{clock_text(h.end_minute)}"
            + (" (overnight)" if h.end_minute <= h.start_minute else "") for h in hours]


def clock_text(minute: int) -> str:
    """Minutes after midnight as HH:MM."""
    return f"{minute // 60 % 24:02d}:{minute % 60:02d}"
