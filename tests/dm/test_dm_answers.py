"""The bot answers its DMs: through signed message.im events, on the loopback Slack stand-in.

Every DM gets one short answer with the request button; simple words do what the slash
command's words do; words of suicide or self-harm lead with the crisis lines and a button that
asks for someone only when pressed; and nothing anyone writes reaches the log or the database.
"""

from __future__ import annotations

import itertools
import json
import logging
import time

import pytest
from sqlalchemy import inspect, select, table, text

from bot.checkins import service as checkins
from bot.dm.words import Intent, classify, speaks_of_crisis
from bot.infra.models import Supporter, SupporterStatus, SupportRequest
from bot.requests import service as domain
from bot.requests.service import RequestForm
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from handlers.common.blockkit import escape
from handlers.common.ids import Action, Block
from tests.blockkit import assert_within_limits
from tests.conftest import AppServer, eventually

PERSON = "UCLIN00001"
SUPPORTER = "USUPP00001"
CHANNEL = "D0DMCLIN01"
SUPPORTER_CHANNEL = "D0DMSUPP01"
BOT = "UBOTPEER1"
_ts = itertools.count(1)


# -- reading the words (pure) --------------------------------------------------------------------

@pytest.mark.parametrize("said", [
    "I have been thinking about suicide", "feeling SUICIDAL tonight", "I want to kill myself",
    "i might end my life", "thinking of self-harm again", "self harm", "I could hurt myself",
    "I just want to die", "I'm not safe", "I don\u2019t feel safe right now",
    "better off dead", "I don't want to live like this", "thinking of ending it all",
])
def test_words_of_suicide_or_self_harm_are_a_crisis(said: str) -> None:
    assert speaks_of_crisis(said)
    assert classify(said).intent == Intent.CRISIS


@pytest.mark.parametrize("said", [
    "I need to talk to someone", "safety huddle went fine", "the unsafe staffing again",
    "resources sleep", "it was a killer shift", "diehard fan", "selfish of me",
])
def test_other_words_are_not_a_crisis(said: str) -> None:
    assert not speaks_of_crisis(said)


@pytest.mark.parametrize(("said", "intent", "rest"), [
    ("help", Intent.HELP, ""), ("Help!", Intent.HELP, ""), ("resources", Intent.RESOURCES, ""),
    ("resources  Sleep  hygiene", Intent.RESOURCES, "sleep hygiene"),
    ("checkins", Intent.CHECKINS, ""), ("check-ins", Intent.CHECKINS, ""),
    ("available", Intent.AVAILABLE, ""), ("away", Intent.AWAY, ""),
    ("away until friday 6pm", Intent.AWAY, "until friday 6pm"), ("team", Intent.TEAM, ""),
    ("/peersupport resources burnout", Intent.RESOURCES, "burnout"),
    ("help me, I can't cope", Intent.OTHER, ""), ("I need to talk to someone", Intent.OTHER, ""),
    ("", Intent.OTHER, ""), ("resources about suicide loss", Intent.CRISIS, ""),
])
def test_simple_words_map_to_the_slash_commands_words(said: str, intent: Intent, rest: str
                                                      ) -> None:
    reading = classify(said)
    assert (reading.intent, reading.rest) == (intent, rest)


# -- through signed events -----------------------------------------------------------------------

def dm(app_server: AppServer, said: str, *, user: str = PERSON, channel: str = CHANNEL,
       event_id: str | None = None, **fields: object) -> None:
    ts = f"1700000{next(_ts):03d}.000100"
    event = {"type": "message", "channel_type": "im", "channel": channel, "user": user,
             "text": said, "ts": ts, "event_ts": ts, **fields}
    reply = app_server.slack.event(event, event_id=event_id)
    assert reply.status == 200


def answers(app_server: AppServer, channel: str = CHANNEL, count: int = 1) -> list[dict]:
    """The app's posts to one DM channel, once `count` have arrived, as (text, blocks)."""
    calls = app_server.slack.fake.wait_for(
        "chat.postMessage", lambda c: c.args.get("channel") == channel, count=count)
    found = []
    for call in calls:
        blocks = call.args.get("blocks")
        blocks = json.loads(blocks) if isinstance(blocks, str) else blocks or []
        assert_within_limits(blocks)
        assert len(call.args.get("text", "")) <= 4000
        found.append({"text": call.args.get("text", ""), "blocks": blocks})
    return found


def shown(answer: dict) -> str:
    return json.dumps(answer["blocks"], ensure_ascii=False)


def add_supporter(app_server: AppServer) -> None:
    with app_server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(SUPPORTER, "ICU", "nurse")],
                      now=app_server.runtime.clock.now(),
                      time_zones={SUPPORTER: "America/New_York"},
                      default_case_cap=2, default_cooldown_hours=12)
    app_server.slack.fake.add_user(SUPPORTER)


def test_any_dm_gets_one_answer_within_three_seconds_with_the_request_button(
        app_server: AppServer) -> None:
    started = time.monotonic()
    dm(app_server, "I need to talk to someone")
    answer = answers(app_server)[0]
    assert time.monotonic() - started < 3.0
    blocks = shown(answer)
    assert answer["blocks"][1]["elements"][0]["action_id"] == Action.REQUEST_SUPPORT
    assert "From the peer support toolkit" in blocks
    assert "988" in blocks, "the crisis lines are never far"
    assert "does not keep it" in blocks and "workspace" in blocks
    app_server.settle()
    assert len(app_server.slack.fake.calls_to("chat.postMessage")) == 1


def test_the_request_button_of_the_answer_opens_the_request_form(app_server: AppServer
                                                                 ) -> None:
    dm(app_server, "hello")
    answers(app_server)
    app_server.slack.block_action(PERSON, Action.REQUEST_SUPPORT, channel_id=CHANNEL)
    opened = app_server.slack.fake.wait_for("views.open")[0]
    view = opened.args["view"]
    assert "Ask for support" in (view if isinstance(view, str) else json.dumps(view))


def test_the_answer_lists_the_persons_coming_checkins(app_server: AppServer) -> None:
    runtime = app_server.runtime
    with runtime.sessions.begin() as session:
        request = domain.create(session, PERSON, RequestForm(
            urgency="now", connection="slack", followups=True), now=runtime.clock.now())
        checkins.plan(session, request, now=runtime.clock.now(), offsets_days=[2, 7],
                      default_tz="America/New_York")
    dm(app_server, "hello again")
    blocks = shown(answers(app_server)[0])
    assert "Your next check-ins" in blocks and "Wednesday 04 March" in blocks


def test_resources_words_answer_as_the_slash_command_does(app_server: AppServer) -> None:
    command = app_server.slack.command(PERSON, "resources sleep").json()
    dm(app_server, "resources sleep")
    answer = answers(app_server)[0]
    assert answer["text"] == command["text"]
    assert answer["blocks"][:-1] == command["blocks"]
    assert "write *help*" in json.dumps(answer["blocks"][-1])


def test_help_and_checkins_words_answer_as_the_slash_command_does(app_server: AppServer
                                                                  ) -> None:
    dm(app_server, "help")
    help_answer = answers(app_server)[0]
    assert any(b.get("block_id") == Block.HELP for b in help_answer["blocks"])
    dm(app_server, "checkins")
    assert "You have no check-ins coming" in shown(answers(app_server, count=2)[1])


def test_team_says_a_coordinator_arranges_it_and_offers_the_personal_button(
        app_server: AppServer) -> None:
    dm(app_server, "team")
    answer = answers(app_server)[0]
    assert "coordinator" in answer["text"] and Action.REQUEST_SUPPORT in shown(answer)


def status_of(app_server: AppServer) -> tuple[str, object]:
    with app_server.runtime.sessions() as session:
        supporter = session.get(Supporter, SUPPORTER)
        return supporter.status, supporter.away_until


def test_away_and_available_words_change_the_supporters_status(app_server: AppServer) -> None:
    add_supporter(app_server)
    dm(app_server, "away until friday 6pm", user=SUPPORTER, channel=SUPPORTER_CHANNEL)
    away = answers(app_server, SUPPORTER_CHANNEL)[0]
    assert "You are away until Friday 06 March at 18:00" in away["text"]
    status, until = status_of(app_server)
    assert status == SupporterStatus.AWAY and until is not None
    dm(app_server, "available", user=SUPPORTER, channel=SUPPORTER_CHANNEL)
    assert "You are available" in answers(app_server, SUPPORTER_CHANNEL, count=2)[1]["text"]
    assert status_of(app_server)[0] == SupporterStatus.AVAILABLE


def test_away_from_someone_not_on_the_roster_is_refused_kindly(app_server: AppServer) -> None:
    dm(app_server, "away")
    assert "not" in answers(app_server)[0]["text"].lower()


def requests_made(app_server: AppServer) -> list[SupportRequest]:
    with app_server.runtime.sessions() as session:
        return list(session.scalars(select(SupportRequest)))


def test_crisis_words_lead_with_the_crisis_lines_and_ask_for_nobody_until_pressed(
        app_server: AppServer) -> None:
    dm(app_server, "I keep thinking I want to die")
    answer = answers(app_server)[0]
    first = json.dumps(answer["blocks"][0])
    crisis = app_server.runtime.library.crisis_lines()
    assert crisis and escape(crisis[0].title) in first, "the crisis lines come first"
    assert "988" in answer["text"]
    buttons = [e["action_id"] for b in answer["blocks"] if b["type"] == "actions"
               for e in b["elements"]]
    assert buttons == [Action.REACH_OUT_NOW, Action.REQUEST_SUPPORT]
    app_server.settle()
    assert requests_made(app_server) == [], "nothing happens until the button is pressed"


def test_reach_out_now_takes_the_not_safe_path(app_server: AppServer) -> None:
    dm(app_server, "I am not safe")
    answers(app_server)
    app_server.slack.block_action(PERSON, Action.REACH_OUT_NOW, channel_id=CHANNEL)
    replaced = app_server.slack.fake.wait_for_response()[0]
    assert replaced["replace_original"] is True
    assert "A program coordinator has been alerted" in json.dumps(replaced["blocks"])
    request = eventually(lambda: requests_made(app_server))[0]
    assert request.crisis and request.urgency == "now" and request.connection == "slack"
    assert request.requester_id == PERSON
    fake = app_server.slack.fake
    alert = fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST in json.dumps(
        c.args.get("blocks")))[0]
    assert f"<@{PERSON}>" in json.dumps(alert.args["blocks"]), "safety lifts confidentiality"

    # Pressed again: the open request is said so, with the crisis lines again; no second one.
    app_server.slack.block_action(PERSON, Action.REACH_OUT_NOW, channel_id=CHANNEL)
    again = fake.wait_for_response(count=2)[1]
    assert again["replace_original"] is False
    assert "already open" in again["text"] and "988" in json.dumps(again["blocks"])
    app_server.settle()
    assert len(requests_made(app_server)) == 1


@pytest.mark.parametrize("event", [
    {"user": BOT, "text": "an answer of the bot itself"},
    {"bot_id": "B0OTHERBOT", "user": "UOTHERBOT1", "text": "another bot writes"},
    {"subtype": "bot_message", "bot_id": "B0OTHERBOT", "text": "a bot message"},
    {"subtype": "message_changed", "message": {"user": PERSON, "text": "edited words"}},
    {"subtype": "message_deleted", "deleted_ts": "1700000000.000001"},
    {"subtype": "channel_join", "user": PERSON, "text": "joined"},
    {"channel_type": "channel", "channel": "C0GENERAL1", "user": PERSON, "text": "in a channel"},
], ids=["self", "other bot", "bot_message", "edited", "deleted", "other subtype", "not a DM"])
def test_bots_edits_and_other_subtypes_get_no_answer(app_server: AppServer, event: dict) -> None:
    body = {"type": "message", "channel_type": "im", "channel": CHANNEL,
            "ts": "1700000000.000200", "event_ts": "1700000000.000200", **event}
    assert app_server.slack.event(body).status == 200
    time.sleep(0.2)
    app_server.settle()
    assert app_server.slack.fake.calls_to("chat.postMessage") == []


def test_a_repeated_delivery_is_answered_once(app_server: AppServer) -> None:
    dm(app_server, "hello", event_id="Ev0DMREPEAT1")
    dm(app_server, "hello", event_id="Ev0DMREPEAT1")
    answers(app_server)
    time.sleep(0.2)
    app_server.settle()
    assert len(app_server.slack.fake.calls_to("chat.postMessage")) == 1


SECRET = "Qzx-secret-words-7731"


def every_row(app_server: AppServer) -> str:
    """Every value in every table the app keeps, as text."""
    engine = app_server.runtime.engine
    dumped = []
    with engine.connect() as connection:
        for name in inspect(engine).get_table_names():
            dumped.extend(str(tuple(row)) for row in connection.execute(
                select(text("*")).select_from(table(name))))
    return "\n".join(dumped)


def test_nothing_written_reaches_the_log_or_the_database(
        app_server: AppServer, caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG)
    add_supporter(app_server)
    said = [f"I need to talk about {SECRET} tonight", f"resources {SECRET}",
            f"I want to die, {SECRET}", f"away until {SECRET}", f"help {SECRET}"]
    for number, words in enumerate(said):
        dm(app_server, words, user=SUPPORTER if "away" in words else PERSON,
           channel=f"D0SECRET{number:02d}")
        answers(app_server, f"D0SECRET{number:02d}")
    app_server.slack.block_action(PERSON, Action.REACH_OUT_NOW, channel_id="D0SECRET02")
    eventually(lambda: requests_made(app_server))
    app_server.settle()
    logged = "\n".join(r.getMessage() + str(r.exc_info or "") for r in caplog.records)
    assert "answered a direct message" in logged, "the log check saw the listener's records"
    assert SECRET.lower() not in logged.lower()
    assert SECRET.lower() not in every_row(app_server).lower()


def test_reach_out_now_with_an_ordinary_request_open_makes_it_urgent_and_alerts_at_once(
        app_server: AppServer) -> None:
    runtime = app_server.runtime
    app_server.slack.fake.add_user(PERSON)
    with runtime.sessions.begin() as session:  # an ordinary request, for this week
        request_id = domain.create(session, PERSON, RequestForm(urgency="week",
                                                                connection="phone"),
                                   now=runtime.clock.now()).id
    dm(app_server, "I am not safe")
    answers(app_server)
    app_server.slack.block_action(PERSON, Action.REACH_OUT_NOW, channel_id=CHANNEL)
    reply = app_server.slack.fake.wait_for_response()[0]
    assert "coordinator has been alerted now" in reply["text"]
    alert = app_server.slack.fake.wait_for("chat.postMessage", lambda c: Action.TAKE_REQUEST
                                           in json.dumps(c.args.get("blocks")))[0]
    assert f"<@{PERSON}>" in json.dumps(alert.args["blocks"]), "safety lifts confidentiality"
    app_server.settle()
    with runtime.sessions() as session:
        request = session.get(SupportRequest, request_id)
        assert (request.crisis, request.urgency) == (True, "now")
    assert len(requests_made(app_server)) == 1


def test_a_replayed_reach_out_click_is_handled_once(app_server: AppServer) -> None:
    runtime = app_server.runtime
    app_server.slack.fake.add_user(PERSON)
    with runtime.sessions.begin() as session:  # an ordinary request, for this week
        request_id = domain.create(session, PERSON, RequestForm(urgency="week",
                                                                connection="phone"),
                                   now=runtime.clock.now()).id
    payload = {"type": "block_actions", "team": {"id": "T0PEERSUP"}, "api_app_id": "A1",
               "user": {"id": PERSON}, "trigger_id": "9.9.reachout", "token": "t",
               "response_url": app_server.slack.fake.response_url(PERSON, CHANNEL, None),
               "actions": [{"type": "button", "action_id": Action.REACH_OUT_NOW,
                            "block_id": "b", "action_ts": "1.2"}]}
    seen = []
    for _ in range(2):  # a proxy replays the click after the first was handled
        assert app_server.slack.post_payload(payload).status == 200
        app_server.settle()
        with runtime.sessions() as session:
            request = session.get(SupportRequest, request_id)
            seen.append((request.crisis, request.version))
    assert seen[0][0] is True and seen[1] == seen[0], "made urgent once, not again"
    assert len(app_server.slack.fake.responses) == 1, "one answer to the person"
