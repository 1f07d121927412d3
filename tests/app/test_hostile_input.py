"""Malformed, oversized and hostile requests through the real signed HTTP stack.

Each gets its exact 4xx (401 while the signature is unproven), nothing it carried is stored, and
nothing it carried is logged, even with every logger at DEBUG. Every id and text sent holds the
word MALICE, so one search of the log finds any leak.
"""

from __future__ import annotations

import copy
import json
import logging
import time
from collections.abc import Callable, Iterator
from typing import Any
from urllib.parse import urlencode

import pytest
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import func, inspect, select, table, text
from sqlalchemy.exc import DBAPIError

from bot.app.web import MAX_BODY_BYTES
from bot.infra.envelope import MAX_DEPTH
from bot.infra.logs import QUIET_LOGGERS
from bot.sandbox.driver import Reply, SlackDriver
from handlers.common.ids import Action, Block, Callback
from handlers.common.interaction import MAX_WHOLE_NUMBER, whole_number
from tests.conftest import START, AppServer

FORM = "application/x-www-form-urlencoded"
USER = "UCLIN00001"


# -- what was stored, called and logged ----------------------------------------------------------

def stored(server: AppServer) -> dict[str, int]:
    """Rows in every table the app keeps (the migrations' own bookkeeping aside)."""
    engine = server.runtime.engine
    names = [n for n in inspect(engine).get_table_names() if n != "alembic_version"]
    with engine.connect() as connection:
        return {n: connection.scalar(select(func.count()).select_from(table(n))) for n in names}


def logged(caplog: pytest.LogCaptureFixture) -> str:
    """Every captured record as a log file would show it, tracebacks included."""
    formatter = logging.Formatter("%(name)s %(levelname)s %(message)s")
    return "\n".join(formatter.format(record) for record in caplog.records)


def assert_not_logged(caplog: pytest.LogCaptureFixture, *sent: str) -> None:
    text_logged = logged(caplog)
    assert "malice" not in text_logged.lower(), "something sent reached the log"
    for value in sent:
        assert value not in text_logged


@pytest.fixture
def loud(app_server: AppServer, caplog: pytest.LogCaptureFixture) -> Iterator[AppServer]:
    """The app with every logger at DEBUG, Slack's libraries included: a refused request must
    leave nothing to log even then, because nothing in it was read."""
    levels = {name: logging.getLogger(name).level for name in QUIET_LOGGERS}
    for name in levels:
        logging.getLogger(name).setLevel(logging.DEBUG)
    caplog.set_level(logging.DEBUG)
    try:
        yield app_server
    finally:
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def refused(server: AppServer, caplog: pytest.LogCaptureFixture, status: int,
            send: Callable[[], Reply], *sent: str) -> None:
    """`send` gets `status`, and leaves no row, no Slack call and no log record behind."""
    rows, calls = stored(server), len(server.slack.fake.calls)
    reply = send()
    assert reply.status == status, (reply.status, reply.body)
    time.sleep(0.1)  # a listener wrongly started would have run by now
    server.settle()
    assert stored(server) == rows, "nothing is stored from a refused request"
    assert len(server.slack.fake.calls) == calls, "a refused request makes no Slack call"
    assert_not_logged(caplog, *sent)


# -- requests as Slack builds them, without sending them ----------------------------------------

class Builder(SlackDriver):
    """The sandbox's driver, returning the payload it would send instead of sending it."""

    def post_payload(self, payload: dict[str, Any]) -> Any:
        return payload

    def post_json(self, body: dict[str, Any]) -> Any:
        return body

    def post_form(self, form: dict[str, str]) -> Any:
        return form


def builder(server: AppServer) -> Builder:
    return Builder(server.url, "unused", server.slack.fake)


def choice(value: str) -> dict:
    return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}


def request_form(department: str = "") -> dict:
    """A complete support request's modal values."""
    values = {Block.URGENCY: choice("now"), Block.CONNECTION: choice("slack"),
              Block.WHO: choice("anyone"), Block.ROLE_MATCH: choice("any"),
              Block.FOLLOWUPS: {Action.FIELD: {"type": "checkboxes", "selected_options": []}},
              Block.SAFETY: {Action.FIELD: {"type": "checkboxes", "selected_options": []}}}
    if department:
        values[Block.DEPARTMENT] = {Action.FIELD: {"type": "plain_text_input",
                                                   "value": department}}
    return values


def submission(server: AppServer, drop: tuple[str, ...] = (), **view: Any) -> dict:
    """A support request's modal submitted, with `view` changed and the fields in `drop` gone."""
    payload = builder(server).view_submission(USER, Callback.REQUEST, request_form())
    payload["view"].update(view)
    for name in drop:
        del payload["view"][name]
    return payload


def click(server: AppServer, action_id: str = Action.REQUEST_SUPPORT, value: str = "",
          drop: tuple[str, ...] = (), **changes: Any) -> dict:
    """A button clicked on a message, with `changes` made and the fields in `drop` gone."""
    payload = {**builder(server).block_action(USER, action_id, value), **changes}
    for name in drop:
        del payload[name]
    return payload


def signed(server: AppServer, body: str, timestamp: str) -> dict[str, str]:
    """Headers carrying a correct signature over `body` made with this exact `timestamp` text."""
    secret = server.runtime.settings.slack_signing_secret or ""
    signature = SignatureVerifier(secret).generate_signature(timestamp=timestamp, body=body)
    return {"X-Slack-Request-Timestamp": timestamp, "X-Slack-Signature": signature or ""}


# -- 1. the signature's headers ------------------------------------------------------------------

COMMAND = urlencode({"command": "/peersupport", "text": "help MALICE typed", "user_id": USER,
                     "trigger_id": "1.2.malice"})


@pytest.mark.parametrize("timestamp", ["abc", "", "1700000000.5", "1e9", "+{now}", "9" * 5000])
def test_a_timestamp_that_is_not_a_plain_number_gets_401(loud: AppServer, caplog: pytest.LogCaptureFixture,
                                                          timestamp: str) -> None:
    stamp = timestamp.format(now=int(time.time()))
    headers = signed(loud, COMMAND, stamp)
    refused(loud, caplog, 401, lambda: loud.slack.post_raw(COMMAND, FORM, headers=headers))


@pytest.mark.parametrize("signature", ["v0=" + "é" * 64, "v0=" + "A" * 64, "v1=" + "0" * 64, "v0="])
def test_a_signature_that_is_not_lowercase_hex_gets_401(loud: AppServer, caplog: pytest.LogCaptureFixture,
                                                         signature: str) -> None:
    headers = {"X-Slack-Signature": signature}
    refused(loud, caplog, 401, lambda: loud.slack.post_raw(COMMAND, FORM, headers=headers))


# -- 2. nesting and size -------------------------------------------------------------------------

def nested(depth: int) -> Any:
    """A JSON value `depth` levels deep, built without recursion."""
    value: Any = "MALICE"
    for level in range(depth):
        value = [value] if level % 2 else {"k": value}
    return value


def deep_event(depth: int) -> dict:
    """An event whose extra field makes the whole body exactly `depth` levels deep."""
    return {"type": "event_callback", "event_id": "Ev0DEEP0001", "team_id": "T0PEERSUP",
            "event": {"type": "reaction_added", "user": USER, "extra": nested(depth - 2)}}


def test_a_body_nested_50000_deep_gets_400(loud: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    body = '{"type": "event_callback", "event": ' + "[" * 50_000 + "]" * 50_000 + "}"
    refused(loud, caplog, 400, lambda: loud.slack.post_raw(body, "application/json"))


def test_a_payload_field_nested_50000_deep_gets_400(loud: AppServer,
                                                    caplog: pytest.LogCaptureFixture) -> None:
    payload = '{"type": "block_actions", "actions": ' + "[" * 50_000 + "]" * 50_000 + "}"
    body = urlencode({"payload": payload})
    refused(loud, caplog, 400, lambda: loud.slack.post_raw(body, FORM))


def test_one_level_beyond_the_limit_gets_400(loud: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    body = json.dumps(deep_event(MAX_DEPTH + 1))
    refused(loud, caplog, 400, lambda: loud.slack.post_raw(body, "application/json"))


def test_a_body_at_the_limit_and_brackets_inside_strings_are_accepted(app_server: AppServer) -> None:
    assert app_server.slack.post_json(deep_event(MAX_DEPTH)).status == 200
    event = {"type": "reaction_added", "user": USER, "reaction": "[{" * 5000 + '\\"'}
    assert app_server.slack.event(event).status == 200


def test_a_body_over_the_size_limit_gets_413(loud: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    event = {"type": "reaction_added", "user": USER, "reaction": "MALICE" * (MAX_BODY_BYTES // 6 + 1)}
    body = json.dumps({"type": "event_callback", "event_id": "Ev0BIG00001", "event": event})
    refused(loud, caplog, 413, lambda: loud.slack.post_raw(body, "application/json"))
    refused(loud, caplog, 413, lambda: loud.slack.post_raw(body, "application/json", sign=False))


def test_a_body_just_under_the_size_limit_is_accepted(app_server: AppServer) -> None:
    event = {"type": "reaction_added", "user": USER, "reaction": ""}
    room = MAX_BODY_BYTES - len(json.dumps({"type": "event_callback", "event_id": "Ev01",
                                            "event": event}))
    event["reaction"] = "x" * (room - 300)  # the driver adds a few fields of its own
    assert app_server.slack.event(event).status == 200


# -- 3. fields Bolt reads while routing ----------------------------------------------------------

@pytest.mark.parametrize("change", [
    lambda s: submission(s, drop=("type",)),
    lambda s: submission(s, type="workflow_step"),  # Bolt would then read `workflow_step`
    lambda s: submission(s, drop=("id",)),
    lambda s: submission(s, drop=("state",)),
    lambda s: submission(s, state={"values": {Block.URGENCY: {Action.FIELD: {
        "type": "radio_buttons", "selected_option": {"value": ["MALICE"]}}}}}),
    lambda s: click(s, drop=("response_url",)),
    lambda s: click(s, response_url="MALICE"),
    lambda s: click(s, event="MALICE"),
], ids=["view without a type", "legacy workflow step", "view without an id",
        "view without a state", "option with a list for a value",
        "click on a message without a response_url", "response_url not a web address",
        "event not an object"])
def test_a_payload_bolt_cannot_route_gets_400(loud: AppServer, caplog: pytest.LogCaptureFixture,
                                              change: Callable[[AppServer], dict]) -> None:
    payload = change(loud)
    refused(loud, caplog, 400, lambda: loud.slack.post_payload(payload))


DELETE = object()
# Each field of each request below is in turn removed, or replaced by each of these.
MUTATIONS = [DELETE, None, 7, [], {}, "", "MALICE\x00", "MALICE" * 6, "9" * 30]


def fields(node: Any, path: tuple = ()) -> Iterator[tuple]:
    """The path of every value in `node`."""
    items = node.items() if isinstance(node, dict) else enumerate(node) \
        if isinstance(node, list) else ()
    for key, value in items:
        yield (*path, key)
        yield from fields(value, (*path, key))


def mutated(payload: dict, path: tuple, value: Any) -> dict:
    """A copy of `payload` with the value at `path` replaced by `value`, or removed (DELETE)."""
    payload = copy.deepcopy(payload)
    parent = payload
    for key in path[:-1]:
        parent = parent[key]
    if value is DELETE:
        del parent[path[-1]]
    else:
        parent[path[-1]] = value
    return payload


KINDS: dict[str, Callable[[Builder], dict]] = {
    "command": lambda b: b.command(USER, "help"),
    "click on a message": lambda b: b.block_action(USER, Action.ACCEPT_OFFER, "1"),
    "click in a view": lambda b: b.block_action(USER, Action.REQUEST_SUPPORT,
                                                view={"id": "V0HOME", "type": "home"}),
    "modal submission": lambda b: b.view_submission(USER, Callback.REQUEST, request_form()),
    "modal closed": lambda b: {"type": "view_closed", "user": {"id": USER},
                               "view": {"id": "V1", "type": "modal", "callback_id": "x",
                                        "state": {"values": {}}}},
    "shortcut": lambda b: b.shortcut(USER, Callback.REQUEST_SHORTCUT),
    "options": lambda b: {"type": "block_suggestion", "user": {"id": USER}, "action_id": "a",
                          "block_id": "b", "value": "q"},
    "home opened": lambda b: b.event({"type": "app_home_opened", "user": USER, "tab": "home"}),
    "profile change": lambda b: b.event({"type": "user_change",
                                         "user": {"id": USER, "deleted": False, "tz": "UTC"}}),
}


@pytest.mark.parametrize("kind", KINDS)
def test_every_field_removed_or_replaced_never_fails(app_server: AppServer,
                                                     caplog: pytest.LogCaptureFixture,
                                                     kind: str) -> None:
    """Whatever Bolt or a listener reads, a wrong value there is refused or handled: never a 5xx,
    never an error in a listener, never a leak."""
    build = builder(app_server)
    base = KINDS[kind](build)
    for number, (path, value) in enumerate((p, v) for p in list(fields(base)) for v in MUTATIONS):
        if "command" in base and not (isinstance(value, str) or value is DELETE):
            continue  # a form holds only text
        body = mutated(base, path, value)
        if path[0] not in ("trigger_id", "event_id"):  # a fresh delivery, not a repeat
            body.update({k: f"{number}.2.fresh" if k == "trigger_id" else f"Ev{number:08d}"
                         for k in ("trigger_id", "event_id") if k in body})
            app_server.slack.fake.note_trigger(f"{number}.2.fresh", USER)
        send = app_server.slack.post_form if "command" in base else \
            app_server.slack.post_json if "event" in base else app_server.slack.post_payload
        seen = len(caplog.records)
        reply = send(body)
        app_server.settle()
        errors = [r.getMessage() for r in caplog.records[seen:] if r.levelno >= logging.ERROR]
        assert reply.status < 500 and not errors, (path, value, reply.status, errors[:1])
    assert_not_logged(caplog)


# -- 4. NUL, lone surrogates and ids Slack could not have sent -----------------------------------

LONG_ID = "UMALICE" + "X" * 30  # Slack's alphabet, longer than any id column
LONG_CHOSEN = "malice_" * 40  # longer than the 255 characters Slack allows

BAD_IDS: dict[str, Callable[[AppServer], tuple[str, dict]]] = {
    "user.id too long": lambda s: ("payload", {**submission(s), "user": {"id": LONG_ID}}),
    "user.id lowercase": lambda s: ("payload", {**submission(s), "user": {"id": "umalice1"}}),
    "user.id with a NUL": lambda s: ("payload", {**submission(s), "user": {"id": "UMALICE\x00"}}),
    "user.id empty": lambda s: ("payload", {**submission(s), "user": {"id": ""}}),
    "user.team_id too long": lambda s: ("payload", {**submission(s), "user": {
        "id": USER, "team_id": "T" + LONG_ID}}),
    "team.id with a dash": lambda s: ("payload", {**submission(s), "team": {"id": "T-MALICE"}}),
    "view.id too long": lambda s: ("payload", submission(s, id="V" + LONG_ID)),
    "view.id with a NUL": lambda s: ("payload", submission(s, id="VMALICE\x00")),
    "view.team_id too long": lambda s: ("payload", submission(s, team_id="T" + LONG_ID)),
    "view.callback_id too long": lambda s: ("payload", submission(s, callback_id=LONG_CHOSEN)),
    "trigger_id too long": lambda s: ("payload", {**submission(s),
                                                  "trigger_id": "1.2." + "malice" * 20}),
    "trigger_id with a space": lambda s: ("payload", {**submission(s),
                                                      "trigger_id": "1.2.malice x"}),
    "api_app_id with a NUL": lambda s: ("payload", {**submission(s), "api_app_id": "AMALICE\x00"}),
    "action_id too long": lambda s: ("payload", click(s, LONG_CHOSEN)),
    "action_id with a NUL": lambda s: ("payload", click(s, "malice\x00")),
    "block_id with a control character": lambda s: ("payload", {**click(s), "actions": [{
        **click(s)["actions"][0], "block_id": "malice\x1b[2J"}]}),
    "channel.id too long": lambda s: ("payload", {**click(s), "channel": {"id": "D" + LONG_ID}}),
    "container.channel_id lowercase": lambda s: ("payload", {**click(s), "container": {
        "type": "message", "channel_id": "dmalice1", "message_ts": "1.2"}}),
    "shortcut callback_id with a NUL": lambda s: ("payload", builder(s).shortcut(
        USER, "malice\x00")),
    "a selected user too long": lambda s: ("payload", {**click(s, Action.PICK_SUPPORTER), "actions": [{
        "type": "users_select", "action_id": Action.PICK_SUPPORTER, "block_id": "alert:1",
        "selected_user": LONG_ID}]}),
    "a selected conversation with a NUL": lambda s: ("payload", submission(s, state={"values": {
        Block.CHANNEL: {Action.FIELD: {"type": "conversations_select",
                                       "selected_conversation": "CMALICE\x00"}}}})),
    "a command's user_id too long": lambda s: ("form", {**builder(s).command(USER, "help"),
                                                        "user_id": LONG_ID}),
    "a command's user_id with a NUL": lambda s: ("form", {**builder(s).command(USER, "help"),
                                                          "user_id": "UMALICE\x00"}),
    "a command's team_id with a NUL": lambda s: ("form", {**builder(s).command(USER, "help"),
                                                          "team_id": "TMALICE\x00"}),
    "a command's channel_id too long": lambda s: ("form", {**builder(s).command(USER, "help"),
                                                           "channel_id": "C" + LONG_ID}),
    "a command's trigger_id with a NUL": lambda s: ("form", {**builder(s).command(USER, "help"),
                                                             "trigger_id": "1.2.malice\x00"}),
    "an event_id too long": lambda s: ("json", builder(s).event(
        {"type": "app_home_opened", "user": USER}, event_id="EvMALICE" + "X" * 40)),
    "an event_id with a NUL": lambda s: ("json", builder(s).event(
        {"type": "app_home_opened", "user": USER}, event_id="EvMALICE\x00")),
    "an event's user too long": lambda s: ("json", builder(s).event(
        {"type": "app_home_opened", "user": LONG_ID})),
    "a profile change's user id with a NUL": lambda s: ("json", builder(s).event(
        {"type": "user_change", "user": {"id": "UMALICE\x00", "tz": "UTC"}})),
    "typed text with a NUL": lambda s: ("payload", submission(s, state={"values": request_form(
        "ICU MALICE\x00 ward")})),
    "typed text with a lone surrogate": lambda s: ("payload", submission(s, state={
        "values": request_form("ICU MALICE \ud800 ward")})),
    "a command's text with a NUL": lambda s: ("form", builder(s).command(USER, "help MALICE\x00")),
    "a key with a NUL": lambda s: ("payload", submission(s, state={"values": {
        "MALICE\x00": {"a": {"type": "plain_text_input", "value": "x"}}}})),
}


@pytest.mark.parametrize("name", BAD_IDS)
def test_nul_lone_surrogates_and_ids_slack_could_not_send_get_400(
        loud: AppServer, caplog: pytest.LogCaptureFixture, name: str) -> None:
    kind, body = BAD_IDS[name](loud)
    sent = [v for v in _strings(body) if "malice" in v.lower()]
    if kind == "form":
        raw = urlencode(body)
    else:
        raw = json.dumps(body) if kind == "json" else urlencode({"payload": json.dumps(body)})
    content_type = "application/json" if kind == "json" else FORM
    refused(loud, caplog, 400, lambda: loud.slack.post_raw(raw, content_type), *sent)


def _strings(node: Any) -> Iterator[str]:
    if isinstance(node, dict):
        for key, value in node.items():
            yield key
            yield from _strings(value)
    elif isinstance(node, list):
        for value in node:
            yield from _strings(value)
    elif isinstance(node, str):
        yield node


def test_a_database_error_never_shows_its_parameters(app_server: AppServer,
                                                     caplog: pytest.LogCaptureFixture) -> None:
    """The engine hides statement parameters: an error raised by the database (a value too long
    for its column on PostgreSQL, a repeated key on SQLite, which does not check lengths) and
    its traceback name no value that was sent."""
    engine = app_server.runtime.engine
    key = "MALICE-typed-" + "x" * 200
    insert = text("INSERT INTO seen_deliveries (key, seen_at) VALUES (:key, :at)")
    with pytest.raises(DBAPIError) as raised:
        for _ in range(2):
            with engine.begin() as connection:
                connection.execute(insert, {"key": key, "at": START})
    logging.getLogger("peersupport.test").error("database error", exc_info=raised.value)
    assert_not_logged(caplog, key)
    assert "[SQL parameters hidden due to hide_parameters=True]" in str(raised.value)


# -- 5. numbers in button values -----------------------------------------------------------------

@pytest.mark.parametrize(("value", "number"), [
    ("0", 0), ("7", 7), ("007", 7), (str(MAX_WHOLE_NUMBER), MAX_WHOLE_NUMBER),
    (str(MAX_WHOLE_NUMBER + 1), None), ("9" * 30, None), ("9" * 5000, None), ("-1", None),
    ("+5", None), (" 12 ", None), ("1_000", None), ("١٢", None), ("²", None), ("1.0", None),
    ("", None), (None, None), (12, None), ([1], None),
])
def test_whole_number_reads_plain_digits_within_postgresql_integer(value: Any,
                                                                   number: int | None) -> None:
    assert whole_number(value) == number


BUTTONS = [Action.ACCEPT_OFFER, Action.DECLINE_OFFER, Action.CANCEL_REQUEST, Action.HAND_BACK,
           Action.OPEN_CLOSE, Action.TAKE_REQUEST, Action.CHECKIN_SNOOZE, Action.CHECKIN_CANCEL,
           Action.TALK_AGAIN, Action.PULSE_STOP, f"{Action.PULSE_ANSWER}:1",
           f"{Action.CHECKIN_ANSWER}:good"]


@pytest.mark.parametrize("value", ["9" * 30, str(MAX_WHOLE_NUMBER + 1), "1_000", " 12 ", "+5"])
def test_a_button_value_beyond_an_integer_finds_nothing(app_server: AppServer,
                                                        caplog: pytest.LogCaptureFixture,
                                                        value: str) -> None:
    rows = stored(app_server)
    for action_id in [*BUTTONS, f"{Action.PULSE_ANSWER}:{'9' * 30}"]:
        assert app_server.slack.block_action(USER, action_id, value).status == 200
    app_server.settle()
    errors = [r.getMessage() for r in caplog.records if r.levelno >= logging.ERROR]
    assert errors == [], errors[:1]
    changed = {name for name, count in stored(app_server).items() if rows[name] != count}
    assert changed <= {"seen_deliveries"}, "only the deliveries were recorded"
    assert_not_logged(caplog, "9" * 30)


# -- 6. the error handler ------------------------------------------------------------------------

def test_an_error_quoting_what_was_typed_is_logged_without_it(app_server: AppServer,
                                                              caplog: pytest.LogCaptureFixture
                                                              ) -> None:
    typed = "MALICE my patient in bed 12"

    @app_server.bolt.use
    def read_as_number(body: dict, next: Callable[[], None]) -> None:  # noqa: A002 - Bolt's name
        if body.get("view", {}).get("callback_id") == "malice_number":
            int(body["view"]["state"]["values"]["b"]["a"]["value"])  # raises, quoting `typed`
        next()

    reply = app_server.slack.view_submission(USER, "malice_number", {
        "b": {"a": {"type": "plain_text_input", "value": typed}}})
    assert reply.status == 400
    assert "unhandled ValueError" in logged(caplog)
    assert "read_as_number" in logged(caplog), "where it happened is still logged"
    assert_not_logged(caplog, typed)
