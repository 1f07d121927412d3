"""What people read: hidden figures as plain sentences, the help list, each prompt-form error on
the field it is about, and one answer to `/peersupport results` when there is nothing yet."""

from __future__ import annotations

import json
from datetime import UTC, datetime
from typing import Any

import pytest

from bot.infra.models import Pulse
from bot.insights.service import Insights
from bot.pulses import service as pulses
from bot.pulses.service import PulseError, RunResult
from handlers.common.ids import Action, Block, Callback
from handlers.pulses.blocks import OWN, insights_blocks, results_message
from tests.conftest import LEADER, AppServer

K = 5


def text_of(blocks: list[dict]) -> str:
    return "\n".join(str((b.get("text") or {}).get("text", "")) for b in blocks)


def test_hidden_insights_read_as_plain_sentences() -> None:
    figures = Insights(minimum=K, months={"2026-02": None, "2026-03": 7}, total_requests=12,
                       departments={"ICU": 9, "Not given": None},
                       checkin_outcomes={"better": 6, "same": None},
                       supporters_with_cases=None, busiest_fifth_share=None)
    text = text_of(insights_blocks(figures))
    assert "*Requests by month:* 2026-02: hidden (fewer than 5); 2026-03: 7" in text
    assert "*By department:* ICU: 9; Not given: hidden (fewer than 5)" in text
    assert "*Check-in answers:* Doing better: 6; About the same: hidden (fewer than 5)" in text
    assert "*Supporters who took cases:* hidden (fewer than 5)" in text
    assert "*Share of cases the busiest fifth of supporters took:* hidden (fewer than 5)" in text
    assert "fewer than 5, hidden" not in text and "took hidden" not in text


def test_a_shown_busiest_fifth_is_a_share() -> None:
    figures = Insights(minimum=K, supporters_with_cases=10, busiest_fifth_share=0.4)
    text = text_of(insights_blocks(figures))
    assert "*Supporters who took cases:* 10" in text
    assert "*Share of cases the busiest fifth of supporters took:* 40%" in text


def test_hidden_results_read_as_plain_sentences() -> None:
    pulse = Pulse(question="How rested do you feel?", options=list(pulses.FIVE_POINT),
                  department="ICU", recurrence="once", active=True)
    run = RunResult(run_id=1, opened_at=datetime(2026, 3, 2, tzinfo=UTC), respondents=None,
                    counts=None, mean=None)
    found = pulses.PulseResults(pulse=pulse, runs=[run],
                                departments={"ICU": 6, "ED": None}, department_total=None)
    text = text_of(results_message([found], K)["blocks"])
    assert "• 02 Mar 2026: hidden (fewer than 5)" in text
    assert "ICU: 6; ED: hidden (fewer than 5)" in text
    assert "fewer than 5, hidden" not in text


def test_help_lists_the_plain_command_first(app_server: AppServer) -> None:
    reply = app_server.slack.command("UCLIN00001", "help").json()
    listing = next(b for b in reply["blocks"] if b.get("block_id") == Block.HELP)
    first = listing["text"]["text"].splitlines()[0]
    assert first.startswith("`/peersupport`  Ask for support"), first
    assert "`/peersupport help`" in listing["text"]["text"]


# -- the prompt form ---------------------------------------------------------------------------


def radio(value: str) -> dict:
    return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}


def typed(value: str) -> dict:
    return {Action.FIELD: {"type": "plain_text_input", "value": value}}


def prompt_form(**changes: Any) -> dict[str, Any]:
    values: dict[str, Any] = {
        Block.PRESET: {Action.FIELD: {"type": "static_select",
                                      "selected_option": {"value": OWN}}},
        Block.QUESTION: typed("How rested do you feel?"),
        Block.SCALE: radio("options"),
        Block.OPTIONS: typed("Rested, So-so, Exhausted"),
        Block.CHANNEL: {Action.FIELD: {"type": "conversations_select",
                                       "selected_conversation": "C0ICU0001"}},
        Block.PULSE_DEPARTMENT: typed("ICU"),
        Block.RECURRENCE: radio("once"),
        Block.WEEKDAY: {Action.FIELD: {"type": "static_select",
                                       "selected_option": {"value": "0"}}},
        Block.TIME: {Action.FIELD: {"type": "timepicker", "selected_time": "09:00"}},
        Block.OPEN_FOR: radio("24"),
    }
    values.update(changes)
    return values


@pytest.mark.parametrize(("changes", "block", "words"), [
    ({Block.CHANNEL: {Action.FIELD: {"type": "conversations_select",
                                     "selected_conversation": None}}},
     Block.CHANNEL, "Choose the channel"),
    ({Block.QUESTION: typed("")}, Block.QUESTION, "Write a question"),
    ({Block.OPTIONS: typed("Only one")}, Block.OPTIONS, "2 to 6 named answers"),
    ({Block.SCALE: radio("stars")}, Block.SCALE, "1 to 5 scale or named answers"),
    ({Block.PULSE_DEPARTMENT: typed("x" * 81)}, Block.PULSE_DEPARTMENT, "at most 80"),
    ({Block.RECURRENCE: radio("hourly")}, Block.RECURRENCE, "how often"),
    ({Block.OPEN_FOR: radio("5")}, Block.OPEN_FOR, "how long"),
    ({Block.WEEKDAY: {Action.FIELD: {"type": "static_select",
                                     "selected_option": {"value": "9"}}}},
     Block.WEEKDAY, "Choose a day"),
])
def test_each_prompt_form_error_lands_on_its_field(leader_server: AppServer, changes: dict,
                                                   block: str, words: str) -> None:
    reply = leader_server.slack.view_submission(LEADER, Callback.PULSE, prompt_form(**changes),
                                                private_metadata="America/New_York")
    answer = reply.json()
    assert answer["response_action"] == "errors"
    assert list(answer["errors"]) == [block], answer["errors"]
    assert words in answer["errors"][block]


def test_a_problem_with_a_chosen_preset_lands_on_the_preset(leader_server: AppServer) -> None:
    preset = leader_server.runtime.library.prompts()[0]
    form = prompt_form(**{Block.PRESET: {Action.FIELD: {
        "type": "static_select", "selected_option": {"value": preset.id}}}})
    form[Block.CHANNEL] = {Action.FIELD: {"type": "conversations_select",
                                          "selected_conversation": None}}
    answer = leader_server.slack.view_submission(LEADER, Callback.PULSE, form,
                                                 private_metadata="America/New_York").json()
    assert list(answer["errors"]) == [Block.CHANNEL], "the channel is still the channel's"


def test_every_form_check_names_its_field() -> None:
    spec = pulses.PulseSpec(question="", scale="options", options=(), channel_id="",
                            department="", recurrence="", weekday=0, minute=0, tz="UTC",
                            open_hours=0)
    with pytest.raises(PulseError) as caught:
        spec.check()
    assert caught.value.field == "question"


def test_results_with_nothing_yet_answer_once(leader_server: AppServer) -> None:
    server = leader_server
    server.slack.command(LEADER, "results")
    body = server.slack.fake.wait_for_response()[0]
    assert "You have not posted a prompt yet" in json.dumps(body["blocks"])
    server.settle()
    fake = server.slack.fake
    assert fake.calls_to("chat.postMessage") == [] and fake.calls_to("conversations.open") == []
    assert fake.files == {}, "no chart and no CSV of nothing"
