"""Program figures for coordinators and leaders, every one of them obeying the minimum group."""

from __future__ import annotations

import math
from dataclasses import dataclass, field

from sqlalchemy import ColumnElement, case, func, select, tuple_
from sqlalchemy.dialects.postgresql import array
from sqlalchemy.orm import Session

from bot.infra.aggregate import share, suppress
from bot.infra.models import (
    CheckIn,
    CheckInState,
    RequestKind,
    RequestState,
    SupportRequest,
    TeamRequest,
)

MONTHS_SHOWN = 12


@dataclass
class Insights:
    """Aggregate program figures; None wherever a figure would rest on too few people.

    Personal figures (one person asking for themselves) and team figures are counted apart and
    never added together: no all-requests figure is shown, so a small team count cannot be
    worked out from a personal one (and complementary suppression inside each keeps a hidden
    group from being worked out from its own total)."""

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
    # Team requests: by month (and their total), by unit, how long until every seat was
    # held, and how many people private outreach reached.
    team_months: dict[str, int | None] = field(default_factory=dict)
    team_total: int | None = None
    team_units: dict[str, int | None] = field(default_factory=dict)
    team_median_minutes_to_fill: float | None = None
    people_reached: int | None = None


def _minutes_waited(dialect: str) -> ColumnElement[float]:
    """Minutes from asking to being accepted (for a team, to its last seat being taken),
    computed by the database itself."""
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


def _request_counts(session: Session, dialect: str) -> dict[str, _RequestCounts]:
    """Requests of each kind by month, by department and by supporter, and the accepted,
    quick and escalated counts: on PostgreSQL one pass over the table (GROUPING SETS, each
    within the kind), elsewhere a query for each."""
    waited = _minutes_waited(dialect)
    kind = SupportRequest.kind
    department = func.coalesce(SupportRequest.requester_department, "Not given")
    took = case((SupportRequest.state.in_((RequestState.ASSIGNED, RequestState.CLOSED)),
                 SupportRequest.supporter_id))
    tallies = (func.count(), func.count(SupportRequest.assigned_at),
               func.count().filter(waited <= 30), func.count(SupportRequest.escalated_at))
    counts = {k.value: _RequestCounts() for k in RequestKind}
    if dialect == "postgresql":
        month = func.date_trunc("month", SupportRequest.created_at)
        rows = session.execute(select(func.grouping(month, department, took), kind, month,
                                      department, took, *tallies)
                               .group_by(func.grouping_sets(tuple_(kind, month),
                                                            tuple_(kind, department),
                                                            tuple_(kind, took))))
        # grouping() has a bit set for each column a row is NOT grouped by.
        for grouped, of, start, name, supporter, n, accepted, quick, escalated in rows:
            tally = counts.setdefault(of, _RequestCounts())
            if grouped == 0b011:  # by month; these rows also add up to the whole kind
                tally.months[start.strftime("%Y-%m")] = n
                tally.accepted += accepted
                tally.within_30 += quick
                tally.escalated += escalated
            elif grouped == 0b101:
                tally.departments[name] = n
            elif supporter is not None:
                tally.cases.append(n)
        return counts
    month = func.strftime("%Y-%m", SupportRequest.created_at)
    for of, start, n in session.execute(select(kind, month, func.count()).group_by(kind, month)):
        counts.setdefault(of, _RequestCounts()).months[start] = n
    for of, name, n in session.execute(select(kind, department, func.count())
                                       .group_by(kind, department)):
        counts.setdefault(of, _RequestCounts()).departments[name] = n
    for of, supporter, n in session.execute(select(kind, took, func.count()).group_by(kind, took)):
        if supporter is not None:
            counts.setdefault(of, _RequestCounts()).cases.append(n)
    for of, _, accepted, quick, escalated in session.execute(select(kind, *tallies)
                                                             .group_by(kind)):
        tally = counts.setdefault(of, _RequestCounts())
        tally.accepted, tally.within_30, tally.escalated = accepted, quick, escalated
    return counts


def _waits(session: Session, dialect: str, count: int, kind: str,
           fractions: tuple[float, ...] = (0.5, 0.9)) -> list[float]:
    """Percentile waits of one kind of request (nearest rank, as bot.infra.aggregate.percentile
    defines it), ranked by the database rather than by fetching every wait."""
    waited = _minutes_waited(dialect)
    accepted = (SupportRequest.assigned_at.is_not(None), SupportRequest.kind == kind)
    if dialect == "postgresql":
        # percentile_disc is the nearest rank: the first value whose rank reaches the fraction.
        ranks = session.scalar(select(func.percentile_disc(array(list(fractions)))
                                      .within_group(waited)).where(*accepted))
        return [float(rank) for rank in ranks]
    return [float(session.scalar(select(waited).where(*accepted).order_by(waited)
                                 .offset(max(1, math.ceil(fraction * count)) - 1).limit(1)))
            for fraction in fractions]


def _breakdowns(counts: _RequestCounts, minimum: int
                ) -> tuple[dict[str, int | None], int | None, dict[str, int | None]]:
    """The last months (with their total) and the departments, each suppressed against its
    own total so no hidden group is that total less the ones shown."""
    recent = dict(sorted(counts.months.items())[-MONTHS_SHOWN:])
    months = suppress(recent, minimum)
    departments = suppress(dict(sorted(counts.departments.items())), minimum).groups
    return months.groups, months.total, departments


def _team_figures(session: Session, dialect: str, result: Insights, counts: _RequestCounts,
                  minimum: int) -> None:
    """Team requests by month and unit, time to fill (shown once at least `minimum` were
    placed), and people reached (shown once outreach reached people for at least `minimum`
    teams, and at least `minimum` people)."""
    result.team_months, result.team_total, result.team_units = _breakdowns(counts, minimum)
    if counts.accepted >= minimum:
        result.team_median_minutes_to_fill = _waits(
            session, dialect, counts.accepted, RequestKind.TEAM.value, (0.5,))[0]
    teams, reached = session.execute(select(
        func.count().filter(TeamRequest.reached > 0),
        func.coalesce(func.sum(TeamRequest.reached), 0))).one()
    if teams >= minimum and reached >= minimum:
        result.people_reached = int(reached)


def compute(session: Session, *, minimum: int) -> Insights:
    """Figures from requests and check-ins, suppressed as bot.infra.aggregate describes.

    Every figure is counted by the database (a few grouped queries), never by loading the
    requests themselves: years of a program's requests would otherwise be read on every view.
    The plans are in BENCHMARKS.md. The personal figures count personal requests only, and
    check-in answers about oneself after one; team requests have figures of their own.
    """
    dialect = session.get_bind().dialect.name
    result = Insights(minimum=minimum)
    by_kind = _request_counts(session, dialect)
    counts = by_kind[RequestKind.PERSONAL.value]
    result.months, result.total_requests, result.departments = _breakdowns(counts, minimum)
    accepted = counts.accepted
    if accepted >= minimum:
        result.median_minutes_to_accept, result.p90_minutes_to_accept = _waits(
            session, dialect, accepted, RequestKind.PERSONAL.value)
    result.share_within_30 = share(counts.within_30, accepted, minimum)
    result.escalations = counts.escalated if counts.escalated >= minimum else None
    personal = select(SupportRequest.id).where(SupportRequest.kind == RequestKind.PERSONAL)
    answers = dict(session.execute(
        select(CheckIn.answer, func.count()).where(CheckIn.state == CheckInState.ANSWERED,
                                                   CheckIn.request_id.in_(personal))
        .group_by(CheckIn.answer).order_by(CheckIn.answer)).all())
    if sum(answers.values()) >= minimum:
        result.checkin_outcomes = suppress(answers, minimum).groups
    cases = counts.cases
    total_cases = sum(cases)
    if len(cases) >= minimum and total_cases >= minimum:
        result.supporters_with_cases = len(cases)
        busiest = sorted(cases, reverse=True)[:max(1, len(cases) // 5)]
        result.busiest_fifth_share = sum(busiest) / total_cases
    _team_figures(session, dialect, result, by_kind[RequestKind.TEAM.value], minimum)
    return result
