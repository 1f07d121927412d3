"""Program figures for coordinators and leaders, every one of them obeying the minimum group."""

from __future__ import annotations

from collections import Counter
from dataclasses import dataclass, field

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.aggregate import percentile, share, suppress
from bot.models import CheckIn, CheckInState, RequestState, SupportRequest

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


def compute(session: Session, *, minimum: int) -> Insights:
    """Figures from requests and check-ins, suppressed as bot.aggregate describes."""
    requests = list(session.scalars(select(SupportRequest)))
    result = Insights(minimum=minimum)
    by_month = Counter(r.created_at.strftime("%Y-%m") for r in requests)
    recent = dict(sorted(by_month.items())[-MONTHS_SHOWN:])
    months = suppress(recent, minimum)
    result.months, result.total_requests = months.groups, months.total
    by_department = Counter(r.requester_department or "Not given" for r in requests)
    result.departments = suppress(by_department, minimum).groups
    waits = [(r.assigned_at - r.created_at).total_seconds() / 60 for r in requests
             if r.assigned_at is not None]
    result.median_minutes_to_accept = percentile(waits, 0.5, minimum)
    result.p90_minutes_to_accept = percentile(waits, 0.9, minimum)
    result.share_within_30 = share(sum(1 for w in waits if w <= 30), len(waits), minimum)
    escalated = sum(1 for r in requests if r.escalated_at is not None)
    result.escalations = escalated if escalated >= minimum else None
    answers = Counter(a for a in session.scalars(select(CheckIn.answer).where(
        CheckIn.state == CheckInState.ANSWERED)))
    if sum(answers.values()) >= minimum:
        result.checkin_outcomes = suppress(answers, minimum).groups
    cases = Counter(r.supporter_id for r in requests if r.supporter_id and r.state in (
        RequestState.ASSIGNED, RequestState.CLOSED))
    total_cases = sum(cases.values())
    if len(cases) >= minimum and total_cases >= minimum:
        result.supporters_with_cases = len(cases)
        busiest = sorted(cases.values(), reverse=True)[:max(1, len(cases) // 5)]
        result.busiest_fifth_share = sum(busiest) / total_cases
    return result
