"""The races that used to break the promise, each run on PostgreSQL with real concurrent
sessions (one engine per racer, as separate processes would have): every one must end with one
supporter at most, within their cap, and with everyone involved told."""

from __future__ import annotations

from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime
from typing import Any

import pytest
from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.infra.db import make_sessions
from bot.infra.models import DueWork, Offer, OfferState, RequestState, SupportRequest
from bot.infra.outbox import Effect
from bot.requests import service as domain
from bot.requests.service import AlreadyOpen, Outcome, RequestError, RequestForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from tests.conftest import Database, run_together

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
FORM = RequestForm(urgency="now", connection="slack")
REQUESTER = "UREQ000001"
A, B, C = "USUPAAAAAA", "USUPBBBBBB", "USUPCCCCCC"
REPEATS = 8  # each race is run several times: an interleaving that loses must show up


def add(db: Database, *user_ids: str, cap: int = 2) -> None:
    with db.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(u, "", "nurse") for u in user_ids], now=NOW,
                      time_zones={}, default_case_cap=cap, default_cooldown_hours=0)


def in_own_session(db: Database, work: Callable[[Session], Any], go: Callable[[], Any]) -> Any:
    """Run `work` in a session of a fresh engine once every racer is ready; a refusal the
    person would see (RequestError) is returned, not raised."""
    engine = db.new_engine()
    try:
        with make_sessions(engine).begin() as session:
            go()
            try:
                return work(session)
            except (RequestError, AlreadyOpen) as refusal:
                return refusal
    finally:
        engine.dispose()


def ask(db: Database, user_id: str = REQUESTER) -> int:
    with db.sessions.begin() as session:
        return domain.create(session, user_id, FORM, now=NOW).id


def offer_wave(db: Database, request_id: int, size: int = 3) -> dict[str, int]:
    with db.sessions.begin() as session:
        request = session.get(SupportRequest, request_id)
        return {o.supporter_id: o.id for o in domain.next_wave(session, request, now=NOW,
                                                               wave_size=size)}


def accept(db: Database, offer_id: int, user_id: str) -> Outcome:
    with db.sessions.begin() as session:
        return domain.accept(session, offer_id, user_id, now=NOW).outcome


def state_of(db: Database, request_id: int) -> tuple[SupportRequest, list[Offer]]:
    with db.sessions() as session:
        request = session.get(SupportRequest, request_id)
        offers = list(session.scalars(select(Offer).where(Offer.request_id == request_id)))
        return request, offers


def effects(db: Database, effect: Effect) -> list[DueWork]:
    with db.sessions() as session:
        return list(session.scalars(select(DueWork).where(DueWork.kind == effect.value)))


def assert_one_supporter(db: Database, request_id: int) -> None:
    request, offers = state_of(db, request_id)
    accepted = [o.supporter_id for o in offers if o.state == OfferState.ACCEPTED]
    assert len(accepted) <= 1, accepted
    if request.state == RequestState.ASSIGNED and accepted:
        assert accepted == [request.supporter_id]
    if request.state in (RequestState.OPEN, RequestState.ESCALATED):
        assert request.supporter_id is None and not accepted


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_a_double_hand_back_and_a_stale_accept_leave_one_supporter(
        pg_database: Database, attempt: int) -> None:
    add(pg_database, A, B, C)
    request_id = ask(pg_database)
    offers = offer_wave(pg_database, request_id, size=2)  # A and B
    assert accept(pg_database, offers[A], A) == Outcome.ACCEPTED

    def hand_back(_: int, go: Callable[[], Any]) -> Any:
        return in_own_session(pg_database, lambda s: domain.hand_back(
            s, request_id, A, now=NOW), go)

    results = run_together(hand_back, [1, 2])
    assert sum(isinstance(r, SupportRequest) for r in results) == 1, results
    # B's old offer said "taken" and must stay that way: it cannot be accepted now.
    assert accept(pg_database, offers[B], B) == Outcome.TAKEN
    third = offer_wave(pg_database, request_id)
    assert accept(pg_database, third[C], C) == Outcome.ACCEPTED
    assert_one_supporter(pg_database, request_id)
    request, _ = state_of(pg_database, request_id)
    assert (request.state, request.supporter_id) == (RequestState.ASSIGNED, C)


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_a_timeout_and_an_accept_never_both_win(pg_database: Database, attempt: int) -> None:
    add(pg_database, A)
    request_id = ask(pg_database)
    offers = offer_wave(pg_database, request_id, size=1)

    def timeout(session: Session) -> bool:
        request = session.get(SupportRequest, request_id)
        if not domain.expire_wave(session, request, 1, now=NOW):
            return False
        return domain.escalate(session, request, now=NOW, coordinators=["UCOORD0001"])

    def race(which: str, go: Callable[[], Any]) -> Any:
        if which == "accept":
            return in_own_session(pg_database, lambda s: domain.accept(
                s, offers[A], A, now=NOW).outcome, go)
        return in_own_session(pg_database, timeout, go)

    accepted, escalated = run_together(race, ["accept", "timeout"])
    request, _ = state_of(pg_database, request_id)
    assert (accepted == Outcome.ACCEPTED) != bool(escalated), (accepted, escalated)
    assert request.state == (RequestState.ASSIGNED if accepted == Outcome.ACCEPTED
                             else RequestState.ESCALATED)
    assert_one_supporter(pg_database, request_id)
    if accepted == Outcome.ACCEPTED:
        assert not effects(pg_database, Effect.ALERT), "nobody is alerted about a placed request"


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_a_cancel_and_an_accept_tell_the_supporter(pg_database: Database, attempt: int) -> None:
    add(pg_database, A)
    request_id = ask(pg_database)
    offers = offer_wave(pg_database, request_id, size=1)

    def race(which: str, go: Callable[[], Any]) -> Any:
        if which == "accept":
            return in_own_session(pg_database, lambda s: domain.accept(
                s, offers[A], A, now=NOW).outcome, go)
        return in_own_session(pg_database, lambda s: domain.cancel(
            s, request_id, REQUESTER, now=NOW), go)

    accepted, _cancelled = run_together(race, ["accept", "cancel"])
    request, offer_rows = state_of(pg_database, request_id)
    assert request.state == RequestState.CANCELLED
    notices = [e.payload for e in effects(pg_database, Effect.NOTICE)]
    if accepted == Outcome.ACCEPTED:
        # Introduced first, then withdrawn: the supporter is told the person closed it.
        assert notices == [{"request_id": request_id, "user_id": A, "notice": "withdrawn"}]
    else:
        assert accepted == Outcome.CANCELLED and notices == []
        assert [o.state for o in offer_rows] == [OfferState.WITHDRAWN]


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_two_forms_at_once_make_one_request(pg_database: Database, attempt: int) -> None:
    def submit(view: str, go: Callable[[], Any]) -> Any:
        return in_own_session(pg_database, lambda s: domain.create(
            s, REQUESTER, FORM, now=NOW, source_key=f"view:{view}").id, go)

    results = run_together(submit, ["V1", "V2"])
    made = [r for r in results if isinstance(r, int)]
    shown = [r for r in results if isinstance(r, AlreadyOpen)]
    assert len(made) == 1 and len(shown) == 1, results
    assert shown[0].request_id == made[0], "the second is shown the first's status"


@pytest.mark.parametrize("attempt", range(REPEATS))
def test_the_same_form_delivered_twice_at_once_makes_one_request(
        pg_database: Database, attempt: int) -> None:
    def submit(_: int, go: Callable[[], Any]) -> Any:
        return in_own_session(pg_database, lambda s: domain.create(
            s, REQUESTER, FORM, now=NOW, source_key="view:VSAME").id, go)

    results = run_together(submit, [1, 2])
    assert sorted(type(r).__name__ for r in results) == ["AlreadyOpen", "int"], results


def test_a_supporter_never_accepts_beyond_their_cap(pg_database: Database) -> None:
    add(pg_database, A, cap=3)
    offers = []
    for number in range(7):
        request_id = ask(pg_database, f"UREQ{number:06d}")
        offers.append(offer_wave(pg_database, request_id, size=1)[A])

    def click(offer_id: int, go: Callable[[], Any]) -> Any:
        return in_own_session(pg_database, lambda s: domain.accept(
            s, offer_id, A, now=NOW).outcome, go)

    outcomes = Counter(run_together(click, offers))
    assert outcomes == Counter({Outcome.ACCEPTED: 3, Outcome.AT_CAP: 4})
    with pg_database.sessions() as session:
        assert len(domain.active_cases(session, A)) == 3


def test_the_cap_is_kept_on_sqlite_too(sqlite_database: Database) -> None:
    add(sqlite_database, A, cap=1)
    first, second = ask(sqlite_database, "UREQ000001"), ask(sqlite_database, "UREQ000002")
    offers = [offer_wave(sqlite_database, r, size=1)[A] for r in (first, second)]
    assert accept(sqlite_database, offers[0], A) == Outcome.ACCEPTED
    assert accept(sqlite_database, offers[1], A) == Outcome.AT_CAP
    request, offer_rows = state_of(sqlite_database, second)
    assert request.state == RequestState.OPEN and offer_rows[0].state == OfferState.PENDING
