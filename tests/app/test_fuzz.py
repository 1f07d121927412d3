"""Fuzzing through the signed HTTP path: odd, broken and hostile Slack payloads must never get a
5xx, raise in a listener, or leave anything behind.

CI runs a bounded number of examples; a longer run is
`PEERSUPPORT_FUZZ_EXAMPLES=5000 ./test tests/app/test_fuzz.py`.
"""

from __future__ import annotations

import json
import logging
import os

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from sqlalchemy import func, select

from bot.infra.models import Offer, PulseAnswer, Supporter, SupportRequest
from handlers.common.ids import Action, Callback
from tests.conftest import AppServer

EXAMPLES = int(os.environ.get("PEERSUPPORT_FUZZ_EXAMPLES", "40"))
# Short runs (CI) are repeatable; long runs explore new ground each time.
FUZZ = settings(max_examples=EXAMPLES, deadline=None, derandomize=EXAMPLES <= 100,
                suppress_health_check=[HealthCheck.function_scoped_fixture,
                                       HealthCheck.too_slow, HealthCheck.data_too_large])

junk_text = st.one_of(st.text(max_size=50), st.text(min_size=3000, max_size=6000),
                      st.sampled_from(["\u202e\u0000", "<!channel>", "' OR 1=1 --", "🙂" * 40,
                                       "%s%s%n", "${jndi:ldap://x}", "\ud7ff\ufffd"]))
user_ids = st.one_of(st.sampled_from(["UCLIN00001", "UCOORD0001", "USUPP00001"]),
                     st.text(max_size=20))
json_values = st.recursive(
    st.one_of(st.none(), st.booleans(), st.integers(), st.floats(allow_nan=False), junk_text),
    lambda inner: st.one_of(st.lists(inner, max_size=4),
                            st.dictionaries(st.text(max_size=10), inner, max_size=4)),
    max_leaves=12)
known_actions = [a.value for a in Action] + [f"{Action.PULSE_ANSWER}:1",
                                             f"{Action.CHECKIN_ANSWER}:stop", "library:next"]
known_callbacks = [c.value for c in Callback]


def counts(server: AppServer) -> tuple[int, ...]:
    with server.runtime.sessions() as session:
        return tuple(session.scalar(select(func.count()).select_from(model)) or 0
                     for model in (SupportRequest, Offer, Supporter, PulseAnswer))


@pytest.fixture
def watched(app_server: AppServer, caplog: pytest.LogCaptureFixture) -> AppServer:
    caplog.set_level(logging.ERROR)
    return app_server


def assert_quiet(server: AppServer, caplog: pytest.LogCaptureFixture, before: tuple) -> None:
    failures = [r.getMessage() for r in caplog.records if "unhandled" in r.getMessage()]
    assert failures == [], failures
    assert counts(server) == before, "nothing is stored from an invalid request"


@FUZZ
@given(text=junk_text, user=user_ids, command=st.sampled_from(["/peersupport", "/other", ""]))
def test_fuzzed_slash_commands(watched: AppServer, caplog: pytest.LogCaptureFixture, text: str,
                               user: str, command: str) -> None:
    before = counts(watched)
    form = {"command": command, "text": text, "user_id": user, "channel_id": "C0GENERAL1",
            "team_id": "T0PEERSUP", "trigger_id": "1.2.3",
            "response_url": watched.slack.fake.response_url()}
    reply = watched.slack.post_form(form)
    assert reply.status < 500
    assert_quiet(watched, caplog, before)


@FUZZ
@given(action_id=st.one_of(st.sampled_from(known_actions), junk_text), value=json_values,
       user=user_ids, extra=st.dictionaries(st.sampled_from(
           ["view", "message", "container", "channel", "state"]), json_values, max_size=3))
def test_fuzzed_button_clicks(watched: AppServer, caplog: pytest.LogCaptureFixture,
                              action_id: str, value: object, user: str, extra: dict) -> None:
    before = counts(watched)
    payload = {"type": "block_actions", "team": {"id": "T0PEERSUP"}, "api_app_id": "A1",
               "user": {"id": user}, "trigger_id": f"fuzz.{abs(hash((action_id, user)))}",
               "token": "t", "response_url": watched.slack.fake.response_url(),
               "actions": [{"type": "button", "action_id": action_id, "block_id": "b",
                            "value": value if isinstance(value, str) else json.dumps(value),
                            "action_ts": "1.2"}], **extra}
    assert watched.slack.post_payload(payload).status < 500
    assert_quiet(watched, caplog, before)


@FUZZ
@given(callback=st.one_of(st.sampled_from(known_callbacks), junk_text), values=json_values,
       metadata=junk_text, user=user_ids)
def test_fuzzed_modal_submissions(watched: AppServer, caplog: pytest.LogCaptureFixture,
                                  callback: str, values: object, metadata: str, user: str
                                  ) -> None:
    before = counts(watched)
    state = values if isinstance(values, dict) else {"b": {"a": values}}
    reply = watched.slack.view_submission(user, callback, state, private_metadata=metadata,
                                          view_id=f"VFUZZ{abs(hash((callback, user)))}")
    assert reply.status < 500
    assert_quiet(watched, caplog, before)


@FUZZ
@given(event=st.dictionaries(st.sampled_from(["type", "user", "tab", "channel", "text"]),
                             json_values, max_size=5),
       event_type=st.one_of(st.sampled_from(["app_home_opened", "user_change", "message",
                                                      "team_join"]),
                            junk_text))
def test_fuzzed_events(watched: AppServer, caplog: pytest.LogCaptureFixture, event: dict,
                       event_type: str) -> None:
    before = counts(watched)
    event = {**event, "type": event_type}
    assert watched.slack.event(event).status < 500
    assert_quiet(watched, caplog, before)


@FUZZ
@given(body=st.one_of(st.binary(max_size=500).map(lambda b: b.decode("latin-1")), junk_text),
       content_type=st.sampled_from(["application/json", "application/x-www-form-urlencoded",
                                     "text/plain", "multipart/form-data"]))
def test_fuzzed_raw_bodies(watched: AppServer, caplog: pytest.LogCaptureFixture, body: str,
                           content_type: str) -> None:
    before = counts(watched)
    assert watched.slack.post_raw(body, content_type).status < 500
    assert_quiet(watched, caplog, before)
