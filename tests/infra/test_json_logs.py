"""LOG_FORMAT=json: one JSON object per line, each line of a Slack delivery or a due item tagged
with its correlation id in whichever thread it ran, and no typed text or exception message in
any line (the suite's log check, tests/conftest.py, covers both formats on every e2e test)."""

from __future__ import annotations

import io
import json
import logging
import re
import subprocess
import sys
from datetime import datetime
from pathlib import Path

import pytest
from sqlalchemy import select

from bot.app.slack_app import correlation_id
from bot.infra import duework
from bot.infra.duework import JobContext, JobKind
from bot.infra.logs import (
    CORRELATION,
    JsonFormatter,
    TextFormatter,
    correlated,
    gunicorn_logger,
    log_handler,
)
from bot.infra.models import DueWork
from bot.infra.settings import Settings, SettingsError
from tests.conftest import AppServer
from tests.requests.test_requests_http import SUPPORTERS, add_supporters, ask

ROOT = Path(__file__).resolve().parents[2]
FIELDS = {"time", "level", "logger", "message", "correlation_id"}
SECRET = "MARKER-json my patient in bed 12 coded"


def record(message: str, *args: object, error: BaseException | None = None) -> logging.LogRecord:
    made = logging.getLogger("peersupport.test").makeRecord(
        "peersupport.test", logging.WARNING, __file__, 1, message, args,
        (type(error), error, error.__traceback__) if error is not None else None)
    return made


def raised() -> BaseException:
    try:
        try:
            int(SECRET)
        except ValueError as inner:
            raise RuntimeError(f"could not read {SECRET}") from inner
    except RuntimeError as error:
        return error
    raise AssertionError("unreachable")


def test_a_record_is_one_json_object_on_one_line() -> None:
    with correlated("Ev0TEST0001"):
        made = record("posted %s\nthen\u2028%s", "C1", "C2")
    line = JsonFormatter().format(made)
    assert "\n" not in line and "\u2028" not in line
    entry = json.loads(line)
    assert set(entry) == FIELDS
    assert entry["message"] == "posted C1\nthen\u2028C2"
    assert (entry["level"], entry["logger"]) == ("WARNING", "peersupport.test")
    assert entry["correlation_id"] == "Ev0TEST0001"
    assert datetime.fromisoformat(entry["time"]).utcoffset().total_seconds() == 0
    assert json.loads(JsonFormatter().format(record("no work")))["correlation_id"] is None


def test_an_exception_shows_its_type_and_frames_never_its_message() -> None:
    error = raised()
    entry = json.loads(JsonFormatter().format(record("it failed", error=error)))
    assert entry["exc_type"] == "RuntimeError"
    assert "ValueError, raised at" in entry["stack"] and "RuntimeError, raised at" in entry["stack"]
    assert "test_json_logs.py" in entry["stack"]
    text = TextFormatter().format(record("it failed", error=error))
    for shown in (json.dumps(entry), text):
        assert "MARKER" not in shown
    # Another handler having formatted the record first (with messages) changes nothing.
    made = record("it failed", error=error)
    logging.Formatter().format(made)
    assert "MARKER" in (made.exc_text or "")
    assert "MARKER" not in JsonFormatter().format(made) + TextFormatter().format(made)


def test_the_text_format_shows_the_correlation_id() -> None:
    with correlated("due-7"):
        assert TextFormatter().format(record("ran")).endswith(
            "WARNING peersupport.test [due-7]: ran")
    assert TextFormatter().format(record("ran")).endswith("WARNING peersupport.test: ran")


def test_nested_work_joins_the_ids_and_restores_them() -> None:
    with correlated("sl-0123456789ab"):
        with correlated("due-4") as inner:
            assert inner == CORRELATION.get() == "sl-0123456789ab/due-4"
        assert CORRELATION.get() == "sl-0123456789ab"
    assert CORRELATION.get() is None


def test_log_format_is_text_or_json() -> None:
    assert Settings.from_mapping({}).log_format == "text"
    assert Settings.from_mapping({"LOG_FORMAT": " JSON "}).log_format == "json"
    with pytest.raises(SettingsError, match="LOG_FORMAT must be one of text, json"):
        Settings.from_mapping({"LOG_FORMAT": "xml"})


def test_a_process_configured_for_json_writes_json_to_stderr() -> None:
    program = ("import logging; from bot.infra.logs import configure_logging\n"
               "configure_logging('INFO', 'json')\n"
               "logging.getLogger('bot.x').info('started %d', 1)\n"
               "logging.getLogger('slack_sdk').info('a request body')\n"
               "configure_logging('INFO', 'text')\n"
               "logging.getLogger('bot.x').info('again')\n")
    done = subprocess.run([sys.executable, "-c", program], cwd=ROOT, capture_output=True,
                          text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    lines = done.stderr.splitlines()
    assert len(lines) == 2, lines  # Slack's libraries stay at WARNING; one handler, reformatted
    assert json.loads(lines[0])["message"] == "started 1"
    assert lines[1].endswith("INFO bot.x: again")


def test_gunicorn_s_own_lines_follow_the_format_too() -> None:
    from gunicorn.config import Config

    logger = gunicorn_logger("json")(Config())
    stream = io.StringIO()
    for handler in logger.error_log.handlers:
        handler.setStream(stream)
    logger.info("Booting worker with pid: %s", 12)
    assert json.loads(stream.getvalue())["message"] == "Booting worker with pid: 12"


# -- through the real app ------------------------------------------------------------------------


def test_every_line_of_a_delivery_and_of_a_due_item_carries_its_id(
        app_server: AppServer) -> None:
    stream = io.StringIO()
    handler = log_handler("json", stream)
    root = logging.getLogger()
    root.addHandler(handler)
    fake = app_server.slack.fake
    try:
        # A form whose messages fail at first: delivered at once, after the acknowledgement,
        # on the listener's thread, each under the form's id and its own due item's.
        add_supporters(app_server, *SUPPORTERS[:2])
        fake.fail("chat.postMessage", "fatal_error", times=3)
        ask(app_server)
        app_server.settle()
        # An event whose listener fails, then Slack's retry of it.
        fake.fail("views.publish", "fatal_error")
        event = {"type": "app_home_opened", "user": "UCLIN00001", "tab": "home", "event_ts": "1.2"}
        app_server.slack.event(event, event_id="Ev0JSONLOG1")
        app_server.settle()
        app_server.slack.event(event, event_id="Ev0JSONLOG1")
        app_server.settle()
        # A click delivered twice.
        click = {"type": "block_actions", "team": {"id": "T0PEERSUP"}, "api_app_id": "A1",
                 "user": {"id": "UCLIN00001"}, "trigger_id": "9.9.jsonlogs", "token": "t",
                 "actions": [{"type": "button", "action_id": "request_support",
                              "block_id": "b", "action_ts": "1.2"}],
                 "container": {"type": "view", "view_id": "V1"}}
        app_server.slack.post_payload(click)
        app_server.slack.post_payload(click)
        app_server.settle()
        # Typed text, which reaches no line.
        app_server.slack.command("UCLIN00001", SECRET)
        app_server.slack.command("UCLIN00001", f"help {SECRET}")
        app_server.settle()
        # A due item the clock runs, failing with a message that quotes data.
        runtime = app_server.runtime

        def probe(_ctx: JobContext) -> None:
            raise ValueError("bad value " + "-".join(("PROBE", "DATA")))  # as if quoting a row

        runtime.jobs.register(JobKind("json_probe", probe))
        with runtime.sessions.begin() as session:
            duework.schedule(session, "json_probe", runtime.clock.now(), now=runtime.clock.now(),
                             key="json-probe")
        runtime.duework().run_until_idle()
        app_server.settle()
    finally:
        root.removeHandler(handler)
    raw = stream.getvalue()
    assert "MARKER" not in raw and "PROBE-DATA" not in raw  # (frames show code, not values)
    lines = [json.loads(line) for line in raw.splitlines()]
    assert lines and all(set(line) >= FIELDS for line in lines)
    with runtime.sessions() as session:
        items = {row.id: row.kind for row in session.scalars(select(DueWork))}

    def about(text: str) -> list[dict]:
        return [line for line in lines if text in line["message"]]

    # The form: its failing posts ran as due items inside the form's delivery.
    failed_posts = about("slack chat.postMessage failed: fatal_error")
    assert failed_posts
    for line in failed_posts:
        match = re.fullmatch(r"sl-[0-9a-f]{12}/due-(?:batch-)?(\d+)", line["correlation_id"] or "")
        assert match, line
        assert items[int(match.group(1))].startswith("effect.")
    # The event: its failing listener's lines carry Slack's event id (its retry is handled
    # again, since the first attempt failed).
    assert [line["correlation_id"] for line in about("slack views.publish failed")] == \
        ["Ev0JSONLOG1"]
    assert [line["correlation_id"] for line in about("unhandled SlackApiError")] == \
        ["Ev0JSONLOG1"]
    # The repeated click is dropped under the first one's id.
    dropped = {line["correlation_id"] for line in about("dropped a repeated Slack delivery")}
    assert dropped == {correlation_id(click)}
    # The clock's item: its own id, the error's type and frames, never its message.
    probe_id = next(i for i, kind in items.items() if kind == "json_probe")
    failure = about(f"due work {probe_id} (json_probe) attempt 1 failed")
    assert len(failure) == 1
    assert failure[0]["correlation_id"] == f"due-{probe_id}"
    assert failure[0]["exc_type"] == "ValueError" and "probe" in failure[0]["stack"]
    # Every Slack call happens for a delivery or a due item, so every line about one says which.
    assert all(line["correlation_id"] for line in lines if line["logger"] == "bot.infra.messaging")
