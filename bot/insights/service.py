"""Program figures for coordinators and leaders, every one of them obeying the minimum group."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, case, func, select
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from bot.infra.aggregate import share, suppress
from bot.infra.models import CheckIn, CheckInState, RequestState, SupportRequest

MONTHS_SHOWN = 12


@dataclass
class Insights:
    """Aggregate program figures; None wherever a figure would rest on too few people."""

    minimum: int
    months: dict[str, int | None] = field(default_factory=dict)
    total_requests: int | None = None
    departments: dict[str, int | None] = field(default_factory=dict)
    median_minutes_to_accept: float | None = None
    p90_minutes_to_accept: float | None = None
    share_within_30: float | None = None
    escalations: int | None = None
    checkin_outcomes: dict[str, int | None] = field(default_factory=dict)
    supporters_with_cases: int | None = None
    busiest_fifth_share: float | None = None


def _minutes_waited(dialect: str) -> ColumnElement[float]:
    """Minutes from asking to being accepted, computed by the database itself."""
    assigned, created = SupportRequest.assigned_at, SupportRequest.created_at
    if dialect == "postgresql":
        # date_part gives a double; EXTRACT gives a numeric, several times slower to sort.
        return func.date_part("epoch", assigned - created) / 60.0
    # SQLite keeps datetimes as text: julianday() gives days, rounded to whole seconds here.
    return func.round((func.julianday(assigned) - func.julianday(created)) * 86400) / 60.0


@dataclass
class _RequestCounts:
    months: dict[str, int] = field(default_factory=dict)
    departments: dict[str, int] = field(default_factory=dict)
    cases: list[int] = field(default_factory=list)  # per supporter who took any
    accepted: int = 0
    within_30: int = 0
    escalated: int = 0


def _request_counts(session: Session, dialect: str) -> _RequestCounts:
    """Requests by month, by department and by supporter, and the accepted, quick and
    escalated counts: on PostgreSQL one pass over the table (GROUPING SETS), elsewhere a
    query for each."""
    waited = _minutes_waited(dialect)
    department = func.coalesce(SupportRequest.requester_department, "Not given")
    took = case((SupportRequest.state.in_((RequestState.ASSIGNED, RequestState.CLOSED)),
                 SupportRequest.supporter_id))
    tallies = (func.count(), func.count(SupportRequest.assigned_at),
               func.count().filter(waited <= 30), func.count(SupportRequest.escalated_at))
    counts = _RequestCounts()
    if dialect == "postgresql":
        month = func.date_trunc("month", SupportRequest.created_at)
        rows = session.execute(select(func.grouping(month, department, took), month, department,
                                      took, *tallies)
                               .group_by(func.grouping_sets(month, department, took)))
        # grouping() has a bit set for each column a row is NOT grouped by.
        for grouped, start, name, supporter, n, accepted, quick, escalated in rows:
            if grouped == 0b011:  # by month; these rows also add up to the whole table
                counts.months[start.strftime("%Y-%m")] = n
                counts.accepted += accepted
                counts.within_30 += quick
                counts.escalated += escalated
            elif grouped == 0b101:
                counts.departments[name] = n
            elif supporter is not None:
                counts.cases.append(n)
        return counts
    month = func.strftime("%Y-%m", SupportRequest.created_at)
    counts.months = dict(session.execute(select(month, func.count()).group_by(month)).all())
    counts.departments = dict(session.execute(
        select(department, func.count()).group_by(department)).all())
    counts.cases = [n for supporter, n in session.execute(
        select(took, func.count()).group_by(took)) if supporter is not None]
    _, counts.accepted, counts.within_30, counts.escalated = session.execute(
        select(*tallies)).one()
    return counts


def _waits(session: Session, dialect: str, count: int) -> tuple[float, float]:
    """Median and 90th percentile wait (nearest rank, as bot.infra.aggregate.percentile defines it),
    ranked by the database rather than by fetching every wait."""
    waited = _minutes_waited(dialect)
    accepted = SupportRequest.assigned_at.is_not(None)
    if dialect == "postgresql":
        # percentile_disc is the nearest rank: the first value whose rank reaches the fraction.
        ranks = session.scalar(select(func.percentile_disc(array([0.5, 0.9]))
                                      .within_group(waited)).where(accepted))
        return float(ranks[0]), float(ranks[1])
    return tuple(  # type: ignore[return-value]
        float(session.scalar(select(waited).where(accepted).order_by(waited)
                             .offset(max(1, math.ceil(fraction * count)) - 1).limit(1)))
        for fraction in (0.5, 0.9))


def compute(session: Session, *, minimum: int) -> Insights:
    """Figures from requests and check-ins, suppressed as bot.infra.aggregate describes.

    Every figure is counted by the database (a few grouped queries), never by loading the
    requests themselves: years of a program's requests would otherwise be read on every view.
    The plans are in BENCHMARKS.md.
    """
    dialect = session.get_bind().dialect.name
    result = Insights(minimum=minimum)
    counts = _request_counts(session, dialect)
    recent = dict(sorted(counts.months.items())[-MONTHS_SHOWN:])
    months = suppress(recent, minimum)
    result.months, result.total_requests = months.groups, months.total
    result.departments = suppress(dict(sorted(counts.departments.items())), minimum).groups
    accepted = counts.accepted
    if accepted >= minimum:
        result.median_minutes_to_accept, result.p90_minutes_to_accept = _waits(
            session, dialect, accepted)
    result.share_within_30 = share(counts.within_30, accepted, minimum)
    result.escalations = counts.escalated if counts.escalated >= minimum else None
    answers = dict(session.execute(
        select(CheckIn.answer, func.count()).where(CheckIn.state == CheckInState.ANSWERED)
        .group_by(CheckIn.answer).order_by(CheckIn.answer)).all())
    if sum(answers.values()) >= minimum:
        result.checkin_outcomes = suppress(answers, minimum).groups
    cases = counts.cases
    total_cases = sum(cases)
    if len(cases) >= minimum and total_cases >= minimum:
        result.supporters_with_cases = len(cases)
        busiest = sorted(cases, reverse=True)[:max(1, len(cases) // 5)]
        result.busiest_fifth_share = sum(busiest) / total_cases
    return result
