"""Team requests in the request state machine: one or two seats, exactly that many supporters,
on real databases, without Slack."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from sqlalchemy import select

from bot.app.runtime import Runtime
from bot.infra.clock import ManualClock
from bot.infra.models import (
    DueWork,
    Offer,
    OfferState,
    RequestKind,
    RequestState,
    Seat,
    SeatState,
    SupportRequest,
    TeamRequest,
)
from bot.infra.outbox import Effect
from bot.requests import flows, teams
from bot.requests import service as domain
from bot.requests.service import RequestError
from bot.requests.teams import TeamForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from tests.conftest import Database, run_together
from tests.requests.test_request_races import in_own_session

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
CALLER = "UCHARGE001"
TEAM = TeamForm(unit="Paediatric ICU", size="6_15", urgency="today", group=True, private=True)
SUPPORTERS = [f"USUP{n:06d}" for n in range(20)]


def add(db: Database, *user_ids: str, cap: int = 2) -> None:
    with db.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "", "nurse") for u in user_ids], now=NOW,
                      time_zones={}, default_case_cap=cap, default_cooldown_hours=0)


def call(db: Database, form: TeamForm = TEAM, seats: int = 2, source_key: str | None = None
         ) -> int:
    with db.sessions.begin() as session:
        return teams.create_team(session, CALLER, form, seats=seats, now=NOW,
                                 source_key=source_key).id


def offers(db: Database, request_id: int, size: int) -> dict[str, int]:
    with db.sessions.begin() as session:
        request = session.get(SupportRequest, request_id)
        return {o.supporter_id: o.id for o in domain.next_wave(session, request, now=NOW,
                                                               wave_size=size)}


def accept(db: Database, offer_id: int, user_id: str) -> domain.Outcome:
    with db.sessions.begin() as session:
        return domain.accept(session, offer_id, user_id, now=NOW).outcome


def seats(db: Database, request_id: int) -> list[str]:
    with db.sessions() as session:
        return domain.seat_holders(session, request_id)


def request_of(db: Database, request_id: int) -> SupportRequest:
    with db.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert request is not None
        return request


def keys(db: Database, effect: Effect) -> list[str]:
    with db.sessions() as session:
        return sorted(session.scalars(select(DueWork.key).where(DueWork.kind == effect.value)))


def test_a_team_request_keeps_only_what_the_form_asks(database: Database) -> None:
    request_id = call(database)
    with database.sessions() as session:
        request = session.get(SupportRequest, request_id)
        team = session.get(TeamRequest, request_id)
        assert (request.kind, request.seats, request.filled) == (RequestKind.TEAM, 2, 0)
        assert (team.unit, team.size, team.visit, team.group, team.private) == (
            "Paediatric ICU", "6_15", False, True, True)
    assert teams.seats_for("2_5", 6) == 1 and teams.seats_for("6_15", 6) == 2


@pytest.mark.parametrize("form", [
    TeamForm(unit="", size="6_15", urgency="now", group=True),
    TeamForm(unit="ICU" * 30, size="6_15", urgency="now", group=True),
    TeamForm(unit="ICU\x00", size="6_15", urgency="now", group=True),
    TeamForm(unit="ICU", size="1000", urgency="now", group=True),
    TeamForm(unit="ICU", size="6_15", urgency="yesterday", group=True),
    TeamForm(unit="ICU", size="6_15", urgency="now"),
])
def test_impossible_team_forms_store_nothing(database: Database, form: TeamForm) -> None:
    with pytest.raises(RequestError), database.sessions.begin() as session:
        teams.create_team(session, CALLER, form, seats=2, now=NOW)
    with database.sessions() as session:
        assert session.scalars(select(SupportRequest)).all() == []


def test_a_caller_with_their_own_request_can_still_call_for_their_team(
        database: Database) -> None:
    with database.sessions.begin() as session:
        own = domain.create(session, CALLER, domain.RequestForm(urgency="now",
                                                                connection="slack"), now=NOW)
    team_id = call(database)
    with database.sessions() as session:
        assert domain.open_request_of(session, CALLER).id == own.id != team_id


def test_the_first_accept_takes_a_seat_and_the_second_places_it(database: Database) -> None:
    add(database, *SUPPORTERS[:3])
    request_id = call(database)
    wave = offers(database, request_id, 3)
    first, second, third = SUPPORTERS[:3]
    assert accept(database, wave[first], first) == domain.Outcome.JOINED
    request = request_of(database, request_id)
    assert (request.state, request.filled, request.supporter_id) == (
        RequestState.OPEN, 1, first)
    assert accept(database, wave[first], first) == domain.Outcome.ALREADY_YOURS
    assert accept(database, wave[second], second) == domain.Outcome.ACCEPTED
    request = request_of(database, request_id)
    assert (request.state, request.filled) == (RequestState.ASSIGNED, 2)
    assert seats(database, request_id) == [first, second]
    assert accept(database, wave[third], third) == domain.Outcome.TAKEN
    # Both are introduced with the caller in one message; each gets the case privately.
    assert keys(database, Effect.INTRO) == [f"intro:{request_id}:v{request.version}"]
    assert keys(database, Effect.CASE) == sorted(
        f"case:{request_id}:{s}:v{request.version}" for s in (first, second))
    with database.sessions() as session:
        ended = {o.supporter_id: o.state for o in session.scalars(select(Offer))}
    assert ended == {first: OfferState.ACCEPTED, second: OfferState.ACCEPTED,
                     third: OfferState.TAKEN}


def test_one_of_two_handing_back_reopens_one_seat(database: Database) -> None:
    add(database, *SUPPORTERS[:4])
    request_id = call(database)
    wave = offers(database, request_id, 2)
    first, second = SUPPORTERS[:2]
    accept(database, wave[first], first)
    accept(database, wave[second], second)
    with database.sessions.begin() as session:
        domain.hand_back(session, request_id, first, now=NOW)
    request = request_of(database, request_id)
    assert (request.state, request.filled, request.supporter_id) == (
        RequestState.OPEN, 1, second)
    assert seats(database, request_id) == [second]
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.hand_back(session, request_id, first, now=NOW)  # a second click changes nothing
    # The next wave asks others only; one more accept places it again.
    nxt = offers(database, request_id, 2)
    assert set(nxt) == set(SUPPORTERS[2:4])
    assert accept(database, nxt[SUPPORTERS[2]], SUPPORTERS[2]) == domain.Outcome.ACCEPTED
    assert seats(database, request_id) == [second, SUPPORTERS[2]]
    with database.sessions() as session:
        notices = session.scalars(select(DueWork.payload).where(
            DueWork.kind == Effect.NOTICE.value)).all()
    assert [n["notice"] for n in notices] == ["team_handed_back"]


def test_a_seat_holder_can_step_back_before_it_is_placed(database: Database) -> None:
    add(database, *SUPPORTERS[:2])
    request_id = call(database)
    wave = offers(database, request_id, 2)
    accept(database, wave[SUPPORTERS[0]], SUPPORTERS[0])
    with database.sessions.begin() as session:
        domain.hand_back(session, request_id, SUPPORTERS[0], now=NOW)
    request = request_of(database, request_id)
    assert (request.state, request.filled, request.supporter_id) == (RequestState.OPEN, 0, None)
    assert accept(database, wave[SUPPORTERS[1]], SUPPORTERS[1]) == domain.Outcome.JOINED


def test_cancelling_tells_every_supporter_and_frees_their_seats(database: Database) -> None:
    add(database, *SUPPORTERS[:3])
    request_id = call(database)
    wave = offers(database, request_id, 3)
    accept(database, wave[SUPPORTERS[0]], SUPPORTERS[0])
    accept(database, wave[SUPPORTERS[1]], SUPPORTERS[1])
    with database.sessions.begin() as session:
        domain.cancel(session, request_id, CALLER, now=NOW)
    assert request_of(database, request_id).state == RequestState.CANCELLED
    with database.sessions() as session:
        told = sorted(p["user_id"] for p in session.scalars(select(DueWork.payload).where(
            DueWork.kind == Effect.NOTICE.value)))
        held = session.scalars(select(Seat).where(Seat.state == SeatState.HELD)).all()
        assert domain.active_cases(session, SUPPORTERS[0]) == []
    assert told == SUPPORTERS[:2] and held == []


def test_nobody_eligible_escalates_a_team_request(database: Database) -> None:
    request_id = call(database)
    with database.sessions.begin() as session:
        request = session.get(SupportRequest, request_id)
        assert domain.next_wave(session, request, now=NOW, wave_size=3) == []
        assert domain.escalate(session, request, now=NOW, coordinators=["UCOORD0001"])
    request = request_of(database, request_id)
    assert request.state == RequestState.ESCALATED
    with database.sessions() as session:
        assert [r.id for r in domain.unassigned(session)] == [request_id]


def test_a_seat_counts_towards_the_case_cap(database: Database) -> None:
    add(database, SUPPORTERS[0], cap=1)
    add(database, SUPPORTERS[1])
    request_id = call(database)
    wave = offers(database, request_id, 2)
    assert accept(database, wave[SUPPORTERS[0]], SUPPORTERS[0]) == domain.Outcome.JOINED
    with database.sessions.begin() as session:
        personal = domain.create(session, "UREQ000001", domain.RequestForm(
            urgency="now", connection="slack"), now=NOW)
        assert domain.eligible_supporters(session, personal, now=NOW) == [
            roster.get(session, SUPPORTERS[1])]
        personal_offer = domain.offer_to(session, personal, SUPPORTERS[0], now=NOW)
    assert accept(database, personal_offer.id, SUPPORTERS[0]) == domain.Outcome.AT_CAP


@pytest.mark.parametrize("attempt", range(4))
def test_twenty_accepts_at_once_place_exactly_two(pg_database: Database, attempt: int) -> None:
    add(pg_database, *SUPPORTERS)
    request_id = call(pg_database)
    wave = offers(pg_database, request_id, len(SUPPORTERS))

    def click(supporter_id: str, go: Callable[[], Any]) -> Any:
        return in_own_session(pg_database, lambda s: domain.accept(
            s, wave[supporter_id], supporter_id, now=NOW).outcome, go)

    outcomes = Counter(run_together(click, SUPPORTERS))
    assert outcomes == Counter({domain.Outcome.JOINED: 1, domain.Outcome.ACCEPTED: 1,
                                domain.Outcome.TAKEN: 18})
    request = request_of(pg_database, request_id)
    assert (request.state, request.filled) == (RequestState.ASSIGNED, 2)
    assert len(seats(pg_database, request_id)) == 2
    assert len(keys(pg_database, Effect.INTRO)) == 1
    assert len(keys(pg_database, Effect.CASE)) == 2


def test_a_coordinator_taking_a_team_request_holds_a_seat_and_can_close_it(
        database: Database) -> None:
    add(database, SUPPORTERS[0])
    request_id = call(database)
    wave = offers(database, request_id, 1)
    assert accept(database, wave[SUPPORTERS[0]], SUPPORTERS[0]) == domain.Outcome.JOINED
    with database.sessions.begin() as session:
        result = domain.take_as_coordinator(session, request_id, "UCOORD0001", now=NOW)
        assert result.outcome == domain.Outcome.ACCEPTED
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.take_as_coordinator(session, request_id, "UCOORD0001", now=NOW)
    assert seats(database, request_id) == [SUPPORTERS[0], "UCOORD0001"]
    assert request_of(database, request_id).supporter_id == SUPPORTERS[0]
    with database.sessions.begin() as session:
        domain.close(session, request_id, "UCOORD0001", now=NOW, duration="30_60",
                     referred=False, need_met="yes", people_present="6_15")
    assert request_of(database, request_id).state == RequestState.CLOSED
    assert seats(database, request_id) == []


def test_closing_a_team_request_needs_roughly_how_many_took_part_and_tells_the_other(
        database: Database) -> None:
    add(database, *SUPPORTERS[:2])
    request_id = call(database)
    wave = offers(database, request_id, 2)
    for supporter in SUPPORTERS[:2]:
        accept(database, wave[supporter], supporter)
    answers = {"duration": "30_60", "referred": True, "need_met": "yes"}
    for present in ("", "40_60", "6_15 "):
        with pytest.raises(RequestError), database.sessions.begin() as session:
            teams.close_team(session, request_id, SUPPORTERS[1], now=NOW, people_present=present,
                             **answers)
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.close(session, request_id, SUPPORTERS[1], now=NOW, **answers)  # not said
    assert request_of(database, request_id).state == RequestState.ASSIGNED
    with database.sessions.begin() as session:
        teams.close_team(session, request_id, SUPPORTERS[1], now=NOW, people_present="1",
                         **answers)
    request = request_of(database, request_id)
    assert (request.state, request.duration, request.referred) == (
        RequestState.CLOSED, "30_60", True)
    with database.sessions() as session:
        assert session.get(TeamRequest, request_id).people_present == "1"
        notices = session.scalars(select(DueWork.payload).where(
            DueWork.kind == Effect.NOTICE.value)).all()
    assert [(n["user_id"], n["notice"]) for n in notices] == [(SUPPORTERS[0], "team_closed")]
    assert seats(database, request_id) == []


def test_a_personal_request_is_not_asked_how_many_took_part(database: Database) -> None:
    add(database, SUPPORTERS[0])
    with database.sessions.begin() as session:
        request = domain.create(session, "UREQ000001", domain.RequestForm(
            urgency="now", connection="slack"), now=NOW)
        [offer] = domain.next_wave(session, request, now=NOW, wave_size=1)
        request_id, offer_id = request.id, offer.id
    accept(database, offer_id, SUPPORTERS[0])
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.close(session, request_id, SUPPORTERS[0], now=NOW, duration="15_30",
                     referred=False, need_met="yes", people_present="2_5")
    assert request_of(database, request_id).state == RequestState.ASSIGNED


def test_one_supporters_clicks_at_once_take_one_seat_on_either_database(
        database: Database) -> None:
    """A double (or sextuple) click by one supporter holds one seat, never both: the other
    seat stays for someone else, and the clicks after the first are told it is theirs."""
    add(database, *SUPPORTERS[:2])
    request_id = call(database)
    wave = offers(database, request_id, 2)
    mine = SUPPORTERS[0]

    def click(_n: int, go: Callable[[], Any]) -> Any:
        return in_own_session(database, lambda s: domain.accept(
            s, wave[mine], mine, now=NOW).outcome, go)

    outcomes = Counter(run_together(click, range(6)))
    assert outcomes[domain.Outcome.JOINED] == 1
    assert set(outcomes) <= {domain.Outcome.JOINED, domain.Outcome.ALREADY_YOURS}
    assert seats(database, request_id) == [mine]
    request = request_of(database, request_id)
    assert (request.state, request.filled) == (RequestState.OPEN, 1)
    assert accept(database, wave[SUPPORTERS[1]], SUPPORTERS[1]) == domain.Outcome.ACCEPTED


NAMED = TeamForm(unit="Paediatric ICU", size="2_5", urgency="today", group=True, private=True,
                 channel="C0PICU0001")


def placed_named(db: Database) -> int:
    """A one-seat team request that asked for a group conversation and private notes, placed."""
    add(db, SUPPORTERS[0])
    request_id = call(db, NAMED, seats=1)
    wave = offers(db, request_id, 1)
    assert accept(db, wave[SUPPORTERS[0]], SUPPORTERS[0]) == domain.Outcome.ACCEPTED
    return request_id


def test_closing_before_a_group_time_is_picked_still_reaches_the_members(
        database: Database) -> None:
    request_id = placed_named(database)
    assert keys(database, Effect.TEAM_OUTREACH_START) == [], "the notes wait for the time"
    with database.sessions.begin() as session:
        domain.close(session, request_id, SUPPORTERS[0], now=NOW, duration="30_60",
                     referred=False, need_met="yes", people_present="2_5")
    assert keys(database, Effect.TEAM_OUTREACH_START) == [f"outreach:{request_id}:start"]


def test_notes_stop_waiting_for_a_group_time_a_day_after_placement(runtime: Runtime,
                                                                    clock: ManualClock) -> None:
    with runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(SUPPORTERS[0], "", "nurse")], now=clock.now(),
                      time_zones={}, default_case_cap=2, default_cooldown_hours=0)
        request = flows.create_team(runtime.services, session, CALLER, NAMED, source_key=None)
        request_id = request.id
    with runtime.sessions.begin() as session:
        offer = session.scalars(select(Offer).where(Offer.request_id == request_id)).one()
        result = domain.accept(session, offer.id, SUPPORTERS[0], now=clock.now())
        flows.accepted(runtime.services, session, result)
    started = f"outreach:{request_id}:start"

    def recorded() -> list[str]:
        with runtime.sessions() as session:
            return list(session.scalars(select(DueWork.key).where(
                DueWork.kind == Effect.TEAM_OUTREACH_START.value)))

    clock.advance(timedelta(hours=23, minutes=59))
    runtime.duework().run_until_idle()
    assert recorded() == []
    clock.advance(timedelta(minutes=1))
    runtime.duework().run_until_idle()
    assert recorded() == [started]
