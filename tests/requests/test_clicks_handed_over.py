"""Clicks a web process hands to a listening clock: acknowledged and recorded by the web, applied
by the clock with the same rules (first accept wins, refusals answered privately), swept up by
the web when the clock died first, and applied by the web itself when nobody listens."""

from __future__ import annotations

import json
from collections.abc import Iterator
from datetime import timedelta
from unittest import mock

import pytest
from sqlalchemy import event, select
from sqlalchemy.exc import OperationalError

from bot.app.runtime import SWEEP_AFTER, Runtime
from bot.infra import wakeup
from bot.infra.clock import ManualClock
from bot.infra.models import (
    CheckInState,
    DueWork,
    OfferState,
    Pulse,
    PulseAnswer,
    PulseRun,
    RequestState,
    WorkState,
)
from bot.infra.outbox import Effect
from bot.sandbox.driver import Reply
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action
from tests.checkins.test_checkins import connect_with_checkins, first_checkin, run_to_first
from tests.conftest import AppServer, Database, eventually, run_together
from tests.infra.test_wakeup import a_runtime
from tests.requests.test_requests_http import (
    REQUESTER,
    SUPPORTERS,
    add_supporters,
    ask,
    current,
    offer_value,
    offers,
    posted_offers,
    request_row,
)


@pytest.fixture
def web(pg_database: Database, fake_slack: FakeSlack, clock: ManualClock
        ) -> Iterator[AppServer]:
    """A web process on PostgreSQL that hands over to a clock whenever one listens."""
    server = AppServer(a_runtime(pg_database, fake_slack, clock), fake_slack)
    try:
        yield server
    finally:
        server.stop()
        server.runtime.engine.dispose()


@pytest.fixture
def listening(pg_database: Database, fake_slack: FakeSlack, clock: ManualClock,
              web: AppServer) -> Iterator[Runtime]:
    """A clock process listening beside the web process."""
    clock_process = a_runtime(pg_database, fake_slack, clock)
    listener = clock_process.listen()
    try:
        assert eventually(web.runtime.hands_over), "the web process sees the clock listening"
        yield clock_process
    finally:
        listener.stop()
        clock_process.engine.dispose()


def clicks(runtime: Runtime) -> list[DueWork]:
    with runtime.sessions() as session:
        return list(session.scalars(select(DueWork).where(DueWork.kind == Effect.CLICK)
                                    .order_by(DueWork.id)))


def accept_handed_to_a_dead_clock(web: AppServer, clock: ManualClock) -> DueWork:
    """A request whose offer went out, and its Accept, recorded for a clock
    that said it listens and was then killed: nobody is woken, and for a few seconds more it
    still counts as listening, so the web hands over what nobody will take."""
    runtime = web.runtime
    with runtime.sessions.begin() as session:
        wakeup.say_listening(session, clock.now())
    add_supporters(web, SUPPORTERS[0])
    ask(web)
    web.settle()
    assert runtime.deliver_due() >= 1, "the offer, sent as the clock would have"
    posted_offers(web, 1)
    accept(web)
    web.settle()
    [click] = clicks(runtime)
    return click


def test_an_accept_is_applied_by_the_clock_and_introduces_the_two(
        web: AppServer, listening: Runtime) -> None:
    add_supporters(web, *SUPPORTERS[:3])
    ask(web)
    posted_offers(web, 3)
    winner = SUPPORTERS[1]
    reply = web.slack.block_action(winner, Action.ACCEPT_OFFER, offer_value(web, winner))
    assert reply.status == 200
    fake = web.slack.fake
    intro = fake.wait_for("chat.postMessage", lambda c: c.args["channel"].startswith("G"))
    assert len(intro) == 1
    fake.wait_for("chat.update", lambda c: "already taken" in c.args["text"], count=2)
    request = eventually(lambda: (r := request_row(web)) and r.intro_channel and r)
    assert (request.state, request.supporter_id) == (RequestState.ASSIGNED, winner)
    [click] = clicks(web.runtime)
    assert click.state == WorkState.DONE
    assert (click.claim_token or "").startswith("deliver:"), "the clock applied it, not the web"
    stored = json.dumps(click.payload)
    assert winner in stored and "blocks" not in stored, "who clicked what; no message kept"


def test_concurrent_accepts_handed_over_assign_one_and_tell_the_others(
        web: AppServer, listening: Runtime) -> None:
    add_supporters(web, *SUPPORTERS)
    ask(web)
    posted_offers(web, 3)
    request = request_row(web)
    clickers = [o.supporter_id for o in offers(web, request.id)]
    values = {s: offer_value(web, s) for s in clickers}

    def click(supporter: str, go) -> None:  # noqa: ANN001
        go()
        web.slack.block_action(supporter, Action.ACCEPT_OFFER, values[supporter])
        web.slack.block_action(supporter, Action.ACCEPT_OFFER, values[supporter])  # twice

    run_together(click, clickers)
    assert eventually(lambda: all(c.state == WorkState.DONE for c in clicks(web.runtime))
                      and len(clicks(web.runtime)) == 2 * len(clickers))
    accepted = [o for o in offers(web, request.id) if o.state == OfferState.ACCEPTED]
    assert len(accepted) == 1 and current(web, "state") == RequestState.ASSIGNED
    intros = web.slack.fake.wait_for("chat.postMessage",
                                     lambda c: c.args["channel"].startswith("G"))
    assert len(intros) == 1, "one introduction however many clicks"
    notes = [r for r in web.slack.fake.responses if not r.get("replace_original")]
    # Each of the others clicked twice, and is told twice; nobody is told nothing.
    assert sum("already taken" in r.get("text", "") for r in notes) == 2 * (len(clickers) - 1)


def test_a_bad_offer_value_handed_over_is_refused_privately(
        web: AppServer, listening: Runtime) -> None:
    add_supporters(web, SUPPORTERS[0])
    ask(web)
    posted_offers(web, 1)
    web.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER, "999999")
    assert web.slack.fake.wait_for_response()[0]["text"] == "This offer no longer exists."
    assert request_row(web).state == RequestState.OPEN


def test_a_click_left_by_a_clock_that_died_is_applied_by_the_web(
        web: AppServer, clock: ManualClock) -> None:
    runtime = web.runtime
    click = accept_handed_to_a_dead_clock(web, clock)
    assert click.state == WorkState.PENDING and request_row(web).state == RequestState.OPEN
    assert runtime.sweep_outbox() == 0, "a woken clock would take it within moments"
    clock.advance(SWEEP_AFTER.total_seconds())
    assert runtime.sweep_outbox() == 0, "a clock saying it listens may just be behind"
    clock.advance(wakeup.FRESH.total_seconds())
    assert runtime.sweep_outbox() >= 1, "it stopped saying so: the web applies the click"
    assert request_row(web).state == RequestState.ASSIGNED
    assert [c.state for c in clicks(runtime)] == [WorkState.DONE]


def test_with_no_clock_listening_the_web_applies_the_click_itself(web: AppServer) -> None:
    add_supporters(web, SUPPORTERS[0])
    ask(web, REQUESTER)
    posted_offers(web, 1)
    accept(web)
    assert eventually(lambda: current(web, "state") == RequestState.ASSIGNED)
    assert clicks(web.runtime) == [], "nothing handed over"


def test_a_check_in_answer_is_applied_by_the_clock_and_replaces_the_message(
        web: AppServer, listening: Runtime) -> None:
    connect_with_checkins(web)
    checkin = run_to_first(web)
    # The jump to the check-in's time left the clock's last word hours behind: until it next
    # says it listens (every few seconds), the web applies clicks itself.
    assert eventually(web.runtime.hands_over)
    web.slack.block_action(REQUESTER, f"{Action.CHECKIN_ANSWER}:better", str(checkin.id))
    [reply] = web.slack.fake.wait_for_response()
    assert reply["replace_original"] is True and "Doing better" in reply["text"]
    assert eventually(lambda: first_checkin(web).state == CheckInState.ANSWERED)
    assert [c.state for c in clicks(web.runtime)] == [WorkState.DONE] * 2  # Accept, answer


def test_a_prompt_answer_is_counted_once_by_the_clock_and_thanked(
        pg_database: Database, fake_slack: FakeSlack, clock: ManualClock) -> None:
    server = AppServer(a_runtime(pg_database, fake_slack, clock, pulse_secret="s" * 40),
                       fake_slack)
    clock_process = a_runtime(pg_database, fake_slack, clock, pulse_secret="s" * 40)
    listener = clock_process.listen()
    try:
        assert eventually(server.runtime.hands_over)
        now = clock.now()
        with server.runtime.sessions.begin() as session:
            pulse = Pulse(leader_id="ULEAD00001", question="How are you holding up?",
                          scale="five_point", options=["1", "2", "3", "4", "5"],
                          channel_id="C0ICU0001", recurrence="once", open_hours=24, active=True,
                          created_at=now)
            session.add(pulse)
            session.flush()
            run = PulseRun(pulse_id=pulse.id, state="open", opened_at=now,
                           closes_at=now + timedelta(days=1))
            session.add(run)
            session.flush()
            run_id = run.id
        for choice in (2, 4):  # an answer, then a change of mind
            server.slack.block_action("UNURSE0001", f"{Action.PULSE_ANSWER}:{choice}",
                                      str(run_id), channel_id="C0ICU0001")
            server.settle()
        thanks = fake_slack.wait_for_response(count=2)
        assert all("recorded anonymously" in t["text"] for t in thanks)

        def answers() -> list[int]:
            with server.runtime.sessions() as session:
                return list(session.scalars(select(PulseAnswer.choice)))

        assert eventually(lambda: answers() == [4]), "one answer per person, the latest"
        assert [c.state for c in clicks(server.runtime)] == [WorkState.DONE] * 2
    finally:
        listener.stop()
        server.stop()
        server.runtime.engine.dispose()
        clock_process.engine.dispose()


def test_a_click_a_clock_died_applying_is_applied_once_its_lease_runs_out(
        web: AppServer, clock: ManualClock) -> None:
    runtime = web.runtime
    click = accept_handed_to_a_dead_clock(web, clock)
    # A clock claimed it, then was killed before it could apply it.
    _token, taken = runtime.duework(worker_id="killed-clock").claim([click.id])
    assert [item.id for item in taken] == [click.id]
    clock.advance(SWEEP_AFTER.total_seconds())
    assert runtime.sweep_outbox() == 0, "its claimant may still be at work: left to it"
    assert request_row(web).state == RequestState.OPEN
    clock.advance(runtime.settings.duework_lease_seconds + SWEEP_AFTER.total_seconds())
    assert runtime.sweep_outbox() == 1, "its lease ran out: the claimant died"
    assert request_row(web).state == RequestState.ASSIGNED
    assert [c.state for c in clicks(runtime)] == [WorkState.DONE]
    assert runtime.sweep_outbox() == 0


def one_offer_out(web: AppServer) -> None:
    """A request whose one offer, to the first supporter, is out."""
    add_supporters(web, SUPPORTERS[0])
    ask(web)
    posted_offers(web, 1)


def accept(web: AppServer) -> Reply:
    """The first supporter clicks Accept on their offer."""
    return web.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(web, SUPPORTERS[0]))


def test_a_handed_click_is_saved_before_slack_gets_its_answer(
        web: AppServer, listening: Runtime) -> None:
    one_offer_out(web)
    reply = accept(web)
    assert reply.status == 200
    assert len(clicks(web.runtime)) == 1, "in the database by the time Slack has its answer"


def test_a_click_that_cannot_be_saved_is_refused_not_answered_ok(
        web: AppServer, listening: Runtime) -> None:
    one_offer_out(web)

    def database_gone(_connection: object, _cursor: object, statement: str,
                      *_args: object) -> None:
        if "due_work" in statement:
            raise OperationalError("INSERT", {}, ConnectionError("server closed the connection"))

    event.listen(web.runtime.engine, "before_cursor_execute", database_gone)
    try:
        reply = accept(web)
    finally:
        event.remove(web.runtime.engine, "before_cursor_execute", database_gone)
    # Slack shows the supporter the click did not go through, so they can click again.
    assert reply.status == 500
    assert clicks(web.runtime) == [] and request_row(web).state == RequestState.OPEN


def test_a_copy_of_a_handed_click_is_answered_empty_and_recorded_once(
        web: AppServer, listening: Runtime) -> None:
    one_offer_out(web)
    first = accept(web)
    # A proxy replays the same delivery (same trigger_id), signed again.
    copy = web.slack.post_raw(web.slack.sent[-1], "application/x-www-form-urlencoded")
    assert (first.status, copy.status, copy.body) == (200, 200, "")
    assert len(clicks(web.runtime)) == 1, "the copy records nothing"
    assert eventually(lambda: current(web, "state") == RequestState.ASSIGNED)


def test_copies_of_a_handed_click_arriving_together_are_recorded_once(
        web: AppServer, listening: Runtime) -> None:
    one_offer_out(web)
    with mock.patch.object(web.slack, "post_raw", lambda body, _type: body):
        body = accept(web)

    def send(_n: int, go) -> int:  # noqa: ANN001
        go()
        return web.slack.post_raw(body, "application/x-www-form-urlencoded").status

    assert run_together(send, range(6)) == [200] * 6
    assert len(clicks(web.runtime)) == 1, "one copy recorded; the others waited on it and left"
    assert eventually(lambda: current(web, "state") == RequestState.ASSIGNED)
    intros = web.slack.fake.wait_for("chat.postMessage",
                                     lambda c: c.args["channel"].startswith("G"))
    assert len(intros) == 1
