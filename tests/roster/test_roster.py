"""Roster domain on real databases, CSV import and export, roles, and 'away until' parsing."""

from __future__ import annotations

import os
import subprocess
import sys
from datetime import UTC, datetime, timedelta
from pathlib import Path
from zoneinfo import ZoneInfo

import pytest

from bot.infra.clock import ManualClock
from bot.infra.models import SupporterStatus
from bot.infra.roles import GroupMembers, NotPermitted, RoleResolver
from bot.roster import csv_import as roster_csv
from bot.roster import supporters as roster
from bot.roster.supporters import RosterError, SupporterSpec
from bot.roster.timeparse import TimeParseError, parse_until
from bot.sandbox.slack_api import FakeSlack
from tests.conftest import Database

ROOT = Path(__file__).resolve().parents[2]
NOW = datetime(2026, 3, 2, 15, 0, tzinfo=UTC)


def upsert(db: Database, *specs: SupporterSpec, zones: dict[str, str] | None = None
           ) -> roster.Upsert:
    with db.sessions.begin() as session:
        return roster.upsert(session, specs, now=NOW, time_zones=zones or {},
                             default_case_cap=2, default_cooldown_hours=12)


def test_upsert_adds_updates_and_leaves_alone(database: Database) -> None:
    first = upsert(database, SupporterSpec("U1", "ICU", "nurse"), SupporterSpec("U2", "ED", "physician"),
                   zones={"U1": "Europe/Berlin"})
    assert (first.added, first.changed, first.unchanged) == (["U1", "U2"], [], [])
    again = upsert(database, SupporterSpec("U1", "ICU", "nurse"), SupporterSpec("U2", "ED", "chaplain"))
    assert (again.added, again.changed, again.unchanged) == ([], ["U2"], ["U1"])
    with database.sessions() as session:
        u1 = roster.get(session, "U1")
        assert (u1.status, u1.tz, u1.case_cap, u1.cooldown_hours) == (
            SupporterStatus.AVAILABLE, "Europe/Berlin", 2, 12)
        assert roster.get(session, "U2").role == "chaplain"


def test_remove_reports_who_was_not_there(database: Database) -> None:
    upsert(database, SupporterSpec("U1"))
    with database.sessions.begin() as session:
        assert roster.remove(session, ["U1", "U9"]) == (["U1"], ["U9"])
    with database.sessions() as session:
        assert roster.all_supporters(session) == []


def test_availability_changes(database: Database) -> None:
    upsert(database, SupporterSpec("U1"))
    with database.sessions.begin() as session:
        roster.set_away(session, "U1", now=NOW, until=NOW + timedelta(days=2))
    with database.sessions.begin() as session:
        supporter = roster.get(session, "U1")
        assert (supporter.status, supporter.away_until) == (SupporterStatus.AWAY,
                                                            NOW + timedelta(days=2))
        roster.set_available(session, "U1", now=NOW)
    with database.sessions() as session:
        assert roster.get(session, "U1").away_until is None


@pytest.mark.parametrize("until", [NOW - timedelta(minutes=1), NOW + timedelta(days=181)])
def test_away_until_must_be_ahead_and_within_reason(database: Database, until: datetime) -> None:
    upsert(database, SupporterSpec("U1"))
    with pytest.raises(RosterError), database.sessions.begin() as session:
        roster.set_away(session, "U1", now=NOW, until=until)
    with database.sessions() as session:
        assert roster.get(session, "U1").status == SupporterStatus.AVAILABLE


def test_only_supporters_have_availability(database: Database) -> None:
    with pytest.raises(RosterError, match="not on the peer supporter roster"), \
            database.sessions.begin() as session:
        roster.set_available(session, "UNOBODY1", now=NOW)


def test_preferences_replace_hours_and_limits(database: Database) -> None:
    upsert(database, SupporterSpec("U1"))
    with database.sessions.begin() as session:
        roster.set_preferences(session, "U1", now=NOW, hours={0: (480, 960), 4: (1320, 420)},
                               case_cap=3, cooldown_hours=24)
    with database.sessions.begin() as session:
        roster.set_preferences(session, "U1", now=NOW, hours={0: (540, 1020)}, case_cap=1,
                               cooldown_hours=0)
    with database.sessions() as session:
        supporter = roster.get(session, "U1")
        assert [(h.weekday, h.start_minute, h.end_minute) for h in supporter.hours] == [
            (0, 540, 1020)]
        assert (supporter.case_cap, supporter.cooldown_hours) == (1, 0)


@pytest.mark.parametrize(("kwargs", "field"), [
    ({"case_cap": 0}, "case_cap"), ({"case_cap": 11}, "case_cap"),
    ({"cooldown_hours": 5}, "cooldown"), ({"hours": {0: (480, 480)}}, "hours"),
    ({"hours": {7: (480, 500)}}, "hours"), ({"hours": {0: (480, 1440)}}, "hours"),
])
def test_bad_preferences_change_nothing(database: Database, kwargs: dict, field: str) -> None:
    upsert(database, SupporterSpec("U1"))
    values = {"hours": {}, "case_cap": 2, "cooldown_hours": 12, **kwargs}
    with pytest.raises(RosterError) as error, database.sessions.begin() as session:
        roster.set_preferences(session, "U1", now=NOW, **values)
    assert error.value.field == field
    with database.sessions() as session:
        assert roster.get(session, "U1").case_cap == 2


def test_roles_normalise_and_refuse_unknown() -> None:
    assert roster.normalise_role("Social worker") == "social_worker"
    assert roster.normalise_role("NURSE") == "nurse"
    with pytest.raises(RosterError, match="unknown role 'wizard'"):
        roster.normalise_role("wizard")


# -- CSV ---------------------------------------------------------------------------------------


def test_csv_problems_are_reported_with_line_numbers() -> None:
    parsed = roster_csv.parse(
        "user_id,department,role\n"
        "U0AAA0001,ICU,nurse\n"
        "\n"
        "alice,ICU,nurse\n"
        "U0AAA0002,ED,wizard\n"
        "U0AAA0001,ED,nurse\n"
        "U0AAA0003,ED\n"
        f"U0AAA0004,{'x' * 81},nurse\n")
    assert [(p.line, p.message.split(" (")[0]) for p in parsed.problems] == [
        (4, "'alice' is not a Slack user id"),
        (5, "unknown role 'wizard'; use one of: " + ", ".join(roster.ROLES)),
        (6, "U0AAA0001 is already on line 2"),
        (7, "expected 3 columns, found 2"),
        (8, "a department name is at most 80 characters"),
    ]
    assert [spec.user_id for _, spec in parsed.rows] == ["U0AAA0001"]


@pytest.mark.parametrize("text", ["", "id,dept\nU1,ICU\n", "user_id,role,department\n"])
def test_csv_header_is_checked(text: str) -> None:
    problems = roster_csv.parse(text).problems
    assert len(problems) == 1 and problems[0].line == 1


def test_csv_with_a_byte_order_mark_and_blank_role() -> None:
    parsed = roster_csv.parse("\ufeffuser_id,department,role\nU0AAA0001, Emergency ,\n")
    assert parsed.problems == []
    assert parsed.rows[0][1] == SupporterSpec("U0AAA0001", "Emergency", "other")


def run_roster(tmp_path: Path, fake: FakeSlack, db_url: str, *args: str
               ) -> subprocess.CompletedProcess:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PEERSUPPORT_"))}
    env.update(PYTHONPATH=str(ROOT), SLACK_BOT_TOKEN="xoxb-test", SLACK_API_URL=fake.api_url,
               DATABASE_URL=db_url)
    return subprocess.run([sys.executable, "-m", "bot", "roster", *args], cwd=tmp_path, env=env,
                          capture_output=True, text=True, timeout=60)


def test_import_is_an_idempotent_upsert_and_export_round_trips(
        tmp_path: Path, fake_slack: FakeSlack, database: Database) -> None:
    fake_slack.add_user("U0AAA0001", tz="America/Chicago")
    fake_slack.add_user("U0AAA0002", tz="Europe/London")
    csv_file = tmp_path / "roster.csv"
    csv_file.write_text("user_id,department,role\nU0AAA0001,ICU,nurse\nU0AAA0002,ED,physician\n")

    first = run_roster(tmp_path, fake_slack, database.process_url, "import", str(csv_file))
    assert first.returncode == 0, first.stderr
    assert first.stdout.splitlines() == ["added 2: U0AAA0001, U0AAA0002", "changed 0",
                                         "unchanged 0"]
    again = run_roster(tmp_path, fake_slack, database.process_url, "import", str(csv_file))
    assert again.stdout.splitlines()[-1] == "unchanged 2: U0AAA0001, U0AAA0002"

    csv_file.write_text("user_id,department,role\nU0AAA0001,ICU,therapist\n")
    third = run_roster(tmp_path, fake_slack, database.process_url, "import", str(csv_file))
    assert third.stdout.splitlines()[1] == "changed 1: U0AAA0001"

    exported = run_roster(tmp_path, fake_slack, database.process_url, "export")
    assert exported.stdout == ("user_id,department,role\nU0AAA0002,ED,physician\n"
                               "U0AAA0001,ICU,therapist\n")
    with database.sessions() as session:
        assert roster.get(session, "U0AAA0001").tz == "America/Chicago"
        assert roster.get(session, "U0AAA0002").status == SupporterStatus.AVAILABLE


def test_import_with_any_problem_imports_nothing(tmp_path: Path, fake_slack: FakeSlack,
                                                 database: Database) -> None:
    fake_slack.add_user("U0AAA0001")
    fake_slack.add_user("U0AAA0003", deleted=True)
    csv_file = tmp_path / "roster.csv"
    csv_file.write_text("user_id,department,role\nU0AAA0001,ICU,nurse\nU0AAA0002,ED,nurse\n"
                        "U0AAA0003,ED,nurse\n")
    result = run_roster(tmp_path, fake_slack, database.process_url, "import", str(csv_file))
    assert result.returncode == 1
    assert f"{csv_file}:3: Slack does not know U0AAA0002" in result.stderr
    assert f"{csv_file}:4: U0AAA0003 is deactivated in Slack" in result.stderr
    assert "nothing was imported" in result.stderr
    with database.sessions() as session:
        assert roster.all_supporters(session) == []


# -- roles -------------------------------------------------------------------------------------


def test_roles_from_settings_groups_and_roster(database: Database) -> None:
    clock = ManualClock(NOW)
    fetched: list[str] = []
    groups = {"S0COORD": ["UGROUPCO1"], "S0LEAD": ["ULEAD0001"]}

    def fetch(group: str) -> list[str]:
        fetched.append(group)
        return groups[group]

    resolver = RoleResolver(coordinators=["UCOORD001"], leaders=[], coordinator_group="S0COORD",
                            leader_group="S0LEAD", groups=GroupMembers(fetch, clock))
    upsert(database, SupporterSpec("USUPP0001"))
    with database.sessions() as session:
        assert resolver.of(session, "UCOORD001").coordinator
        assert resolver.of(session, "UGROUPCO1").coordinator
        assert resolver.of(session, "ULEAD0001").leader
        assert resolver.of(session, "USUPP0001").supporter
        nobody = resolver.of(session, "UCLIN0001")
        assert not (nobody.coordinator or nobody.leader or nobody.supporter)
        with pytest.raises(NotPermitted, match="Only program coordinators"):
            resolver.require_coordinator(session, "UCLIN0001")
    assert fetched.count("S0COORD") == 1, "group members are cached"
    groups["S0COORD"] = ["UNEWCO001"]
    clock.advance(timedelta(minutes=6))
    assert resolver.coordinator_ids() == {"UCOORD001", "UNEWCO001"}


def test_a_failed_group_refresh_keeps_the_last_members() -> None:
    clock = ManualClock(NOW)
    answers: list[object] = [["UGROUPCO1"], RuntimeError("slack down")]

    def fetch(group: str) -> list[str]:
        answer = answers.pop(0)
        if isinstance(answer, Exception):
            raise answer
        return answer  # type: ignore[return-value]

    members = GroupMembers(fetch, clock)
    assert members.of("S0COORD") == {"UGROUPCO1"}
    clock.advance(timedelta(minutes=10))
    assert members.of("S0COORD") == {"UGROUPCO1"}


# -- "away until" ------------------------------------------------------------------------------

MONDAY_NOON_NY = datetime(2026, 3, 2, 17, 0, tzinfo=UTC)


@pytest.mark.parametrize(("text", "expected_local"), [
    ("tomorrow", "2026-03-03 08:00"),
    ("tomorrow 14:30", "2026-03-03 14:30"),
    ("friday 6pm", "2026-03-06 18:00"),
    ("fri", "2026-03-06 08:00"),
    ("monday", "2026-03-09 08:00"),
    ("2026-03-10 7am", "2026-03-10 07:00"),
    ("18:00", "2026-03-02 18:00"),
    ("9:00", "2026-03-03 09:00"),
    ("today 23:00", "2026-03-02 23:00"),
    ("8h", "2026-03-02 20:00"),
    ("3d", "2026-03-05 12:00"),
    ("sunday 09:00", "2026-03-08 09:00"),
    ("monday 09:00", "2026-03-09 09:00"),
])
def test_away_until_words(text: str, expected_local: str) -> None:
    moment = parse_until(text, now=MONDAY_NOON_NY, tz="America/New_York")
    assert f"{moment.astimezone(ZoneInfo('America/New_York')):%Y-%m-%d %H:%M}" == expected_local


def test_a_week_ahead_crosses_daylight_saving_on_the_wall_clock() -> None:
    moment = parse_until("monday 09:00", now=MONDAY_NOON_NY, tz="America/New_York")
    assert moment.utcoffset() == timedelta(hours=-4), "EDT after 8 March"


@pytest.mark.parametrize("text", ["", "whenever", "2026-02-30", "25:00", "13pm", "today 08:00",
                                  "2025-01-01"])
def test_unreadable_or_past_times_are_refused(text: str) -> None:
    with pytest.raises(TimeParseError):
        parse_until(text, now=MONDAY_NOON_NY, tz="America/New_York")



@pytest.mark.parametrize(("text", "ids", "rest"), [
    ("<@U0AAA0001> <@U0AAA0002|sam>", ["U0AAA0001", "U0AAA0002"], ""),
    ("<@W0ENT0001|a b> role=nurse", ["W0ENT0001"], "role=nurse"),
    ("<@U0AAA0001> <@U0AAA0001>", ["U0AAA0001"], ""),
    ("@alice <#C0CHAN001> <!here>", [], "@alice <#C0CHAN001> <!here>"),
])
def test_mentions_are_read_in_both_forms(text: str, ids: list[str], rest: str) -> None:
    from handlers.common.mentions import split_mentions

    assert split_mentions(text) == (ids, rest)
