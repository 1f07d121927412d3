"""Each way Slack can fail has a defined behaviour, and none of them loses a request."""

from __future__ import annotations

import logging
from datetime import timedelta

import pytest
from sqlalchemy import select

from bot.infra.models import CheckIn, CheckInState, DueWork, RequestState, WorkState
from handlers.checkins.blocks import METADATA_TYPE
from tests.checkins.test_checkins import checkin_posts, connect_with_checkins, first_checkin, run_to_first
from tests.conftest import AppServer, eventually
from tests.requests.test_requests_http import (
    SUPPORTERS,
    add_supporters,
    ask,
    assert_never_dropped,
    current,
    posted_offers,
    tick,
)


def test_server_errors_leave_the_request_visible_and_moving(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:4])
    app_server.slack.fake.fail("chat.postMessage", status=500, times=2)  # the SDK retries once
    ask(app_server)
    eventually(lambda: current(app_server, "wave") == 1)
    app_server.settle()  # the form's listener has delivered what it could of the first wave
    assert_never_dropped(app_server)
    tick(app_server, 600)  # the undelivered wave times out: the next one goes out
    posted_offers(app_server, 1)
    assert current(app_server, "wave") == 2
    assert_never_dropped(app_server)


def test_a_timed_out_post_is_found_again_not_repeated(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    runtime = app_server.runtime
    runtime.messenger.client.timeout = 1  # seconds: every Slack call of the app times out
    app_server.slack.fake.fail("chat.postMessage", delay=1.5)  # Slack posts, answers too late
    assert run_to_first(app_server).state == CheckInState.SENDING
    tick(app_server, 60)
    assert first_checkin(app_server).state == CheckInState.SENT
    assert len(checkin_posts(app_server)) == 1
    in_dm = app_server.slack.fake.messages[first_checkin(app_server).channel]
    assert sum(1 for m in in_dm if (m.get("metadata") or {}).get("event_type") == METADATA_TYPE
               ) == 1, "one check-in in the person's DM"


@pytest.mark.parametrize("error", ["missing_scope", "account_inactive", "invalid_auth"])
def test_problems_with_the_app_itself_are_logged_and_retried(
        app_server: AppServer, caplog: pytest.LogCaptureFixture, error: str) -> None:
    connect_with_checkins(app_server)
    app_server.slack.fake.fail("chat.postMessage", error)
    with caplog.at_level(logging.ERROR):
        run_to_first(app_server)
    assert any("Slack refused the app" in r.getMessage() for r in caplog.records)
    if error == "missing_scope":
        assert any("needs chat:write" in r.getMessage() for r in caplog.records)
    with app_server.runtime.sessions() as session:
        timers = session.scalars(select(DueWork).where(DueWork.state == WorkState.PENDING,
                                                       DueWork.last_error.like("slack:%"))).all()
        assert timers, "retried later, not dropped"
        states = {c.state for c in session.scalars(select(CheckIn))}
    assert CheckInState.CANCELLED not in states, "not mistaken for the person leaving Slack"
    tick(app_server, 300)
    assert first_checkin(app_server).state == CheckInState.SENT


def test_an_expired_trigger_asks_the_person_to_try_again(app_server: AppServer) -> None:
    app_server.slack.fake.fail("views.open", "expired_trigger_id")
    app_server.slack.command("UCLIN00001", "")
    dm = app_server.slack.fake.wait_for("chat.postMessage")[0]
    assert "took too long" in dm.args["text"]


def test_a_deleted_channel_is_reported_to_the_leader(leader_server: AppServer) -> None:
    from tests.pulses.test_pulses import note_when_posting_fails

    note = note_when_posting_fails(leader_server, "C0GONE0001", "channel_not_found",
                                   "no longer exists")
    assert "<#C0GONE0001>" in note


def test_an_unreachable_coordinator_does_not_stop_escalation(app_server: AppServer) -> None:
    app_server.slack.fake.add_user("UCOORD0001", deleted=True)
    ask(app_server)
    assert eventually(lambda: current(app_server, "state") == RequestState.ESCALATED)
    assert_never_dropped(app_server)
    app_server.runtime.clock.advance(timedelta(seconds=900))
    app_server.runtime.duework().run_until_idle()
    assert_never_dropped(app_server)
