"""The App Home by role, roster and availability commands, and the daily coverage check,
through signed requests and the loopback Slack stand-in."""

from __future__ import annotations

import json
from datetime import UTC, datetime, timedelta

import pytest
from sqlalchemy import select

from bot.home.service import build_home
from bot.infra.models import DueWork, Supporter, SupporterStatus, WorkState
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from bot.roster.timers import COVERAGE_CHECK
from handlers import bootstrap_jobs
from handlers.common.ids import Action, Block, Callback
from handlers.home.blocks import home_view
from handlers.roster.blocks import roster_list
from tests.blockkit import VIEW_BLOCKS, assert_within_limits
from tests.conftest import AppServer, eventually, make_settings

COORDINATOR = "UCOORD0001"  # PEERSUPPORT_COORDINATORS in the test settings
CLINICIAN = "UCLIN00001"
SUPPORTER = "USUPP00001"


def add_supporter(app_server: AppServer, user_id: str = SUPPORTER, **fields: object) -> None:
    with app_server.runtime.sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(user_id, "ICU", "nurse")],
                      now=app_server.runtime.clock.now(), time_zones={user_id: "America/New_York"},
                      default_case_cap=2, default_cooldown_hours=12)
        supporter = roster.get(session, user_id)
        for name, value in fields.items():
            setattr(supporter, name, value)


def open_home(app_server: AppServer, user_id: str) -> str:
    fake = app_server.slack.fake
    before = len(fake.calls_to("views.publish"))
    reply = app_server.slack.event({"type": "app_home_opened", "user": user_id, "tab": "home",
                                    "channel": "D0HOME0001", "event_ts": "1.2"})
    assert reply.status == 200
    call = fake.wait_for("views.publish", lambda c: c.args["user_id"] == user_id,
                         count=before + 1)[-1]
    view = call.args["view"]
    view = json.loads(view) if isinstance(view, str) else view
    assert view["type"] == "home"
    assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)
    return json.dumps(view, ensure_ascii=False)


def test_everyone_sees_the_request_button_crisis_lines_and_resources(app_server: AppServer
                                                                     ) -> None:
    home = open_home(app_server, CLINICIAN)
    assert Action.REQUEST_SUPPORT in home and "you have no open request" in home
    assert "988" in home and "From the peer support toolkit" in home
    for private in ("Your availability", "Program coverage", "For leaders"):
        assert private not in home


def test_a_supporter_sees_their_availability_and_hours(app_server: AppServer) -> None:
    add_supporter(app_server)
    home = open_home(app_server, SUPPORTER)
    assert "Your availability as a supporter" in home
    assert "Available and on duty now" in home and "No set hours" in home
    assert "Offers waiting for you:* none" in home
    assert "Program coverage" not in home


def test_a_coordinator_sees_coverage_by_department(app_server: AppServer) -> None:
    add_supporter(app_server)
    add_supporter(app_server, "USUPP00002", status=SupporterStatus.AWAY)
    home = open_home(app_server, COORDINATOR)
    assert "*1* on duty now · *1* available · *2* on the roster" in home
    assert "ICU: 1 on duty, 1 available, 2 in all" in home
    assert "Unassigned or escalated requests:* none" in home


def test_a_leader_from_a_user_group_sees_the_leader_section(app_server: AppServer) -> None:
    app_server.runtime.roles.leader_group = "S0LEADERS"
    app_server.slack.fake.usergroups["S0LEADERS"] = ["ULEAD00001"]
    home = open_home(app_server, "ULEAD00001")
    assert "For leaders" in home
    assert app_server.slack.fake.calls_to("usergroups.users.list")


def test_coordinator_home_fits_with_a_thousand_supporters(app_server: AppServer) -> None:
    now = app_server.runtime.clock.now()
    with app_server.runtime.sessions.begin() as session:
        session.add_all(Supporter(
            user_id=f"U{i:08d}", department=f"Department {i % 60}", role="nurse",
            status=SupporterStatus.AVAILABLE if i % 3 else SupporterStatus.AWAY, tz="UTC",
            case_cap=2, cooldown_hours=12, created_at=now, updated_at=now) for i in range(1000))
    with app_server.runtime.sessions() as session:
        home = build_home(session, COORDINATOR, roles=app_server.runtime.roles,
                          library=app_server.runtime.library,
                          settings=app_server.runtime.settings, now=now)
        listing = roster_list(roster.all_supporters(session), now)
    view = home_view(home)
    assert_within_limits(view["blocks"], max_blocks=VIEW_BLOCKS)
    assert "and 40 more departments" in json.dumps(view, ensure_ascii=False)
    assert "*666* on duty now" in json.dumps(view, ensure_ascii=False)
    assert_within_limits(listing["blocks"])
    listed = json.dumps(listing)
    assert all(f"<@U{i:08d}>" in listed for i in range(1000)), "the whole roster fits"


def test_away_and_available_buttons_republish_the_home(app_server: AppServer) -> None:
    add_supporter(app_server)
    app_server.slack.block_action(SUPPORTER, Action.SET_AWAY)
    call = app_server.slack.fake.wait_for("views.publish")[-1]
    assert "*Away* until you say you are available" in json.dumps(call.args["view"], ensure_ascii=False)
    app_server.slack.block_action(SUPPORTER, Action.SET_AVAILABLE)
    call = app_server.slack.fake.wait_for("views.publish", count=2)[-1]
    assert "Available and on duty now" in json.dumps(call.args["view"], ensure_ascii=False)


def submit_preferences(app_server: AppServer, hours: dict[int, tuple[str, str]],
                       case_cap: str = "3", cooldown: str = "24"):  # noqa: ANN201
    values = {}
    for weekday in range(7):
        start, end = hours.get(weekday, ("off", "off"))
        values[f"{Block.HOURS}:{weekday}:start"] = {Action.HOURS_START: {
            "type": "static_select", "selected_option": {"value": start}}}
        values[f"{Block.HOURS}:{weekday}:end"] = {Action.HOURS_END: {
            "type": "static_select", "selected_option": {"value": end}}}
    values[Block.CASE_CAP] = {Action.CASE_CAP: {"type": "number_input", "value": case_cap}}
    values[Block.COOLDOWN] = {Action.COOLDOWN: {"type": "static_select",
                                                "selected_option": {"value": cooldown}}}
    return app_server.slack.view_submission(SUPPORTER, Callback.PREFERENCES, values)


def test_the_preferences_modal_opens_and_saves(app_server: AppServer) -> None:
    add_supporter(app_server)
    app_server.slack.block_action(SUPPORTER, Action.OPEN_PREFERENCES)
    opened = app_server.slack.fake.wait_for("views.open")[0].args["view"]
    assert opened["callback_id"] == Callback.PREFERENCES
    assert_within_limits(opened["blocks"], max_blocks=VIEW_BLOCKS)

    reply = submit_preferences(app_server, {0: ("480", "960"), 4: ("1320", "420")})
    assert reply.status == 200 and reply.body == ""

    def saved() -> Supporter | None:
        # Two reads (the row, then its hours) can straddle the listener's commit on
        # PostgreSQL, so wait for both halves of the change.
        with app_server.runtime.sessions() as session:
            supporter = roster.get(session, SUPPORTER)
            return supporter if supporter.hours and supporter.case_cap == 3 else None

    supporter = eventually(saved)
    assert [(h.weekday, h.start_minute, h.end_minute) for h in supporter.hours] == [
        (0, 480, 960), (4, 1320, 420)]
    assert (supporter.case_cap, supporter.cooldown_hours) == (3, 24)
    published = app_server.slack.fake.wait_for("views.publish")[-1]
    assert "Friday 22:00–07:00 (overnight)" in json.dumps(published.args["view"], ensure_ascii=False)


@pytest.mark.parametrize(("hours", "case_cap", "block"), [
    ({0: ("480", "off")}, "2", f"{Block.HOURS}:0:end"),
    ({2: ("off", "600")}, "2", f"{Block.HOURS}:2:start"),
    ({1: ("600", "600")}, "2", f"{Block.HOURS}:1:end"),
    ({}, "99", Block.CASE_CAP),
    ({}, "two", Block.CASE_CAP),
])
def test_bad_preferences_are_shown_in_the_modal_and_change_nothing(
        app_server: AppServer, hours: dict, case_cap: str, block: str) -> None:
    add_supporter(app_server)
    reply = submit_preferences(app_server, hours, case_cap=case_cap)
    body = reply.json()
    assert body["response_action"] == "errors" and block in body["errors"]
    with app_server.runtime.sessions() as session:
        assert roster.get(session, SUPPORTER).case_cap == 2


def test_away_until_modal_saves_and_refuses_the_past(app_server: AppServer) -> None:
    add_supporter(app_server)
    app_server.slack.block_action(SUPPORTER, Action.OPEN_AWAY_UNTIL)
    opened = app_server.slack.fake.wait_for("views.open")[0].args["view"]
    suggested = opened["blocks"][0]["element"]["initial_date_time"]
    assert datetime.fromtimestamp(suggested, UTC) > app_server.runtime.clock.now()

    def submit(epoch: int):  # noqa: ANN202
        return app_server.slack.view_submission(SUPPORTER, Callback.AWAY_UNTIL, {
            Block.AWAY_UNTIL: {Action.AWAY_UNTIL: {"type": "datetimepicker",
                                                   "selected_date_time": epoch}}})

    past = int((app_server.runtime.clock.now() - timedelta(hours=1)).timestamp())
    assert Block.AWAY_UNTIL in submit(past).json()["errors"]
    assert submit(suggested).status == 200
    supporter = eventually(lambda: status_of(app_server, SUPPORTER, SupporterStatus.AWAY))
    assert supporter.away_until == datetime.fromtimestamp(suggested, UTC)


def status_of(app_server: AppServer, user_id: str, status: str) -> Supporter | None:
    with app_server.runtime.sessions() as session:
        supporter = roster.get(session, user_id)
        return supporter if supporter is not None and supporter.status == status else None


# -- roster and availability commands ----------------------------------------------------------


def command_reply(app_server: AppServer, user_id: str, text: str) -> str:
    count = len(app_server.slack.fake.responses)
    reply = app_server.slack.command(user_id, text)
    assert reply.status == 200
    body = app_server.slack.fake.wait_for_response(count=count + 1)[-1]
    assert body["response_type"] == "ephemeral"
    return body["text"]


def test_only_coordinators_manage_the_roster(app_server: AppServer) -> None:
    text = command_reply(app_server, CLINICIAN, f"roster add <@{CLINICIAN}>")
    assert text.startswith("Only program coordinators can manage the roster")
    with app_server.runtime.sessions() as session:
        assert roster.all_supporters(session) == []


def test_coordinator_adds_by_mention_in_both_forms(app_server: AppServer) -> None:
    fake = app_server.slack.fake
    fake.add_user("USUPP00001", tz="America/Chicago")
    fake.add_user("USUPP00002", tz="Europe/Dublin")
    text = command_reply(app_server, COORDINATOR, 'roster add <@USUPP00001> <@USUPP00002|sam> '
                                                  'department="Emergency Department" role=nurse')
    assert text == "*Added:* <@USUPP00001>, <@USUPP00002>"
    sam = eventually(lambda: status_of(app_server, "USUPP00002", SupporterStatus.AVAILABLE))
    assert (sam.department, sam.role, sam.tz) == ("Emergency Department", "nurse",
                                                  "Europe/Dublin")
    fake.wait_for("views.publish", count=2)
    listing = command_reply(app_server, COORDINATOR, "roster list")
    assert listing == "Peer supporters: 2"
    again = command_reply(app_server, COORDINATOR, "roster add <@USUPP00001>")
    assert "Updated" in again, "department and role return to their defaults when not given"
    removed = command_reply(app_server, COORDINATOR, "roster remove <@USUPP00001> <@UNOBODY01>")
    assert removed == "*Removed:* <@USUPP00001>\n*Not on the roster:* <@UNOBODY01>"


@pytest.mark.parametrize(("text", "message"), [
    ("roster add", "Mention the people"),
    ("roster add <@USUPP00001> role=wizard", "unknown role 'wizard'"),
    ("roster add <@USUPP00001> shoe=42", "I don't understand `shoe=42`"),
    ('roster add <@USUPP00001> department="ICU', "A quote is not closed"),
    ("roster add <@UGHOST0001>", "cannot be found in Slack"),
    ("roster frobnicate", "Use `/peersupport roster add"),
])
def test_bad_roster_commands_explain_and_change_nothing(app_server: AppServer, text: str,
                                                        message: str) -> None:
    app_server.slack.fake.add_user("USUPP00001")
    assert message in command_reply(app_server, COORDINATOR, text)
    with app_server.runtime.sessions() as session:
        assert roster.all_supporters(session) == []


def test_supporters_set_themselves_away_and_back(app_server: AppServer) -> None:
    add_supporter(app_server)
    text = command_reply(app_server, SUPPORTER, "away until friday 18:00")
    assert text.startswith("You are away until Friday 06 March at 18:00 (America/New_York)")
    assert eventually(lambda: status_of(app_server, SUPPORTER, SupporterStatus.AWAY))
    assert "Say until when" not in command_reply(app_server, SUPPORTER, "away")
    assert "I could not read" in command_reply(app_server, SUPPORTER, "away until someday")
    assert command_reply(app_server, SUPPORTER, "available").startswith("You are available")
    assert "not on the peer supporter roster" in command_reply(app_server, CLINICIAN, "available")


# -- the daily coverage check ------------------------------------------------------------------


def test_coordinators_are_warned_of_a_gap_and_the_check_repeats_daily(
        app_server: AppServer) -> None:
    runtime = app_server.runtime
    add_supporter(app_server)
    with runtime.sessions.begin() as session:
        roster.set_preferences(session, SUPPORTER, now=runtime.clock.now(),
                               hours={d: (420, 1320) for d in range(7)}, case_cap=2,
                               cooldown_hours=12)
    bootstrap_jobs(runtime)
    bootstrap_jobs(runtime)  # a second clock starting changes nothing
    with runtime.sessions() as session:
        checks = list(session.scalars(select(DueWork).where(DueWork.kind == COVERAGE_CHECK)))
    assert len(checks) == 1
    assert checks[0].due_at == datetime(2026, 3, 2, 16, 0, tzinfo=UTC)  # 16:00 UTC settings

    runtime.clock.advance(timedelta(hours=2))
    assert runtime.duework().run_until_idle().done == 1
    dm = app_server.slack.fake.wait_for("chat.postMessage")[0]
    assert dm.args["channel"].startswith("D")
    text = json.dumps(dm.args["blocks"], ensure_ascii=False)
    assert "Nobody on duty Tue 03:00–Tue 12:00" in text  # 22:00-07:00 New York, shown in UTC
    with runtime.sessions() as session:
        pending = session.scalars(select(DueWork).where(
            DueWork.kind == COVERAGE_CHECK, DueWork.state == WorkState.PENDING)).one()
    assert pending.due_at == datetime(2026, 3, 3, 16, 0, tzinfo=UTC)


def test_no_warning_when_coverage_is_full(app_server: AppServer) -> None:
    add_supporter(app_server)
    bootstrap_jobs(app_server.runtime)
    app_server.runtime.clock.advance(timedelta(hours=3))
    app_server.runtime.duework().run_until_idle()
    assert app_server.slack.fake.calls_to("chat.postMessage") == []


def test_settings_reach_the_coverage_check(fake_slack) -> None:  # noqa: ANN001
    settings = make_settings(fake_slack, "sqlite:///x.sqlite3", PEERSUPPORT_TIMEZONE="Asia/Tokyo",
                             PEERSUPPORT_COVERAGE_CHECK_TIME="07:30")
    assert (settings.program_timezone, settings.coverage_check_minute) == ("Asia/Tokyo", 450)
