"""Prometheus metrics: the names and labels an operator's dashboards rely on, figures that follow
what happened in the app, nothing in any label that could point at a person, the token-guarded
endpoint, and gunicorn's multiprocess mode."""

from __future__ import annotations

import itertools
import json
import os
import re
import socket
import subprocess
import sys
import urllib.error
import urllib.request
from collections.abc import Iterator
from datetime import timedelta
from pathlib import Path

import pytest
from prometheus_client.parser import text_string_to_metric_families
from prometheus_client.samples import Sample
from slack_sdk import WebClient
from sqlalchemy import create_engine, select

from bot.infra import duework, health, metrics, outbox
from bot.infra.db import make_sessions
from bot.infra.duework import DueWorkEngine, JobContext, JobKind, JobRegistry
from bot.infra.messaging import Messenger, SlackUnreachable
from bot.infra.models import (
    ClockHeartbeat,
    DueWork,
    Pulse,
    RequestState,
    SupportRequest,
    WorkState,
)
from bot.infra.settings import Settings, SettingsError
from bot.requests.teams import SIZES
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from handlers.checkins.blocks import METADATA_TYPE
from handlers.common.ids import Action, Block, Callback
from handlers.requests.blocks import WELCOME
from tests.checkins.test_checkins import connect_with_checkins, run_to_first
from tests.conftest import LEADER, START, AppServer, Database, eventually, typed_strings
from tests.requests.test_requests_http import (
    SUPPORTERS,
    add_supporters,
    ask,
    offer_value,
    posted_offers,
    request_row,
    tick,
)

ROOT = Path(__file__).resolve().parents[2]
TOKEN = "t" * 40
# What a label value may look like: names from the code, numbers, Slack's codes. Nothing with a
# space, so no sentence anyone typed; nothing like a Slack user id (checked apart).
SAFE_VALUE = re.compile(r"[A-Za-z0-9_.+]{0,64}")
USER_ID = re.compile(r"[UW][A-Z0-9]{5,}")
# Every label name the app's own metrics use (le: a histogram's buckets).
OUR_LABELS = {"kind", "state", "urgency", "method", "outcome", "type", "error", "le"}
_views = itertools.count(1)


def scrape(server_or_runtime: AppServer | object) -> str:
    runtime = getattr(server_or_runtime, "runtime", server_or_runtime)
    if isinstance(server_or_runtime, AppServer):
        server_or_runtime.settle()
    body, content_type = metrics.render(runtime.sessions, runtime.settings, runtime.clock)
    assert content_type.startswith("text/plain")
    return body.decode()


def samples(text: str) -> list[Sample]:
    return [s for family in text_string_to_metric_families(text) for s in family.samples]


def value(text: str, name: str, **labels: str) -> float:
    """The one sample `name` with exactly these labels (buckets' `le` included); 0 if absent."""
    found = [s.value for s in samples(text) if s.name == name and s.labels == labels]
    assert len(found) <= 1, (name, labels)
    return found[0] if found else 0.0


# -- names and labels ----------------------------------------------------------------------------


EXPECTED = {
    # The program's figures, read from the database.
    "peersupport_requests": ("gauge", {"kind", "state"}),
    "peersupport_request_escalations": ("counter", {"kind"}),
    "peersupport_request_accept_seconds": ("histogram", {"kind", "urgency"}),
    "peersupport_offers": ("gauge", {"state"}),
    "peersupport_checkins": ("gauge", {"state"}),
    "peersupport_checkins_sent": ("counter", set()),
    "peersupport_checkins_answered": ("counter", set()),
    "peersupport_prompt_answers": ("counter", set()),
    "peersupport_due_work_backlog": ("gauge", {"kind"}),
    "peersupport_due_work_lag_seconds": ("gauge", set()),
    "peersupport_due_work_running": ("gauge", {"kind"}),
    "peersupport_due_work_failed": ("gauge", {"kind"}),
    "peersupport_outbox_backlog": ("gauge", {"kind"}),
    "peersupport_outbox_oldest_seconds": ("gauge", set()),
    "peersupport_outbox_refused": ("counter", set()),
    "peersupport_clock_stale_after_seconds": ("gauge", set()),
    "peersupport_clock_heartbeat_age_seconds": ("gauge", set()),
    "peersupport_database_up": ("gauge", set()),
    # What each process counts.
    "peersupport_slack_calls": ("counter", {"method", "outcome"}),
    "peersupport_due_items": ("counter", {"kind", "outcome"}),
    "peersupport_slack_deliveries": ("counter", {"type"}),
    "peersupport_listener_errors": ("counter", {"error"}),
}


def test_every_metric_has_its_documented_name_type_and_labels(app_server: AppServer) -> None:
    add_supporters(app_server, *SUPPORTERS[:2])
    ask(app_server)
    posted_offers(app_server, 2)
    app_server.slack.block_action(SUPPORTERS[0], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[0]))
    eventually(lambda: (r := request_row(app_server)) and r.state == RequestState.ASSIGNED)
    failing_listener(app_server, "metrics_boom")
    app_server.slack.block_action(SUPPORTERS[0], "metrics_boom", "x")
    now = app_server.runtime.clock.now()
    with app_server.runtime.sessions.begin() as session:
        session.add(ClockHeartbeat(id=health.ROW, ticked_at=START, process="host:1",
                                   created_at=START, stops=0))
        for key, state in (("one-running", WorkState.RUNNING), ("one-failed", WorkState.FAILED)):
            session.add(DueWork(kind=outbox.Effect.NOTICE.value, key=key, payload={}, due_at=now,
                                state=state, attempts=1, rescheduled=0, created_at=now))
    found = {family.name: family for family in text_string_to_metric_families(scrape(app_server))}
    for name, (kind, labels) in EXPECTED.items():
        assert name in found, name
        assert found[name].type == kind, name
        assert found[name].samples, f"{name} has no sample"
        for sample in found[name].samples:
            assert set(sample.labels) - {"le"} == labels, (name, sample.labels)
    ours = {name for name in found if name.startswith("peersupport_")}
    assert ours == set(EXPECTED), "a new metric needs its row in docs/operations.md and here"


def test_the_operations_guide_lists_every_metric() -> None:
    guide = (ROOT / "docs" / "operations.md").read_text()
    for name, (kind, _labels) in EXPECTED.items():
        exposed = f"{name}_total" if kind == "counter" else name
        assert f"`{exposed}" in guide, exposed


def test_the_outbox_and_the_clock_rules_agree_with_their_modules(app_server: AppServer) -> None:
    assert metrics.EFFECT_PREFIX == outbox.PREFIX
    settings = app_server.runtime.settings
    text = scrape(app_server)
    assert value(text, "peersupport_clock_stale_after_seconds") == \
        health.limit_for(settings).total_seconds()


# -- nothing identifying -------------------------------------------------------------------------

HOSTILE_DEPARTMENTS = ["Ward Seven East", "Tiny Unit Q", "UJANEDOE01", "Dr Jane Doe's unit",
                       'ICU"} evil{x="1']
PEOPLE = [f"UREQHOST{n:02d}" for n in range(7)]
PROMPT_DEPARTMENT = 'Pharmacy "} evil{x="1 UJANEDOE01'


def department_request(app_server: AppServer, user_id: str, department: str) -> None:
    values = {
        Block.URGENCY: {Action.FIELD: {"type": "radio_buttons",
                                       "selected_option": {"value": "today"}}},
        Block.CONNECTION: {Action.FIELD: {"type": "radio_buttons",
                                          "selected_option": {"value": "slack"}}},
        Block.WHO: {Action.FIELD: {"type": "radio_buttons",
                                   "selected_option": {"value": "anyone"}}},
        Block.DEPARTMENT: {Action.FIELD: {"type": "static_select",
                                          "selected_option": {"value": department}}},
        Block.ROLE_MATCH: {Action.FIELD: {"type": "radio_buttons",
                                          "selected_option": {"value": "any"}}},
        Block.FOLLOWUPS: {Action.FIELD: {"type": "checkboxes",
                                         "selected_options": [{"value": WELCOME}]}},
        Block.SAFETY: {Action.FIELD: {"type": "checkboxes", "selected_options": []}},
    }
    reply = app_server.slack.view_submission(user_id, Callback.REQUEST, values,
                                             view_id=f"VHOST{next(_views):05d}")
    assert reply.status == 200


def team_request(app_server: AppServer, user_id: str, unit: str) -> None:
    values = {
        Block.TEAM_UNIT_TYPED: {Action.FIELD: {"type": "plain_text_input", "value": unit}},
        Block.TEAM_SIZE: {Action.FIELD: {"type": "radio_buttons",
                                         "selected_option": {"value": next(iter(SIZES))}}},
        Block.URGENCY: {Action.FIELD: {"type": "radio_buttons",
                                       "selected_option": {"value": "week"}}},
        Block.TEAM_HELP: {Action.FIELD: {"type": "checkboxes",
                                         "selected_options": [{"value": "visit"}]}},
    }
    reply = app_server.slack.view_submission(user_id, Callback.TEAM_REQUEST, values,
                                             view_id=f"VTEAM{next(_views):05d}")
    assert reply.status == 200


def hostile_prompt(server: AppServer, department: str) -> None:
    server.slack.command(LEADER, "pulse")
    server.slack.fake.wait_for("views.open")

    def field(kind: str, **value: object) -> dict:
        return {Action.FIELD: {"type": kind, **value}}

    values = {
        Block.PRESET: field("static_select", selected_option={"value": "own"}),
        Block.QUESTION: field("plain_text_input", value="How is Jane Doe UJANEDOE01 coping?"),
        Block.SCALE: field("radio_buttons", selected_option={"value": "options"}),
        Block.OPTIONS: field("plain_text_input", value="Jane is fine, Bed 12 coded"),
        Block.CHANNEL: field("conversations_select", selected_conversation="C0ICU0001"),
        Block.PULSE_DEPARTMENT: field("plain_text_input", value=department),
        Block.RECURRENCE: field("radio_buttons", selected_option={"value": "once"}),
        Block.OPEN_FOR: field("radio_buttons", selected_option={"value": "24"}),
    }
    reply = server.slack.view_submission(LEADER, Callback.PULSE, values,
                                         private_metadata="America/New_York")
    assert reply.status == 200


def test_no_label_names_a_person_a_department_or_anything_typed(leader_server: AppServer) -> None:
    server = leader_server
    fake = server.slack.fake
    odd_events = metrics.SLACK_DELIVERIES.labels(type="event.other")._value.get()
    with server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(user, HOSTILE_DEPARTMENTS[n % 5], "nurse")
                                for n, user in enumerate(SUPPORTERS)],
                      now=server.runtime.clock.now(), time_zones={}, default_case_cap=9,
                      default_cooldown_hours=0)
    for n, user in enumerate([*SUPPORTERS, *PEOPLE]):
        fake.add_user(user, name=f"Jane Doe the {n}th")
    # Five requests from one department (the minimum group) and one from a department of one:
    # neither department may be a label, nor anything else typed or chosen.
    for user in PEOPLE[:5]:
        department_request(server, user, "Ward Seven East")
    department_request(server, PEOPLE[5], "Tiny Unit Q")
    team_request(server, PEOPLE[6], "Jane Doe night team")
    hostile_prompt(server, PROMPT_DEPARTMENT)
    # Slack answering with an error code no one has seen, and an event of a type no one sent.
    fake.fail("chat.postMessage", "Jane Doe UJANEDOE01 typed this", times=2)
    server.slack.command(PEOPLE[0], "help me with Jane Doe's bed 12")
    server.slack.event({"type": "Jane Doe typed this", "user": PEOPLE[1], "event_ts": "1.2"},
                       event_id="Ev0HOSTILE1")
    posted_offers(server, 3)
    tick(server, 3 * 86400)

    text = scrape(server)
    with server.runtime.sessions() as session:
        requests = session.scalars(select(SupportRequest)).all()
        prompts = session.scalars(select(Pulse.department)).all()
    assert sum(r.requester_department == "Ward Seven East" for r in requests) == 5
    assert prompts == [PROMPT_DEPARTMENT]
    assert value(text, "peersupport_requests", kind="team", state="open") + value(
        text, "peersupport_requests", kind="team", state="escalated") == 1
    typed = set().union(*(typed_strings(body) for body in server.slack.sent))
    forbidden = {*HOSTILE_DEPARTMENTS, "Pharmacy", "Jane", "Doe", "Bed 12", *typed,
                 *(r.requester_department for r in requests if r.requester_department)}
    for sample in samples(text):
        assert set(sample.labels) <= OUR_LABELS | {"generation", "implementation", "major",
                                                   "minor", "patchlevel", "version"}, sample
        for label_value in sample.labels.values():
            assert SAFE_VALUE.fullmatch(label_value), sample
            assert not USER_ID.search(label_value), sample
            assert not any(word in label_value for word in forbidden), sample
    # The whole exposition, help texts included, names nobody and quotes nothing typed.
    assert not USER_ID.search(text)
    assert not [word for word in forbidden if word in text]
    assert value(text, "peersupport_slack_calls_total", method="chat.postMessage",
                 outcome="other") >= 1, "the odd error code is counted, as 'other'"
    assert value(text, "peersupport_slack_deliveries_total", type="event.other") == odd_events + 1


def failing_listener(app_server: AppServer, action_id: str) -> None:
    """A listener that fails with a message quoting what was typed, as a bug might."""

    @app_server.bolt.action(action_id)
    def boom(ack, body):  # noqa: ANN001, ANN202 - Bolt injects by name
        ack()
        raise LookupError(f"no such thing: {body['actions'][0]['value']}")

    listeners = app_server.bolt._listeners  # ahead of the app's catch-all for unknown clicks
    listeners.insert(0, listeners.pop())


def test_a_listener_error_is_counted_by_its_type_only(app_server: AppServer) -> None:
    failing_listener(app_server, "metrics_boom")
    before = value(scrape(app_server), "peersupport_listener_errors_total", error="LookupError")
    app_server.slack.block_action("UCLIN00001", "metrics_boom", "Jane Doe in bed 12")
    text = scrape(app_server)
    assert value(text, "peersupport_listener_errors_total", error="LookupError") == before + 1
    assert "Jane" not in text


# -- figures that follow what happened ------------------------------------------------------------


def test_a_request_accepted_after_two_minutes_lands_in_the_right_buckets(
        app_server: AppServer) -> None:
    before = scrape(app_server)
    add_supporters(app_server, *SUPPORTERS[:3])
    ask(app_server, urgency="now")
    posted_offers(app_server, 3)
    app_server.runtime.clock.advance(120)
    app_server.slack.block_action(SUPPORTERS[1], Action.ACCEPT_OFFER,
                                  offer_value(app_server, SUPPORTERS[1]))
    eventually(lambda: (r := request_row(app_server)) and r.state == RequestState.ASSIGNED)
    app_server.slack.fake.wait_for("chat.update", lambda c: "already taken" in c.args["text"],
                                   count=2)
    text = scrape(app_server)
    labels = {"kind": "personal", "urgency": "now"}
    assert value(text, "peersupport_requests", kind="personal", state="assigned") == 1
    assert value(text, "peersupport_requests", kind="personal", state="open") == 0
    assert value(text, "peersupport_request_accept_seconds_count", **labels) == 1
    assert value(text, "peersupport_request_accept_seconds_sum", **labels) == pytest.approx(120)
    assert value(text, "peersupport_request_accept_seconds_bucket", le="60.0", **labels) == 0
    assert value(text, "peersupport_request_accept_seconds_bucket", le="300.0", **labels) == 1
    assert value(text, "peersupport_request_accept_seconds_bucket", le="+Inf", **labels) == 1
    assert value(text, "peersupport_offers", state="accepted") == 1
    assert value(text, "peersupport_offers", state="taken") == 2

    def grew(name: str, **labels: str) -> float:
        return value(text, name, **labels) - value(before, name, **labels)

    assert grew("peersupport_slack_deliveries_total", type="view_submission") == 1
    assert grew("peersupport_slack_deliveries_total", type="block_actions") == 1
    assert grew("peersupport_due_items_total", kind="effect.offer.post", outcome="done") == 3
    assert grew("peersupport_slack_calls_total", method="chat.update", outcome="ok") >= 2


def test_escalations_are_counted(app_server: AppServer) -> None:
    ask(app_server)  # nobody on the roster: escalated at once
    eventually(lambda: (r := request_row(app_server)) and r.state == RequestState.ESCALATED)
    text = scrape(app_server)
    assert value(text, "peersupport_request_escalations_total", kind="personal") == 1
    assert value(text, "peersupport_requests", kind="personal", state="escalated") == 1


def test_check_ins_sent_and_answered_are_counted(app_server: AppServer) -> None:
    connect_with_checkins(app_server)
    assert value(scrape(app_server), "peersupport_checkins", state="scheduled") == 4
    checkin = run_to_first(app_server)
    assert value(scrape(app_server), "peersupport_checkins_sent_total") == 1
    app_server.slack.block_action("UCLIN00001", f"{Action.CHECKIN_ANSWER}:better",
                                  str(checkin.id))
    app_server.slack.fake.wait_for_response()
    text = scrape(app_server)
    assert value(text, "peersupport_checkins_sent_total") == 1
    assert value(text, "peersupport_checkins_answered_total") == 1
    assert value(text, "peersupport_checkins", state="answered") == 1
    assert any((c.args.get("metadata") or {}).get("event_type") == METADATA_TYPE
               for c in app_server.slack.fake.calls_to("chat.postMessage"))


class Figures:
    """The database's figures with no app: a runtime stand-in for render()."""

    def __init__(self, database: Database, settings: Settings, clock: object):
        self.sessions = make_sessions(database.engine)  # no delivery on commit: effects wait
        self.settings = settings
        self.clock = clock


def test_due_work_backlog_lag_and_the_outbox(database: Database, runtime: object) -> None:
    clock = runtime.clock
    now = clock.now()
    figures = Figures(database, runtime.settings, clock)
    with figures.sessions.begin() as session:
        duework.schedule(session, "offer_timeout", now - timedelta(seconds=300), now=now,
                         key="late-1")
        duework.schedule(session, "offer_timeout", now + timedelta(hours=1), now=now,
                         key="not-yet")
        outbox.record(session, outbox.Effect.NOTICE.value, {"request_id": 1}, key="notice-1",
                      now=now - timedelta(seconds=600))
        duework.schedule(session, outbox.Effect.STATUS.value, now - timedelta(days=1),
                         now=now - timedelta(days=1), key="refused-1")
        duework.schedule(session, "checkin", now - timedelta(seconds=5), now=now, key="running")
        session.flush()
        rows = {row.key: row for row in session.scalars(select(DueWork))}
        rows["refused-1"].state = WorkState.FAILED
        rows["running"].state = WorkState.RUNNING
        session.add(ClockHeartbeat(id=health.ROW, ticked_at=now - timedelta(seconds=42),
                                   process="host:1", created_at=now - timedelta(days=2), stops=0))
    text = scrape(figures)
    assert value(text, "peersupport_due_work_backlog", kind="offer_timeout") == 1
    assert value(text, "peersupport_due_work_backlog", kind="effect.notice") == 1
    assert value(text, "peersupport_due_work_lag_seconds") == pytest.approx(600)
    assert value(text, "peersupport_due_work_running", kind="checkin") == 1
    assert value(text, "peersupport_due_work_failed", kind="effect.request.status") == 1
    assert value(text, "peersupport_outbox_backlog", kind="effect.notice") == 1
    assert value(text, "peersupport_outbox_backlog", kind="offer_timeout") == 0
    assert value(text, "peersupport_outbox_oldest_seconds") == pytest.approx(600)
    assert value(text, "peersupport_outbox_refused_total") == 1
    assert value(text, "peersupport_clock_heartbeat_age_seconds") == pytest.approx(42)
    assert value(text, "peersupport_database_up") == 1


def test_an_unreadable_database_still_serves_the_process_counts(runtime: object,
                                                                  tmp_path: Path) -> None:
    missing = create_engine(f"sqlite:///{tmp_path / 'no' / 'such' / 'folder.sqlite3'}")
    metrics.count_slack_call("chat.postMessage", "ok")
    body, _type = metrics.render(make_sessions(missing), runtime.settings, runtime.clock)
    text = body.decode()
    assert value(text, "peersupport_database_up") == 0
    assert value(text, "peersupport_slack_calls_total", method="chat.postMessage",
                 outcome="ok") >= 1
    assert "peersupport_requests" not in text


# -- what each process counts -----------------------------------------------------------------


def test_slack_calls_are_counted_by_method_and_error_code(runtime: object,
                                                          fake_slack: object) -> None:
    def count(outcome: str) -> float:
        return metrics.SLACK_CALLS.labels(method="users.info", outcome=outcome)._value.get()

    ok, gone, odd = count("ok"), count("user_not_found"), count("other")
    fake_slack.add_user("UMETRICS01")
    runtime.messenger.user_info("UMETRICS01")
    fake_slack.fail("users.info", "user_not_found")
    with pytest.raises(SlackUnreachable):
        runtime.messenger.user_info("UMETRICS01")
    fake_slack.fail("users.info", "Bed 12 UMETRICS01")
    with pytest.raises(Exception):  # noqa: B017 - any error: only its count matters here
        runtime.messenger.user_info("UMETRICS01")
    assert (count("ok"), count("user_not_found"), count("other")) == (ok + 1, gone + 1, odd + 1)


def test_a_call_that_never_reaches_slack_is_a_transport_error() -> None:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]  # nothing listens there once closed
    messenger = Messenger(WebClient(token="xoxb-test", base_url=f"http://127.0.0.1:{port}/",
                                    timeout=2))
    counter = metrics.SLACK_CALLS.labels(method="auth.test", outcome="transport_error")
    before = counter._value.get()
    with pytest.raises(Exception):  # noqa: B017 - urllib's own error
        messenger.auth_test()
    assert counter._value.get() == before + 1


def test_due_items_are_counted_by_kind_and_outcome(database: Database, runtime: object) -> None:
    registry = JobRegistry()

    def fails(_ctx: JobContext) -> None:
        raise ValueError("Bed 12")

    registry.register(JobKind("metrics_fails", fails))
    registry.register(JobKind("metrics_works", lambda _ctx: None))
    clock = runtime.clock
    engine = DueWorkEngine(make_sessions(database.engine), registry, clock)
    with engine.sessions.begin() as session:
        for kind in ("metrics_fails", "metrics_works", "Jane Doe's kind"):
            duework.schedule(session, kind, clock.now(), now=clock.now())

    def count(kind: str, outcome: str) -> float:
        return metrics.DUE_ITEMS.labels(kind=kind, outcome=outcome)._value.get()

    before = [count("metrics_fails", "retried"), count("metrics_works", "done"),
              count("unknown", "failed")]
    engine.run_until_idle()
    assert [count("metrics_fails", "retried"), count("metrics_works", "done"),
            count("unknown", "failed")] == [n + 1 for n in before]


# -- serving -----------------------------------------------------------------------------------


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def metrics_server(runtime: object) -> Iterator[str]:
    settings = runtime.settings.model_copy(update={"metrics_port": free_port(),
                                                   "metrics_token": TOKEN})
    server = metrics.start_clock_metrics(settings, runtime.sessions, runtime.clock)
    assert server is not None
    try:
        yield f"http://127.0.0.1:{settings.metrics_port}"
    finally:
        server.shutdown()
        server.server_close()


def get(url: str, token: str | None = None) -> tuple[int, str, str]:
    request = urllib.request.Request(url, headers={"Authorization": f"Bearer {token}"}
                                     if token else {})
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return response.status, response.headers["Content-Type"], response.read().decode()
    except urllib.error.HTTPError as error:
        return error.code, error.headers["Content-Type"], error.read().decode()


def test_the_clock_serves_metrics_only_to_a_scraper_with_the_token(metrics_server: str) -> None:
    assert get(f"{metrics_server}/metrics")[0] == 401
    assert get(f"{metrics_server}/metrics", "wrong" * 10)[0] == 401
    assert get(f"{metrics_server}/other", TOKEN)[0] == 404
    status, content_type, body = get(f"{metrics_server}/metrics", TOKEN)
    assert status == 200 and content_type.startswith("text/plain; version=")
    assert "peersupport_database_up 1.0" in body


def test_metrics_are_off_until_a_token_is_set(runtime: object) -> None:
    assert runtime.settings.metrics_token is None
    assert metrics.start_clock_metrics(runtime.settings, runtime.sessions) is None
    status, body, _type = metrics.answer(runtime.settings, f"Bearer {TOKEN}", runtime.sessions)
    assert status == 404 and b"peersupport" not in body
    with pytest.raises(SettingsError, match="PEERSUPPORT_METRICS_TOKEN"):
        Settings.from_mapping({"PEERSUPPORT_METRICS_PORT": "9464"})
    with pytest.raises(SettingsError, match="at least 32 characters"):
        Settings.from_mapping({"PEERSUPPORT_METRICS_TOKEN": "short"})


MULTIPROCESS = """
import json, os, sys
from types import SimpleNamespace
from bot.infra import metrics
from bot.infra.settings import Settings
from sqlalchemy import create_engine
from sqlalchemy.orm import sessionmaker

metrics.count_slack_call("chat.postMessage", "ok")  # before the server starts: not counted
directory = metrics.prepare_multiprocess()          # gunicorn's master, before forking
pids = []
for worker in range(2):
    pid = os.fork()
    if pid == 0:
        metrics.count_slack_call("chat.postMessage", "ok")
        metrics.count_due_item("checkin", "done")
        os._exit(0)
    os.waitpid(pid, 0)
    metrics.gunicorn_child_exit(None, SimpleNamespace(pid=pid))
sessions = sessionmaker(create_engine("sqlite:///" + sys.argv[1]))
body, _type = metrics.render(sessions, Settings.from_mapping({}))
print(json.dumps({"directory": directory, "body": body.decode()}))
"""


@pytest.mark.parametrize("preset", [True, False], ids=["PROMETHEUS_MULTIPROC_DIR", "private"])
def test_gunicorn_workers_counts_add_up(tmp_path: Path, preset: bool) -> None:
    env = {k: v for k, v in os.environ.items() if k != metrics.MULTIPROC_ENV}
    stale = tmp_path / "metrics" / "counter_999.db"
    if preset:
        stale.parent.mkdir()
        stale.write_bytes(b"left by the last run")
        env[metrics.MULTIPROC_ENV] = str(stale.parent)
    done = subprocess.run([sys.executable, "-W", "error", "-c", MULTIPROCESS,
                           str(tmp_path / "db.sqlite3")],
                          env=env, cwd=ROOT, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    result = json.loads(done.stdout.strip().splitlines()[-1])
    text = result["body"]
    assert value(text, "peersupport_slack_calls_total", method="chat.postMessage",
                 outcome="ok") == 2
    assert value(text, "peersupport_due_items_total", kind="checkin", outcome="done") == 2
    assert value(text, "peersupport_database_up") == 0  # an empty file: no tables
    assert (result["directory"] == str(stale.parent)) == preset
    assert not stale.exists()
