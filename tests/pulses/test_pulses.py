"""Wellbeing prompts and program insights: anonymity by construction, the minimum group size,
complementary suppression, and an adversarial pass over every output."""

from __future__ import annotations

import csv
import io
import json
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo

import pytest
from sqlalchemy import event, select, text
from sqlalchemy.orm import Session

from bot.app.runtime import Runtime
from bot.infra.aggregate import percentile, share, suppress
from bot.infra.models import Pulse, PulseAnswer, PulseRun, RequestState, SupportRequest
from bot.infra.settings import Settings, SettingsError
from bot.insights import service as program
from bot.pulses import service as pulses
from bot.pulses.service import PulseError, PulseSpec
from handlers.common.ids import Action, Block, Callback
from handlers.pulses.blocks import insights_blocks, results_message
from tests.conftest import LEADER, PULSE_SECRET, AppServer, Database, eventually
from tests.requests.test_requests_http import home_of, tick

NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)
SECRET = PULSE_SECRET
K = 5


# -- suppression -------------------------------------------------------------------------------


def test_small_groups_are_hidden_not_zero() -> None:
    cut = suppress({"ICU": 12, "ED": 3}, K)
    assert cut.groups["ED"] is None and cut.groups["ICU"] is None, "ED = total - ICU otherwise"
    assert cut.total == 15


def test_enough_hidden_people_keep_the_total() -> None:
    cut = suppress({"ICU": 12, "ED": 9, "OR": 2, "Lab": 4}, K)
    assert (cut.groups["OR"], cut.groups["Lab"]) == (None, None)
    assert (cut.groups["ICU"], cut.groups["ED"]) == (12, 9) and cut.total == 27


def test_the_total_goes_when_hiding_cannot_protect() -> None:
    assert suppress({"ICU": 3}, K).total is None
    assert suppress({"ICU": 2, "ED": 1}, K).total is None


def test_a_minimum_below_five_is_refused() -> None:
    with pytest.raises(ValueError):
        suppress({"a": 10}, 4)
    with pytest.raises(SettingsError, match="PEERSUPPORT_MIN_GROUP"):
        Settings.from_mapping({"PEERSUPPORT_MIN_GROUP": "3"})
    with pytest.raises(SettingsError, match="PEERSUPPORT_PULSE_SECRET"):
        Settings.from_mapping({"PEERSUPPORT_PULSE_SECRET": "short"})


def test_small_samples_give_no_statistics() -> None:
    assert percentile([1, 2, 3, 4], 0.5, K) is None
    assert percentile([1, 2, 3, 4, 5, 6, 7, 8, 9, 10], 0.9, K) == 9
    assert share(1, 4, K) is None and share(2, 8, K) == 0.25


# -- the prompt domain -------------------------------------------------------------------------


def spec(**changes: object) -> PulseSpec:
    values = {"question": "How are you holding up this week?", "scale": "five_point",
              "options": ("1", "2", "3", "4", "5"), "channel_id": "C0ICU0001",
              "department": "ICU", "recurrence": "once", "weekday": 0, "minute": 540,
              "tz": "America/New_York", "open_hours": 72}
    values.update(changes)
    return PulseSpec(**values)  # type: ignore[arg-type]


def posted(db: Database, answers: list[int], **changes: object) -> Pulse:
    """A prompt whose one run got `answers` (choice indexes) and then closed."""
    with db.sessions.begin() as session:
        pulse = pulses.create(session, LEADER, spec(**changes), now=NOW)
        run = pulses.open_run(session, pulse, now=NOW)
        for number, choice in enumerate(answers):
            pulses.answer(session, run.id, f"UANSWER{number:03d}", choice, secret=SECRET,
                          now=NOW)
        pulses.close_run(session, run.id)
        return pulse


@pytest.mark.parametrize("changes", [
    {"question": ""}, {"question": "x" * 151}, {"scale": "stars"},
    {"scale": "options", "options": ("only one",)}, {"channel_id": ""},
    {"recurrence": "hourly"}, {"open_hours": 5}, {"weekday": 9},
])
def test_bad_prompts_are_refused(database: Database, changes: dict) -> None:
    with pytest.raises(PulseError), database.sessions.begin() as session:
        pulses.create(session, LEADER, spec(**changes), now=NOW)
    with database.sessions() as session:
        assert session.scalars(select(Pulse)).all() == []


def test_answers_hold_no_identity_and_one_per_person(database: Database) -> None:
    with database.sessions.begin() as session:
        pulse = pulses.create(session, LEADER, spec(), now=NOW)
        run = pulses.open_run(session, pulse, now=NOW)
        pulses.answer(session, run.id, "UPERSON001", 0, secret=SECRET, now=NOW)
        pulses.answer(session, run.id, "UPERSON001", 4, secret=SECRET,
                      now=NOW + timedelta(hours=30))
    with database.sessions() as session:
        rows = session.execute(text("SELECT * FROM pulse_answers")).all()
        assert len(rows) == 1 and rows[0].choice == 4
        assert "UPERSON001" not in json.dumps([list(map(str, r)) for r in rows])
        assert str(rows[0].day).startswith("2026-03-03"), "only the day is kept"
        answer = session.scalars(select(PulseAnswer)).one()
        assert answer.responder != pulses.responder_key("another secret" * 3, run.id,
                                                        "UPERSON001")


def test_closed_prompts_take_no_answers(database: Database) -> None:
    pulse = posted(database, [0] * 5)
    with database.sessions() as session:
        run = session.scalars(select(PulseRun).where(PulseRun.pulse_id == pulse.id)).one()
    with pytest.raises(PulseError, match="closed"), database.sessions.begin() as session:
        pulses.answer(session, run.id, "ULATE00001", 1, secret=SECRET, now=NOW)


def test_recurring_prompts_follow_the_leaders_clock(database: Database) -> None:
    with database.sessions.begin() as session:
        weekly = pulses.create(session, LEADER, spec(recurrence="weekly", weekday=4), now=NOW)
        first = pulses.next_occurrence(weekly, NOW)
        assert first.astimezone(ZoneInfo("America/New_York")).strftime("%a %H:%M") == \
            "Fri 09:00"
        monthly = pulses.create(session, LEADER, spec(recurrence="monthly", weekday=0),
                                now=NOW)
        assert pulses.next_occurrence(monthly, NOW).strftime("%Y-%m-%d") == "2026-04-06"


# -- results, CSV and chart data ---------------------------------------------------------------


def every_output(session, pulse_list: list[Pulse]) -> str:  # noqa: ANN001
    """Every place a prompt's results leave the app, as text."""
    found = [pulses.results(session, p, minimum=K) for p in pulse_list]
    series = [pulses.trend_series(r) for r in found]
    return "\n".join([json.dumps(results_message(found, K)), pulses.results_csv(found),
                      json.dumps(series)])


def test_a_run_below_the_minimum_is_hidden_everywhere(database: Database) -> None:
    small = posted(database, [0, 0, 4, 4])  # four answers: 1, 1, 5, 5
    with database.sessions() as session:
        found = pulses.results(session, small, minimum=K)
        assert found.runs[0].respondents is None
        assert pulses.trend_series(found)[1] == [None], "a gap in the chart, not a zero"
        rows = list(csv.reader(io.StringIO(pulses.results_csv([found]))))
        assert rows[1][3] == "hidden"
        message = json.dumps(results_message([found], K))
        assert "hidden (fewer than 5)" in message and "average" not in message


def test_a_run_at_the_minimum_shows_its_spread(database: Database) -> None:
    enough = posted(database, [0, 1, 2, 3, 4])
    with database.sessions() as session:
        run = pulses.results(session, enough, minimum=K).runs[0]
    assert (run.respondents, run.counts, run.mean) == (5, (1, 1, 1, 1, 1), 3.0)


def test_departments_cannot_be_recovered_by_subtraction(database: Database) -> None:
    icu = posted(database, [4] * 6)
    posted(database, [0, 0], department="ED")  # two people in ED both said 1
    with database.sessions() as session:
        outputs = every_output(session, [icu, *session.scalars(select(Pulse).where(
            Pulse.department == "ED"))])
        found = pulses.results(session, icu, minimum=K)
    assert found.departments["ED"] is None and found.department_total is None
    assert "ED 2" not in outputs and "ED: 2" not in outputs and "; all 8" not in outputs
    assert "answers" in outputs and "ED: hidden (fewer than 5)" in outputs


def test_open_runs_show_nothing_until_they_close(database: Database) -> None:
    with database.sessions.begin() as session:
        pulse = pulses.create(session, LEADER, spec(), now=NOW)
        run = pulses.open_run(session, pulse, now=NOW)
        for number in range(7):
            pulses.answer(session, run.id, f"UANSWER{number:03d}", 2, secret=SECRET, now=NOW)
    with database.sessions() as session:
        found = pulses.results(session, session.get(Pulse, pulse.id), minimum=K)
    assert found.runs == [], "no running count that could be differenced over time"


def read(runtime: Runtime, query: Callable[[Session], Any]) -> Any:
    """A query in a session that is closed at once: a session left open holds its locks."""
    with runtime.sessions() as session:
        return query(session)


# -- insights ----------------------------------------------------------------------------------


def requests_in(db: Database, month_counts: dict[str, int], department: str = "ICU") -> None:
    with db.sessions.begin() as session:
        for month, count in month_counts.items():
            created = datetime.fromisoformat(f"{month}-10T12:00:00+00:00")
            for number in range(count):
                session.add(SupportRequest(
                    requester_id=f"U{month}{number}", urgency="now", connection="slack",
                    outside_department=False, same_role=False,
                    requester_department=department, followups=False, crisis=False,
                    state=RequestState.CLOSED, wave=1, supporter_id=f"USUP{number % 7}",
                    created_at=created, assigned_at=created + timedelta(minutes=10 + number),
                    closed_at=created + timedelta(hours=2)))


def insight_outputs(db: Database) -> tuple[program.Insights, str]:
    with db.sessions() as session:
        figures = program.compute(session, minimum=K)
    chart = [v for v in figures.months.values()]
    return figures, json.dumps(insights_blocks(figures)) + json.dumps(chart)


def test_a_quiet_month_cannot_be_found_by_subtraction(database: Database) -> None:
    requests_in(database, {"2026-01": 7, "2026-02": 2})
    figures, outputs = insight_outputs(database)
    assert figures.months == {"2026-01": None, "2026-02": None}
    assert figures.total_requests == 9
    assert "2026-02 2" not in outputs and "2026-01 7" not in outputs


def test_waits_are_the_nearest_rank_on_every_database(database: Database) -> None:
    requests_in(database, {"2026-01": 9, "2026-02": 1})  # waits of 10..18 minutes, and 10
    figures, _ = insight_outputs(database)
    waits = sorted([10.0 + n for n in range(9)] + [10.0])
    assert figures.median_minutes_to_accept == percentile(waits, 0.5, K) == 13.0
    assert figures.p90_minutes_to_accept == percentile(waits, 0.9, K) == 17.0
    assert figures.share_within_30 == 1.0


def test_figures_on_few_people_are_hidden(database: Database) -> None:
    requests_in(database, {"2026-01": 3})
    requests_in(database, {"2026-02": 4}, department="ED")
    figures, outputs = insight_outputs(database)
    assert figures.median_minutes_to_accept is not None  # seven waits in all
    assert figures.departments == {"ICU": None, "ED": None}
    assert figures.supporters_with_cases is None, "only four supporters took these cases"
    assert "ED 4" not in outputs and "ICU 3" not in outputs


# -- end to end --------------------------------------------------------------------------------


def submit_prompt(server: AppServer, channel: str = "C0ICU0001") -> None:
    server.slack.command(LEADER, "pulse")
    view = server.slack.fake.wait_for("views.open")[-1].args["view"]
    assert view["callback_id"] == Callback.PULSE
    assert view["private_metadata"] == "America/New_York"

    def radio(value: str) -> dict:
        return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}

    values = {
        Block.PRESET: {Action.FIELD: {"type": "static_select",
                                      "selected_option": {"value": "own"}}},
        Block.QUESTION: {Action.FIELD: {"type": "plain_text_input",
                                        "value": "How rested do you feel?"}},
        Block.SCALE: radio("options"),
        Block.OPTIONS: {Action.FIELD: {"type": "plain_text_input",
                                       "value": "Rested, So-so, Exhausted"}},
        Block.CHANNEL: {Action.FIELD: {"type": "conversations_select",
                                       "selected_conversation": channel}},
        Block.PULSE_DEPARTMENT: {Action.FIELD: {"type": "plain_text_input", "value": "ICU"}},
        Block.RECURRENCE: radio("once"),
        Block.OPEN_FOR: radio("24"),
    }
    reply = server.slack.view_submission(LEADER, Callback.PULSE, values,
                                         private_metadata="America/New_York")
    assert reply.status == 200 and reply.body == ""
    eventually(lambda: read(server.runtime, lambda s: s.scalars(select(Pulse)).first()))
    server.slack.fake.wait_for("chat.postMessage", lambda c: "While answers come in" in
                               c.args.get("text", ""))


def post_due_prompts(server: AppServer) -> None:
    tick(server, 1)


def test_only_leaders_post_prompts(leader_server: AppServer) -> None:
    reply = leader_server.slack.command("UCLIN00001", "pulse")
    assert reply.json()["text"].startswith("Only leaders")


def test_a_prompt_is_posted_answered_anonymously_and_reported(leader_server: AppServer) -> None:
    server = leader_server
    submit_prompt(server)
    post_due_prompts(server)
    fake = server.slack.fake
    prompt = fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == "C0ICU0001")[0]
    assert Action.REQUEST_SUPPORT in json.dumps(prompt.args["blocks"])
    run_id = json.dumps(prompt.args["blocks"]).split('"value": "')[1].split('"')[0]
    for number in range(6):
        server.slack.block_action(f"UNURSE{number:04d}", f"{Action.PULSE_ANSWER}:{number % 3}",
                                  run_id, channel_id="C0ICU0001")
    server.slack.block_action("UNURSE0000", f"{Action.PULSE_ANSWER}:2", run_id,
                              channel_id="C0ICU0001")  # a changed answer
    confirmations = fake.wait_for_response(count=7)
    assert all("recorded anonymously" in c["text"] for c in confirmations)
    def answers() -> list[int]:
        with server.runtime.sessions() as session:
            return sorted(session.scalars(select(PulseAnswer.choice)))

    assert eventually(lambda: answers() == [0, 1, 1, 2, 2, 2]), "six people, one answer each"
    tick(server, 24 * 3600)
    fake.wait_for("chat.update", lambda c: "has closed" in c.args["text"])
    report = fake.wait_for("chat.postMessage", lambda c: c.args.get("text") ==
                           "Your wellbeing prompt results")[0]
    assert "6 answers" in json.dumps(report.args["blocks"])
    uploads = eventually(lambda: len(fake.files) == 2 and fake.files)
    names = sorted(f["filename"] for f in uploads.values())
    assert names == ["prompt-results.csv", "prompt-results.png"]
    csv_file = next(f for f in uploads.values() if f["filename"].endswith(".csv"))
    assert b"Rested=1; So-so=2; Exhausted=3" in csv_file["content"]
    assert b"UNURSE" not in csv_file["content"]
    png = next(f for f in uploads.values() if f["filename"].endswith(".png"))
    assert png["content"].startswith(b"\x89PNG")


def test_an_answer_whose_commit_fails_is_never_confirmed(leader_server: AppServer) -> None:
    server = leader_server
    submit_prompt(server)
    post_due_prompts(server)
    fake = server.slack.fake
    prompt = fake.wait_for("chat.postMessage", lambda c: c.args["channel"] == "C0ICU0001")[0]
    run_id = json.dumps(prompt.args["blocks"]).split('"value": "')[1].split('"')[0]

    def refuse(session: Session) -> None:
        # The transaction that holds the answer cannot commit (it sees its own insert).
        if session.scalars(select(PulseAnswer.id)).first() is not None:
            raise RuntimeError("the database went away")

    event.listen(server.runtime.sessions, "before_commit", refuse)
    try:
        reply = server.slack.block_action("UNURSE0001", f"{Action.PULSE_ANSWER}:1", run_id,
                                          channel_id="C0ICU0001")
        assert reply.status == 200
        server.settle()
    finally:
        event.remove(server.runtime.sessions, "before_commit", refuse)
    assert not any("recorded anonymously" in r.get("text", "") for r in fake.responses)
    with server.runtime.sessions() as session:
        assert session.scalars(select(PulseAnswer)).all() == []


def note_when_posting_fails(server: AppServer, channel: str, error: str, words: str) -> str:
    """The text of the DM the leader gets when their prompt cannot be posted in `channel`."""
    submit_prompt(server, channel=channel)
    server.slack.fake.fail("chat.postMessage", error)
    post_due_prompts(server)
    return server.slack.fake.wait_for("chat.postMessage",
                                      lambda c: words in c.args.get("text", ""))[0].args["text"]


def test_not_in_the_channel_tells_the_leader_how_to_add_the_bot(leader_server: AppServer
                                                                ) -> None:
    note = note_when_posting_fails(leader_server, "C0PRIVATE1", "not_in_channel", "/invite")
    assert "<#C0PRIVATE1>" in note
    with leader_server.runtime.sessions() as session:
        assert session.scalars(select(PulseRun.state)).one() == "failed"


def test_results_and_insights_commands(leader_server: AppServer) -> None:
    server = leader_server
    server.slack.command(LEADER, "results")
    body = server.slack.fake.wait_for_response()[0]
    assert "You have not posted a prompt yet" in json.dumps(body["blocks"])
    server.slack.command(LEADER, "insights")
    insights_body = server.slack.fake.wait_for_response(count=2)[1]
    assert "Program insights" in json.dumps(insights_body["blocks"])
    assert server.slack.command("UCLIN00001", "insights").json()["text"].startswith(
        "Only coordinators and leaders")
    home = home_of(server, LEADER)
    assert "Program insights" in home and "/peersupport pulse" in home


def test_adversary_learns_nothing_about_a_small_group_from_any_output(
        leader_server: AppServer) -> None:
    """A leader posts the same question to a large and a small team, and the program has a
    quiet month; every output a leader or coordinator can reach is gathered and searched for
    anything about the small groups: their size, their answers, or a total to subtract from."""
    runtime = leader_server.runtime
    with runtime.sessions.begin() as session:
        for department, answers in (("ICU", [4] * 7), ("Pharmacy", [0, 0, 0])):
            pulse = pulses.create(session, LEADER, spec(department=department), now=NOW)
            run = pulses.open_run(session, pulse, now=NOW)
            for number, choice in enumerate(answers):
                pulses.answer(session, run.id, f"U{department}{number}", choice, secret=SECRET,
                              now=NOW)
            pulses.close_run(session, run.id)
        for month, count, department in (("2026-01", 8, "ICU"), ("2026-02", 2, "Pharmacy")):
            created = datetime.fromisoformat(f"{month}-05T10:00:00+00:00")
            for number in range(count):
                session.add(SupportRequest(
                    requester_id=f"U{month}{number}", urgency="now", connection="slack",
                    outside_department=False, same_role=False, requester_department=department,
                    followups=False, crisis=False, state=RequestState.CLOSED, wave=1,
                    supporter_id=f"USUP{number}", created_at=created,
                    assigned_at=created + timedelta(minutes=5), closed_at=created,
                    escalated_at=created if number == 0 else None))
    with runtime.sessions() as session:
        found = [pulses.results(session, p, minimum=K)
                 for p in pulses.leader_pulses(session, LEADER)]
        figures = program.compute(session, minimum=K)
    outputs = {
        "results": json.dumps(results_message(found, K)),
        "csv": pulses.results_csv(found),
        "prompt chart": json.dumps([pulses.trend_series(r) for r in found]),
        "insights": json.dumps(insights_blocks(figures)),
        "insights chart": json.dumps(list(figures.months.values())),
        "leader home": home_of(leader_server, LEADER),
        "coordinator home": home_of(leader_server, "UCOORD0001"),
    }
    leader_server.slack.command(LEADER, "results")
    leader_server.slack.command(LEADER, "insights")
    for reply in leader_server.slack.fake.wait_for_response(count=2):
        outputs[f"command {len(outputs)}"] = json.dumps(reply)
    everything = "\n".join(outputs.values())
    # The Pharmacy prompt (3 answers, all "1") and February (2 requests) must not show.
    pharmacy = next(r for r in found if r.pulse.department == "Pharmacy")
    assert pharmacy.runs[0].respondents is None and pharmacy.runs[0].counts is None
    assert figures.months["2026-02"] is None
    for leak in ("Pharmacy 3", "3 answers", "average 1.0", "2026-02 2", "Pharmacy 2",
                 "; all 10", "2026-02-05,3", "1=3"):
        assert leak not in everything, leak
    # Nor by subtraction: no total beside a hidden department or month gives them away.
    icu = next(r for r in found if r.pulse.department == "ICU")
    assert icu.department_total is None
    assert figures.total_requests is None or figures.months["2026-01"] is None
    assert figures.escalations is None, "two escalations are fewer than five"
    assert figures.departments == {"ICU": None, "Pharmacy": None} or \
        figures.departments["Pharmacy"] is None and figures.total_requests is None


def test_a_recurring_prompt_runs_on_schedule_until_stopped(leader_server: AppServer) -> None:
    runtime = leader_server.runtime
    with runtime.sessions.begin() as session:
        pulse = pulses.create(session, LEADER, spec(recurrence="weekly", weekday=0, minute=600,
                                                    open_hours=24), now=runtime.clock.now())
        pulse_id = pulse.id
    tick(leader_server, 7 * 86400)  # a week: Monday 10:00 New York comes round once

    def runs() -> int:
        with runtime.sessions() as session:
            return len(session.scalars(select(PulseRun)).all())

    assert runs() == 1
    leader_server.slack.block_action("USOMEONE1", Action.PULSE_STOP, str(pulse_id))
    assert "not yours" in leader_server.slack.fake.wait_for_response()[0]["text"]
    leader_server.slack.block_action(LEADER, Action.PULSE_STOP, str(pulse_id))
    assert "will not be posted again" in \
        leader_server.slack.fake.wait_for_response(count=2)[1]["text"]
    eventually(lambda: not read(runtime, lambda s: s.get(Pulse, pulse_id).active))
    tick(leader_server, 14 * 86400)
    assert runs() == 1
