"""The request lifecycle's rules, on real databases, without Slack."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.infra.db import make_sessions
from bot.infra.models import Offer, OfferState, RequestState, SupporterStatus, SupportRequest
from bot.requests import service as domain
from bot.requests.service import AlreadyOpen, Outcome, RequestError, RequestForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from tests.conftest import Database, run_together

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
FORM = RequestForm(urgency="now", connection="slack")


def add(db: Database, *specs: tuple[str, str, str], **fields: object) -> None:
    with db.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(*spec) for spec in specs], now=NOW, time_zones={},
                      default_case_cap=2, default_cooldown_hours=12)
        for spec in specs:
            for name, value in fields.items():
                setattr(roster.get(session, spec[0]), name, value)


def ask(db: Database, user_id: str = "UREQ000001", form: RequestForm = FORM) -> int:
    with db.sessions.begin() as session:
        return domain.create(session, user_id, form, now=NOW).id


def wave(db: Database, request_id: int, size: int = 3, now: datetime = NOW) -> list[str]:
    with db.sessions.begin() as session:
        request = session.get(SupportRequest, request_id)
        return [o.supporter_id for o in domain.next_wave(session, request, now=now,
                                                         wave_size=size)]


def offer_of(db: Database, request_id: int, supporter_id: str) -> int:
    with db.sessions() as session:
        return session.scalars(select(Offer.id).where(
            Offer.request_id == request_id, Offer.supporter_id == supporter_id)).one()


def test_one_open_request_per_person_and_per_submission(database: Database) -> None:
    request_id = ask(database)
    with pytest.raises(AlreadyOpen) as seen, database.sessions.begin() as session:
        domain.create(session, "UREQ000001", FORM, now=NOW)
    assert seen.value.request_id == request_id
    with database.sessions.begin() as session:
        domain.create(session, "UREQ000002", FORM, now=NOW, source_key="view:V1")
    with pytest.raises(AlreadyOpen), database.sessions.begin() as session:
        domain.create(session, "UREQ000002", FORM, now=NOW, source_key="view:V1")


@pytest.mark.parametrize("form", [
    RequestForm(urgency="yesterday", connection="slack"),
    RequestForm(urgency="now", connection="pigeon"),
    RequestForm(urgency="now", connection="slack", same_role=True),
    RequestForm(urgency="now", connection="slack", outside_department=True),
    RequestForm(urgency="now", connection="slack", department="ICU" * 30),
    RequestForm(urgency="now", connection="slack", department="ICU\x07"),
    RequestForm(urgency="now", connection="slack", role="n" * 33),
])
def test_impossible_forms_are_refused_and_store_nothing(database: Database,
                                                        form: RequestForm) -> None:
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.create(session, "UREQ000001", form, now=NOW)
    with database.sessions() as session:
        assert session.scalars(select(SupportRequest)).all() == []


def test_eligibility_honours_every_rule(database: Database) -> None:
    add(database, ("UOK0000001", "ICU", "nurse"), ("UOK0000002", "ED", "nurse"))
    add(database, ("UAWAY00001", "ED", "nurse"), status=SupporterStatus.AWAY)
    add(database, ("UREQ000001", "ED", "nurse"))  # a supporter asking for help themselves
    with database.sessions.begin() as session:
        roster.set_preferences(session, "UOK0000002", now=NOW, hours={1: (480, 960)},
                               case_cap=2, cooldown_hours=12)  # Tuesdays only; NOW is Monday
    request_id = ask(database)
    assert wave(database, request_id, size=10) == ["UOK0000001"]


def test_department_and_role_wishes(database: Database) -> None:
    add(database, ("UICU000001", "ICU", "nurse"), ("UED0000001", "ED", "physician"),
        ("UED0000002", "ED", "nurse"))
    outside = ask(database, "UREQ000001", RequestForm(
        urgency="now", connection="slack", outside_department=True, department="ED"))
    assert wave(database, outside, size=10) == ["UICU000001"]
    same_role = ask(database, "UREQ000002", RequestForm(
        urgency="now", connection="slack", same_role=True, role="physician"))
    assert wave(database, same_role, size=10) == ["UED0000001"]


def test_cap_and_rest_period(database: Database) -> None:
    add(database, ("USUP000001", "ICU", "nurse"), ("USUP000002", "ICU", "nurse"))
    first = ask(database, "UREQ000001")
    wave(database, first, size=1)
    with database.sessions.begin() as session:
        domain.accept(session, offer_of(database, first, "USUP000001"), "USUP000001", now=NOW)
        roster.get(session, "USUP000001").case_cap = 1
    second = ask(database, "UREQ000002")
    assert wave(database, second, size=10) == ["USUP000002"], "at their case cap"
    with database.sessions.begin() as session:
        domain.close(session, first, "USUP000001", now=NOW, duration="15_30", referred=False,
                     need_met="yes")
    third = ask(database, "UREQ000003")
    assert wave(database, third, size=10, now=NOW + timedelta(hours=11)) == ["USUP000002"]
    fourth = ask(database, "UREQ000004")
    assert "USUP000001" in wave(database, fourth, size=10, now=NOW + timedelta(hours=13))


def test_round_robin_asks_the_least_recently_offered_first(database: Database) -> None:
    add(database, ("USUP000001", "", "nurse"), ("USUP000002", "", "nurse"),
        ("USUP000003", "", "nurse"))
    firsts = []
    for number in range(3):
        request_id = ask(database, f"UREQ00000{number}")
        firsts.append(wave(database, request_id, size=1,
                           now=NOW + timedelta(minutes=number))[0])
    assert sorted(firsts) == ["USUP000001", "USUP000002", "USUP000003"]


def test_someone_not_safe_is_offered_to_everyone_available_at_once(database: Database) -> None:
    add(database, *[(f"USUP00000{i}", "", "nurse") for i in range(5)])
    add(database, ("UAWAY00001", "", "nurse"), status=SupporterStatus.AWAY)
    with database.sessions.begin() as session:
        roster.set_preferences(session, "USUP000000", now=NOW, hours={3: (0, 60)}, case_cap=1,
                               cooldown_hours=0)  # outside their hours: still asked
    request_id = ask(database, form=RequestForm(urgency="now", connection="phone", crisis=True))
    assert len(wave(database, request_id, size=1)) == 5


def test_first_accept_wins_and_the_others_are_taken(database: Database) -> None:
    add(database, ("USUP000001", "", "nurse"), ("USUP000002", "", "nurse"))
    request_id = ask(database)
    wave(database, request_id)
    with database.sessions.begin() as session:
        first = domain.accept(session, offer_of(database, request_id, "USUP000002"),
                              "USUP000002", now=NOW)
        assert first.outcome == Outcome.ACCEPTED
        assert [o.supporter_id for o in first.others] == ["USUP000001"]
    with database.sessions.begin() as session:
        late = domain.accept(session, offer_of(database, request_id, "USUP000001"),
                             "USUP000001", now=NOW)
        assert late.outcome == Outcome.TAKEN
        again = domain.accept(session, offer_of(database, request_id, "USUP000002"),
                              "USUP000002", now=NOW)
        assert again.outcome == Outcome.ALREADY_YOURS
        forwarded = domain.accept(session, offer_of(database, request_id, "USUP000002"),
                                  "USOMEONE01", now=NOW)
        assert forwarded.outcome == Outcome.NOT_YOURS
    with database.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert (request.state, request.supporter_id) == (RequestState.ASSIGNED, "USUP000002")


def test_an_expired_offer_cannot_be_accepted_but_a_direct_offer_to_them_can(
        database: Database) -> None:
    add(database, ("USUP000001", "", "nurse"))
    request_id = ask(database)
    wave(database, request_id)
    with database.sessions.begin() as session:
        assert domain.expire_wave(session, session.get(SupportRequest, request_id), 1, now=NOW)
    offer_id = offer_of(database, request_id, "USUP000001")
    with database.sessions.begin() as session:
        result = domain.accept(session, offer_id, "USUP000001", now=NOW)
        assert result.outcome == Outcome.EXPIRED
        assert session.get(SupportRequest, request_id).state == RequestState.OPEN
    with database.sessions.begin() as session:  # a coordinator picks them: the offer is live
        domain.offer_to(session, session.get(SupportRequest, request_id), "USUP000001", now=NOW)
    with database.sessions.begin() as session:
        assert domain.accept(session, offer_id, "USUP000001", now=NOW).outcome == \
            Outcome.ACCEPTED


def test_declines_settle_a_wave(database: Database) -> None:
    add(database, ("USUP000001", "", "nurse"), ("USUP000002", "", "nurse"))
    request_id = ask(database)
    wave(database, request_id)
    for supporter in ("USUP000001", "USUP000002"):
        with database.sessions.begin() as session:
            assert not domain.wave_settled(session, session.get(SupportRequest, request_id))
            result = domain.decline(session, offer_of(database, request_id, supporter),
                                    supporter, now=NOW)
            assert result.outcome == Outcome.DECLINED
    with database.sessions() as session:
        assert domain.wave_settled(session, session.get(SupportRequest, request_id))


def test_hand_back_reopens_without_that_supporter(database: Database) -> None:
    add(database, ("USUP000001", "", "nurse"), ("USUP000002", "", "nurse"))
    request_id = ask(database)
    wave(database, request_id, size=1)
    with database.sessions.begin() as session:
        domain.accept(session, offer_of(database, request_id, "USUP000001"), "USUP000001",
                      now=NOW)
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.hand_back(session, request_id, "USUP000002", now=NOW)
    with database.sessions.begin() as session:
        request = domain.hand_back(session, request_id, "USUP000001", now=NOW)
        assert (request.state, request.supporter_id) == (RequestState.OPEN, None)
    assert wave(database, request_id, size=5) == ["USUP000002"]
    with database.sessions.begin() as session:
        again = domain.accept(session, offer_of(database, request_id, "USUP000001"),
                              "USUP000001", now=NOW)
        assert again.outcome == Outcome.TAKEN, "who handed it back cannot take it again"


def test_cancel_and_close_belong_to_the_right_people(database: Database) -> None:
    add(database, ("USUP000001", "", "nurse"))
    request_id = ask(database)
    wave(database, request_id)
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.cancel(session, request_id, "USOMEONE01", now=NOW)
    with database.sessions.begin() as session:
        request, withdrawn = domain.cancel(session, request_id, "UREQ000001", now=NOW)
        assert request.state == RequestState.CANCELLED
        assert [o.state for o in withdrawn] == [OfferState.WITHDRAWN]
    with database.sessions.begin() as session:
        assert domain.accept(session, offer_of(database, request_id, "USUP000001"),
                             "USUP000001", now=NOW).outcome == Outcome.CANCELLED


def placed(database: Database) -> int:
    """A request accepted by the one supporter on the roster, USUP000001."""
    add(database, ("USUP000001", "", "nurse"))
    request_id = ask(database)
    wave(database, request_id)
    with database.sessions.begin() as session:
        domain.accept(session, offer_of(database, request_id, "USUP000001"), "USUP000001",
                      now=NOW)
    return request_id


@pytest.mark.parametrize(("duration", "need_met"), [("forever", "yes"), ("15_30", "maybe")])
def test_close_takes_only_the_offered_answers(database: Database, duration: str,
                                              need_met: str) -> None:
    request_id = placed(database)
    with pytest.raises(RequestError), database.sessions.begin() as session:
        domain.close(session, request_id, "USUP000001", now=NOW, duration=duration,
                     referred=False, need_met=need_met)


def test_retention_forgets_both_people(database: Database) -> None:
    request_id = placed(database)
    with database.sessions.begin() as session:
        domain.close(session, request_id, "USUP000001", now=NOW, duration="30_60",
                     referred=True, need_met="partly")
    with database.sessions.begin() as session:
        assert domain.forget_identities(session, now=NOW + timedelta(days=89),
                                        retention_days=90) == 0
        assert domain.forget_identities(session, now=NOW + timedelta(days=91),
                                        retention_days=90) == 1
    with database.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert (request.requester_id, request.supporter_id) == (None, None)
        assert (request.duration, request.referred, request.need_met) == ("30_60", True, "partly")
        assert session.scalars(select(Offer.supporter_id)).all() == [None]


def test_twenty_concurrent_accepts_assign_exactly_one(pg_database: Database) -> None:
    supporters = [f"USUP{i:06d}" for i in range(20)]
    add(pg_database, *[(s, "", "nurse") for s in supporters])
    request_id = ask(pg_database)
    wave(pg_database, request_id, size=20)
    offers = {s: offer_of(pg_database, request_id, s) for s in supporters}

    def click(supporter: str, go) -> Outcome:  # noqa: ANN001
        # Each click has its own engine and connection, as a separate web process would.
        engine = pg_database.new_engine()
        try:
            with make_sessions(engine).begin() as session:
                go()
                return domain.accept(session, offers[supporter], supporter, now=NOW).outcome
        finally:
            engine.dispose()

    outcomes = run_together(click, supporters)
    assert Counter(outcomes) == Counter({Outcome.ACCEPTED: 1, Outcome.TAKEN: 19})
    with pg_database.sessions() as session:
        request = session.get(SupportRequest, request_id)
        accepted = session.scalars(select(Offer).where(
            Offer.request_id == request_id, Offer.state == OfferState.ACCEPTED)).all()
        assert request.state == RequestState.ASSIGNED
        assert [o.supporter_id for o in accepted] == [request.supporter_id]


def test_retention_also_forgets_check_ins_and_their_hours(database: Database) -> None:
    from bot.checkins import service as checkins
    from bot.infra.models import CheckIn, ContactHours

    add(database, ("USUP000001", "", "nurse"))
    request_id = ask(database, form=RequestForm(urgency="now", connection="slack",
                                                followups=True))
    wave(database, request_id)
    with database.sessions.begin() as session:
        domain.accept(session, offer_of(database, request_id, "USUP000001"), "USUP000001",
                      now=NOW)
        request = session.get(SupportRequest, request_id)
        checkins.plan(session, request, now=NOW, offsets_days=(1, 3), default_tz="UTC")
        domain.close(session, request_id, "USUP000001", now=NOW, duration="15_30",
                     referred=False, need_met="yes")
    with database.sessions.begin() as session:
        for checkin in session.scalars(select(CheckIn)):
            checkin.state = "answered"
            checkin.answer = "better"
    with database.sessions.begin() as session:
        assert domain.forget_identities(session, now=NOW + timedelta(days=91),
                                        retention_days=90) == 1
    with database.sessions() as session:
        assert set(session.scalars(select(CheckIn.user_id))) == {None}
        assert set(session.scalars(select(CheckIn.answer))) == {"better"}, "outcomes stay"
        assert session.scalars(select(ContactHours)).all() == []
