"""Signed requests through the real HTTP stack (Flask adapter, Bolt) against the Slack stand-in."""

from __future__ import annotations

import json
import logging
import time
from urllib.parse import urlencode

import pytest
from sqlalchemy import func, select, text

from bot.infra.logs import configure_logging
from bot.infra.models import DueWork
from tests.conftest import AppServer


def help_text(reply_json: dict) -> str:
    return json.dumps(reply_json["blocks"])


@pytest.mark.parametrize("text", ["help", "HELP", "  help  "])
def test_help_lists_the_subcommands_privately(app_server: AppServer, text: str) -> None:
    reply = app_server.slack.command("UCLIN00001", text)
    assert reply.status == 200
    body = reply.json()
    assert body["response_type"] == "ephemeral"
    assert "`/peersupport help`" in help_text(body)
    assert "I don't know" not in help_text(body)


def test_unknown_subcommand_answers_with_the_list(app_server: AppServer) -> None:
    reply = app_server.slack.command("UCLIN00001", "frobnicate <!channel> now")
    body = reply.json()
    assert reply.status == 200 and body["response_type"] == "ephemeral"
    assert "I don't know the subcommand `frobnicate`" in help_text(body)
    assert "`/peersupport help`" in help_text(body)


def test_unknown_subcommand_is_escaped(app_server: AppServer) -> None:
    body = app_server.slack.command("UCLIN00001", "<!here>").json()
    assert "<!here>" not in help_text(body)
    assert "&lt;!here&gt;" in help_text(body)


def test_ssl_check_is_answered(app_server: AppServer) -> None:
    reply = app_server.slack.post_form({"ssl_check": "1", "token": "legacy"})
    assert reply.status == 200


def test_url_verification_is_answered(app_server: AppServer) -> None:
    reply = app_server.slack.post_json({"type": "url_verification", "challenge": "c-123",
                                        "token": "legacy"})
    assert reply.status == 200 and "c-123" in reply.body


@pytest.mark.parametrize("send", [
    lambda s: s.block_action("UCLIN00001", "no-such-action", "x"),
    lambda s: s.view_submission("UCLIN00001", "no-such-modal", {}),
    lambda s: s.shortcut("UCLIN00001", "no-such-shortcut"),
    lambda s: s.event({"type": "reaction_added", "user": "UCLIN00001", "reaction": "wave"}),
])
def test_unknown_ids_are_acknowledged_and_ignored(app_server: AppServer, send) -> None:  # noqa: ANN001
    reply = send(app_server.slack)
    assert reply.status == 200
    time.sleep(0.2)
    assert app_server.slack.fake.calls == [] or all(
        c.method == "auth.test" for c in app_server.slack.fake.calls)


def count_rows(app_server: AppServer) -> int:
    with app_server.runtime.sessions() as session:
        return session.scalar(select(func.count()).select_from(DueWork)) or 0


def test_wrong_signature_is_refused(app_server: AppServer) -> None:
    body = urlencode({"command": "/peersupport", "text": "help", "user_id": "UCLIN00001"})
    before = len(app_server.slack.fake.calls)
    reply = app_server.slack.post_raw(body, "application/x-www-form-urlencoded", headers={
        "X-Slack-Signature": "v0=" + "0" * 64})
    assert reply.status == 401
    time.sleep(0.1)
    assert len(app_server.slack.fake.calls) == before
    assert count_rows(app_server) == 0


def test_stale_timestamp_is_refused(app_server: AppServer) -> None:
    body = urlencode({"command": "/peersupport", "text": "help", "user_id": "UCLIN00001"})
    stale = app_server.slack.signature_headers(body, timestamp=int(time.time()) - 6 * 60)
    reply = app_server.slack.post_raw(body, "application/x-www-form-urlencoded", headers=stale)
    assert reply.status == 401


def test_unsigned_request_is_refused(app_server: AppServer) -> None:
    reply = app_server.slack.post_raw("command=%2Fpeersupport", "application/x-www-form-urlencoded",
                                      sign=False)
    assert reply.status == 401


@pytest.mark.parametrize(("body", "content_type"), [
    ("payload=not-json", "application/x-www-form-urlencoded"),
    ("payload=%5B1%2C2%5D", "application/x-www-form-urlencoded"),
    ('payload="just a string"', "application/x-www-form-urlencoded"),
    ("{not json", "application/json"),
    ("[1, 2, 3]", "application/json"),
    ('"text"', "application/json"),
    ("", "application/x-www-form-urlencoded"),
    ("\x00\xff garbage", "application/octet-stream"),
    ('{"type": "block_actions"}', "application/json"),
    ("payload=" + json.dumps({"type": "block_actions", "actions": "nope"}),
     "application/x-www-form-urlencoded"),
    ("payload=" + json.dumps({"type": "view_submission", "view": None}),
     "application/x-www-form-urlencoded"),
    ('{"type": "event_callback", "event": "not-an-object"}', "application/json"),
])
def test_malformed_bodies_get_a_client_error_never_a_crash(app_server: AppServer, body: str,
                                                           content_type: str) -> None:
    reply = app_server.slack.post_raw(body, content_type)
    assert reply.status < 500, (reply.status, reply.body)
    assert count_rows(app_server) == 0
    # The server is still healthy afterwards.
    assert app_server.slack.command("UCLIN00001", "help").status == 200


def test_logs_never_contain_what_a_person_typed(app_server: AppServer,
                                                caplog: pytest.LogCaptureFixture) -> None:
    secret = "MARKER-my patient in bed 12 coded"
    configure_logging("DEBUG")  # the worst case: an operator turned on debug logging
    with caplog.at_level(logging.DEBUG):
        app_server.slack.command("UCLIN00001", secret)
        app_server.slack.command("UCLIN00001", f"help {secret}")
        app_server.slack.block_action("UCLIN00001", "no-such-action", secret)
        app_server.slack.view_submission("UCLIN00001", "no-such-modal", {
            "b": {"a": {"type": "plain_text_input", "value": secret}}})
        app_server.slack.post_raw("payload=" + secret, "application/x-www-form-urlencoded")
        time.sleep(0.3)
    logged = "\n".join(record.getMessage() + str(record.exc_info or "") for record in caplog.records)
    assert "MARKER" not in logged


def test_a_retried_event_is_handled_once(app_server: AppServer) -> None:
    event = {"type": "app_home_opened", "user": "UCLIN00001", "tab": "home", "event_ts": "1.2"}
    first = app_server.slack.event(event, event_id="Ev0REPEATED1")
    again = app_server.slack.event(event, event_id="Ev0REPEATED1")
    assert (first.status, again.status) == (200, 200)
    app_server.slack.fake.wait_for("views.publish")
    time.sleep(0.3)
    assert len(app_server.slack.fake.calls_to("views.publish")) == 1


def test_a_replayed_click_changes_nothing(app_server: AppServer) -> None:
    payload = {"type": "block_actions", "team": {"id": "T0PEERSUP"}, "api_app_id": "A1",
               "user": {"id": "UCLIN00001"}, "trigger_id": "9.9.replayed", "token": "t",
               "actions": [{"type": "button", "action_id": "request_support", "block_id": "b",
                            "action_ts": "1.2"}],
               "container": {"type": "view", "view_id": "V1"}}
    assert app_server.slack.post_payload(payload).status == 200
    assert app_server.slack.post_payload(payload).status == 200
    app_server.slack.fake.wait_for("views.open")
    time.sleep(0.3)
    assert len(app_server.slack.fake.calls_to("views.open")) == 1


def click_payload(trigger_id: str) -> dict:
    return {"type": "block_actions", "team": {"id": "T0PEERSUP"}, "api_app_id": "A1",
            "user": {"id": "UCLIN00001"}, "trigger_id": trigger_id, "token": "t",
            "actions": [{"type": "button", "action_id": "request_support", "block_id": "b",
                         "action_ts": "1.2"}],
            "container": {"type": "view", "view_id": "V1"}}


def test_a_click_is_acknowledged_while_the_database_is_busy(app_server: AppServer) -> None:
    """Acknowledging needs no database: the repeat check runs in the work's own transaction,
    after Slack has its answer."""
    engine = app_server.runtime.engine
    with engine.connect() as holder:
        if engine.dialect.name == "postgresql":
            holder.execute(text("LOCK TABLE seen_deliveries IN ACCESS EXCLUSIVE MODE"))
        else:  # SQLite: hold the single write lock
            holder.execute(text("INSERT INTO seen_deliveries (key, seen_at) "
                                "VALUES ('holder', '2026-01-01 00:00:00')"))
        reply = app_server.slack.post_payload(click_payload("9.9.busy"))
        assert reply.status == 200, "acknowledged while the lock was still held"
        assert app_server.slack.fake.calls_to("views.open") == [], "the work waits for the lock"
        holder.rollback()
    app_server.slack.fake.wait_for("views.open")
    assert app_server.slack.post_payload(click_payload("9.9.busy")).status == 200
    app_server.settle()
    assert len(app_server.slack.fake.calls_to("views.open")) == 1, "the repeat was dropped"


def test_a_delivery_whose_work_failed_is_handled_when_slack_retries_it(
        app_server: AppServer) -> None:
    event = {"type": "app_home_opened", "user": "UCLIN00001", "tab": "home", "event_ts": "1.2"}
    app_server.slack.fake.fail("views.publish", "internal_error")
    assert app_server.slack.event(event, event_id="Ev0FAILED01").status == 200
    app_server.settle()
    assert len(app_server.slack.fake.calls_to("views.publish")) == 1, "tried once, and failed"
    assert app_server.slack.event(event, event_id="Ev0FAILED01").status == 200
    app_server.settle()
    assert len(app_server.slack.fake.calls_to("views.publish")) == 2, "the retry was handled"
    assert app_server.slack.event(event, event_id="Ev0FAILED01").status == 200
    app_server.settle()
    assert len(app_server.slack.fake.calls_to("views.publish")) == 2, "a third copy was not"


def test_work_waiting_on_slack_does_not_hold_up_other_requests(app_server: AppServer) -> None:
    """A click whose form is slow to open keeps no lock that another request's work needs
    (SQLite has one writer: the repeat check must not make every request a writer)."""
    fake = app_server.slack.fake
    fake.fail("views.open", delay=3.0)  # Slack answers, but late
    assert app_server.slack.post_payload(click_payload("9.9.slow")).status == 200
    opened = fake.wait_for("views.open")[0]
    event = {"type": "app_home_opened", "user": "UCLIN00002", "tab": "home", "event_ts": "1.3"}
    assert app_server.slack.event(event).status == 200
    published = fake.wait_for("views.publish", timeout=10)[0]
    assert published.at - opened.at < 2.0, "the Home was drawn while the form was still opening"
    app_server.settle()
