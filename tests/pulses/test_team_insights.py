"""Team requests in program insights: by month and unit, time until every supporter said yes,
people reached; counted apart from personal requests (which they no longer inflate), every
figure under the minimum group, and nothing hidden recoverable by subtraction. On SQLite and
PostgreSQL, whose queries differ."""

from __future__ import annotations

import dataclasses
import json
import re
from collections.abc import Iterable
from datetime import datetime, timedelta

from sqlalchemy import delete

from bot.infra.aggregate import percentile
from bot.infra.models import (
    CheckIn,
    CheckInState,
    RequestKind,
    RequestState,
    SupportRequest,
    TeamRequest,
)
from bot.insights import service as program
from handlers.pulses.blocks import insights_blocks
from tests.conftest import AppServer, Database
from tests.requests.test_requests_http import home_of

K = 5
PERSONAL_FIELDS = ("months", "total_requests", "departments", "median_minutes_to_accept",
                   "p90_minutes_to_accept", "share_within_30", "escalations",
                   "checkin_outcomes", "supporters_with_cases", "busiest_fifth_share")
TEAM_FIELDS = ("team_months", "team_total", "team_units", "team_median_minutes_to_fill",
               "people_reached")


def at(month: str, day: int = 10) -> datetime:
    return datetime.fromisoformat(f"{month}-{day:02d}T12:00:00+00:00")


def personal(db: Database, month: str, department: str, count: int, *, first: int = 0,
             answers: Iterable[str] = ()) -> None:
    """Closed personal requests, each taken 10 + n minutes after asking, some escalated."""
    answers = list(answers)
    with db.sessions.begin() as session:
        for number in range(first, first + count):
            created = at(month)
            request = SupportRequest(
                requester_id=f"UP{department[:3]}{month}{number}", urgency="now",
                connection="slack", requester_department=department, followups=True,
                state=RequestState.CLOSED, wave=1, supporter_id=f"USUP{number % 8}",
                created_at=created, assigned_at=created + timedelta(minutes=10 + number),
                escalated_at=created if number % 3 == 0 else None,
                closed_at=created + timedelta(hours=2))
            session.add(request)
            session.flush()
            if number - first < len(answers):
                session.add(CheckIn(request_id=request.id, user_id=request.requester_id,
                                    number=1, planned_for=created, due_at=created, version=0,
                                    state=CheckInState.ANSWERED, answer=answers[number - first],
                                    answered_at=created))


def team(db: Database, month: str, unit: str, count: int, *, first: int = 0,
         placed: int | None = None, reached: int = 0, state: str = RequestState.CLOSED,
         caller_answer: str | None = None, member_answers: Iterable[str] = ()) -> list[int]:
    """Team requests in a unit; the first `placed` (all by default) had every seat taken
    20 + n minutes after asking, by supporters who may also hold personal cases. Each reached
    `reached` people privately. Their callers and members may have answered check-ins."""
    placed = count if placed is None else placed
    ids = []
    with db.sessions.begin() as session:
        for index, number in enumerate(range(first, first + count)):
            created = at(month)
            filled = index < placed
            request = SupportRequest(
                requester_id=f"UT{unit[:3]}{month}{number}", urgency="today",
                connection="team", requester_department=unit, kind=RequestKind.TEAM,
                seats=2, filled=2 if filled else 0,
                state=state if filled else RequestState.ESCALATED, wave=1,
                supporter_id=f"USUP{number % 8}" if filled else None, created_at=created,
                assigned_at=created + timedelta(minutes=20 + number) if filled else None,
                escalated_at=created, closed_at=created + timedelta(hours=3) if filled else None)
            session.add(request)
            session.flush()
            session.add(TeamRequest(request_id=request.id, unit=unit, size="6_15", visit=True,
                                    private=True, reached=reached))
            if caller_answer:
                session.add(CheckIn(request_id=request.id, user_id=request.requester_id,
                                    number=1, planned_for=created, due_at=created, version=0,
                                    state=CheckInState.ANSWERED, answer=caller_answer,
                                    answered_at=created))
            for member, answer in enumerate(member_answers):
                session.add(CheckIn(request_id=request.id, user_id=f"UM{request.id}x{member}",
                                    number=1, planned_for=created, due_at=created, version=0,
                                    state=CheckInState.ANSWERED, answer=answer,
                                    answered_at=created))
            ids.append(request.id)
    return ids


def figures(db: Database) -> program.Insights:
    with db.sessions() as session:
        return program.compute(session, minimum=K)


def shown(insights: program.Insights) -> str:
    return json.dumps(insights_blocks(insights))


def part(insights: program.Insights, names: tuple[str, ...]) -> dict:
    return {name: getattr(insights, name) for name in names}


# -- the team figures --------------------------------------------------------------------------


def test_team_requests_by_month_and_unit_time_to_fill_and_people_reached(
        database: Database) -> None:
    team(database, "2026-01", "ICU", 6, reached=4)
    team(database, "2026-02", "ED", 7, first=6, reached=3)
    found = figures(database)
    assert found.team_months == {"2026-01": 6, "2026-02": 7}
    assert found.team_total == 13
    assert found.team_units == {"ED": 7, "ICU": 6}
    waits = [20.0 + n for n in range(13)]
    assert found.team_median_minutes_to_fill == percentile(waits, 0.5, K) == 26.0
    assert found.people_reached == 6 * 4 + 7 * 3
    text = shown(found)
    assert "*Team requests by month:* 2026-01: 6; 2026-02: 7" in text
    assert "*All team requests:* 13" in text and "*By unit:* ED: 7; ICU: 6" in text
    assert "median 26 min" in text and "*People reached privately:* 45" in text
    # None of them is a personal request.
    assert found.months == {} and found.total_requests is None and found.departments == {}


def test_every_team_figure_is_hidden_below_the_minimum(database: Database) -> None:
    team(database, "2026-01", "ICU", 4, reached=9)  # four teams, 36 people reached
    found = figures(database)
    assert part(found, TEAM_FIELDS) == {
        "team_months": {"2026-01": None}, "team_total": None, "team_units": {"ICU": None},
        "team_median_minutes_to_fill": None, "people_reached": None}
    text = shown(found)
    assert "*All team requests:* hidden (fewer than 5)" in text
    assert "median hidden (fewer than 5)" in text
    assert "*People reached privately:* hidden (fewer than 5)" in text
    for leak in ("2026-01: 4", "ICU: 4", ": 36"):
        assert leak not in text, leak


def test_time_to_fill_waits_for_enough_placed_teams(database: Database) -> None:
    team(database, "2026-01", "ICU", 8, placed=4)  # eight asked, four placed so far
    found = figures(database)
    assert found.team_total == 8 and found.team_units == {"ICU": 8}
    assert found.team_median_minutes_to_fill is None


def test_people_reached_needs_enough_teams_reached(database: Database) -> None:
    team(database, "2026-01", "ICU", 4, reached=30)
    team(database, "2026-01", "ICU", 4, first=4, reached=0)  # no outreach for these
    found = figures(database)
    assert found.team_total == 8
    assert found.people_reached is None, "120 people, but from only four teams"
    team(database, "2026-01", "ED", 1, first=8, reached=2)
    assert figures(database).people_reached == 122


# -- nothing hidden can be recovered ------------------------------------------------------------


def test_a_small_team_count_beside_a_large_personal_one_cannot_be_worked_out(
        database: Database) -> None:
    """ICU has 20 personal requests and 3 team requests. Whatever is shown, the 3 must not
    follow: there is no all-requests figure to subtract 20 from, and the team total does not
    give it away either. Proven by indistinguishability: data with 2, 3 or 4 ICU team requests
    (and ED making up the same team total) shows exactly the same."""
    outputs = {}
    for icu in (2, 3, 4):
        with database.sessions.begin() as session:
            for table in (CheckIn, TeamRequest, SupportRequest):
                session.execute(delete(table))
        personal(database, "2026-01", "ICU", 20)
        personal(database, "2026-01", "ED", 12, first=20)
        team(database, "2026-01", "ICU", icu, reached=2)
        team(database, "2026-01", "ED", 9 - icu, first=icu, reached=2)
        found = figures(database)
        outputs[icu] = (dataclasses.asdict(found), shown(found))
        assert found.team_units == {"ED": None, "ICU": None}
        assert found.departments == {"ED": 12, "ICU": 20}, "personal only: not 23"
        assert found.team_total == 9 and found.total_requests == 32
        text = outputs[icu][1]
        for leak in ("ICU: 23", "ED: 18", ": 41", f"ICU: {icu}", f"ED: {9 - icu}"):
            assert not re.search(re.escape(leak) + r"\b", text), leak
    assert outputs[2] == outputs[3] == outputs[4], \
        "2, 3 or 4 ICU team requests: nothing shown differs, so nothing shown gives it"


def test_a_hidden_team_month_cannot_be_found_from_the_team_total(database: Database) -> None:
    team(database, "2026-01", "ICU", 8)
    team(database, "2026-02", "ICU", 2, first=8)
    found = figures(database)
    assert found.team_total == 10
    assert found.team_months == {"2026-01": None, "2026-02": None}, "10 - 8 = 2 otherwise"
    personal(database, "2026-02", "ICU", 30)
    found = figures(database)
    assert found.months == {"2026-02": 30} and found.team_months["2026-02"] is None


def test_a_hidden_unit_is_protected_by_hiding_another(database: Database) -> None:
    team(database, "2026-01", "ICU", 3)
    team(database, "2026-01", "ED", 6, first=3)
    team(database, "2026-01", "OR", 9, first=9)
    found = figures(database)
    assert found.team_total == 18
    hidden = [unit for unit, count in found.team_units.items() if count is None]
    assert "ICU" in hidden and len(hidden) >= 2
    assert sum({"ICU": 3, "ED": 6, "OR": 9}[u] for u in hidden) >= K


# -- personal figures stay personal ------------------------------------------------------------


def test_personal_figures_are_unchanged_by_team_requests(database: Database) -> None:
    personal(database, "2026-01", "ICU", 9, answers=["better"] * 6 + ["same"] * 3)
    personal(database, "2026-02", "ED", 7, first=9, answers=["same"] * 2 + ["struggling"] * 5)
    before = figures(database)
    assert before.total_requests == 16 and before.escalations == 6
    assert before.supporters_with_cases == 8
    assert before.checkin_outcomes == {"better": 6, "same": 5, "struggling": 5}
    # Team requests of every kind: placed, escalated, with supporters who also hold personal
    # cases, check-ins answered by their callers and by members.
    team(database, "2026-01", "ICU", 6, reached=3, caller_answer="struggling",
         member_answers=["same", "same"])
    team(database, "2026-02", "ED", 5, first=6, placed=2, member_answers=["better"])
    team(database, "2026-03", "Pharmacy", 3, first=11, state=RequestState.ASSIGNED,
         caller_answer="another_session")
    after = figures(database)
    assert part(after, PERSONAL_FIELDS) == part(before, PERSONAL_FIELDS)
    assert after.team_total == 14, "the team requests are counted, apart"
    assert "2026-03" not in after.months


def test_both_kinds_read_apart(app_server: AppServer) -> None:
    """The coordinators' Home shows the same figures, in two parts."""
    home = home_of(app_server, "UCOORD0001")
    assert "*Support for one person*" in home and "*Support for a team*" in home
    assert "*Team requests by month:* none yet" in home
