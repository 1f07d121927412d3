"""`python -m bot doctor`: each check passing, and failing the way a deployment breaks quietly,
with one line saying what to do, no secret printed, and the exit code saying whether all passed."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest
from alembic import command

from bot.app import doctor
from bot.app.doctor import Check
from bot.app.runtime import Runtime
from bot.cli import main
from bot.infra import health
from bot.infra.clock import ManualClock, SystemClock
from bot.infra.db import alembic_config, make_engine, make_sessions, migrate
from bot.infra.duework import schedule
from bot.infra.models import DueWork, WorkState
from bot.infra.outbox import MESSAGE
from bot.pulses import service as pulses
from bot.roster import supporters as roster
from bot.roster.supporters import SupporterSpec
from bot.sandbox.slack_api import FakeSlack
from tests.app.test_cli_errors import run
from tests.conftest import SIGNING_SECRET

COORDINATOR = "UCOORD0001"
SUPPORTER = "USUPP00001"
NAMES = ["token", "scopes", "database", "content", "prompt secret", "coordinators", "leaders",
         "roster", "clock", "outbox"]
PASSWORD = "s3cret-password"


def add_supporter(sessions: Any, user_id: str, now: datetime) -> None:
    with sessions.begin() as session:
        roster.upsert(session, [SupporterSpec(user_id, "ICU", "nurse")], now=now,
                      time_zones={}, default_case_cap=2, default_cooldown_hours=12)


@pytest.fixture
def healthy(runtime: Runtime, fake_slack: FakeSlack) -> Runtime:
    """A deployment where every check passes: an active coordinator and supporter, a clock
    that just ticked."""
    fake_slack.add_user(COORDINATOR)
    fake_slack.add_user(SUPPORTER)
    add_supporter(runtime.sessions, SUPPORTER, runtime.clock.now())
    beat(runtime)
    return runtime


def beat(runtime: Runtime) -> None:
    with runtime.sessions.begin() as session:
        health.beat(session, "clock-host:1", runtime.clock.now())


def examine(runtime: Runtime, **settings: Any) -> dict[str, Check]:
    checks = doctor.examine(runtime.settings.model_copy(update=settings), client=runtime.client,
                            engine=runtime.engine, clock=runtime.clock)
    assert [check.name for check in checks] == NAMES
    for check in checks:
        assert check.line.startswith("ok    " if check.ok else f"FAIL  {check.name}: ")
        assert "\n" not in check.line
    return {check.name: check for check in checks}


def failing(checks: dict[str, Check]) -> list[str]:
    return [name for name, check in checks.items() if not check.ok]


def test_a_healthy_deployment_passes_every_check(healthy: Runtime) -> None:
    checks = examine(healthy)
    assert failing(checks) == []
    lines = [check.line for check in checks.values()]
    assert lines[0] == "ok    token works (bot peersupport in Hospital)"
    assert lines[1] == f"ok    scopes: all {len(health.SLACK_SCOPES)} that manifest.yml asks for are granted"
    assert lines[2] == "ok    database reachable, at the newest migration (0012)"
    assert lines[4:] == [
        "ok    prompt secret: not needed (no wellbeing prompts)",
        "ok    coordinators: 1, each active in Slack",
        "ok    leaders: none configured",
        "ok    roster: 1 supporter, each active in Slack",
        "ok    clock ticked 0 s ago",
        "ok    outbox: Slack refused no message in the past day"]


def test_a_token_without_a_scope(healthy: Runtime, fake_slack: FakeSlack) -> None:
    fake_slack.granted_scopes -= {"channels:read", "groups:read"}
    checks = examine(healthy)
    assert failing(checks) == ["scopes"]
    assert checks["scopes"].line.startswith(
        "FAIL  scopes: missing channels:read, groups:read; add them to the app")
    assert "reinstall" in checks["scopes"].text


def test_a_refused_token_fails_and_the_slack_checks_say_they_did_not_run(
        healthy: Runtime, fake_slack: FakeSlack) -> None:
    fake_slack.fail("auth.test", "invalid_auth")
    checks = examine(healthy)
    assert failing(checks) == ["token", "scopes", "coordinators", "leaders", "roster"]
    assert checks["token"].text.startswith("Slack refused the app: invalid_auth; copy the Bot "
                                           "User OAuth Token again")
    assert checks["roster"].text == "not checked, since the token does not work"


def test_no_token_at_all(healthy: Runtime) -> None:
    checks = examine(healthy, slack_bot_token=None)
    assert checks["token"].text.startswith("SLACK_BOT_TOKEN is not set")
    assert failing(checks) == ["token", "scopes", "coordinators", "leaders", "roster"]


def test_a_database_one_migration_behind(healthy: Runtime) -> None:
    command.downgrade(alembic_config(healthy.engine), "0011")
    checks = examine(healthy)
    assert checks["database"].line == (
        "FAIL  database: at migration 0011, the newest is 0012; run 'python -m bot migrate' (if "
        "0011 is newer, this code is older than the database: deploy the new release)")
    assert failing(checks) == ["database", "prompt secret", "roster", "clock", "outbox"]
    assert checks["clock"].text == "not checked, since the database is not ready"
    migrate(healthy.engine)
    assert examine(healthy)["database"].ok


def test_a_database_that_does_not_answer(healthy: Runtime, tmp_path: Path) -> None:
    gone = make_engine(f"sqlite:///{tmp_path / 'missing' / 'x.sqlite3'}")
    checks = doctor.examine(healthy.settings, client=healthy.client, engine=gone,
                            clock=healthy.clock)
    database = next(check for check in checks if check.name == "database")
    assert database.line == ("FAIL  database: unable to open database file; check DATABASE_URL, "
                             "that the server runs, and the credentials")


def test_a_deactivated_coordinator(healthy: Runtime, fake_slack: FakeSlack) -> None:
    fake_slack.add_user(COORDINATOR, deleted=True)
    checks = examine(healthy)
    assert failing(checks) == ["coordinators"]
    assert checks["coordinators"].line == (
        "FAIL  coordinators: 1 cannot be reached in Slack: UCOORD0001 (deactivated); take them "
        "out of PEERSUPPORT_COORDINATORS, or reactivate them")


def test_leaders_and_group_members_are_checked_too(healthy: Runtime,
                                                   fake_slack: FakeSlack) -> None:
    fake_slack.add_usergroup("S0COORDS1", "coordinators", [COORDINATOR, "UGONE00001"])
    checks = examine(healthy, leaders=("ULEAD00009",), coordinator_group="S0COORDS1")
    assert failing(checks) == ["coordinators", "leaders"]
    assert "UGONE00001 (not in this workspace); take them out of PEERSUPPORT_COORDINATORS or " \
           "the user group" in checks["coordinators"].text
    assert "ULEAD00009 (not in this workspace)" in checks["leaders"].text


def test_no_coordinator_at_all(healthy: Runtime) -> None:
    checks = examine(healthy, coordinators=())
    assert failing(checks) == ["coordinators"]
    assert checks["coordinators"].text.startswith("none configured; set PEERSUPPORT_COORDINATORS")


def test_a_deactivated_supporter_on_the_roster(healthy: Runtime, fake_slack: FakeSlack) -> None:
    add_supporter(healthy.sessions, "USUPP00002", healthy.clock.now())
    fake_slack.add_user("USUPP00002", deleted=True)
    checks = examine(healthy)
    assert failing(checks) == ["roster"]
    assert checks["roster"].text.startswith("1 cannot be reached in Slack: USUPP00002 "
                                            "(deactivated); remove them")


def test_a_stale_heartbeat(healthy: Runtime, clock: ManualClock) -> None:
    clock.advance(timedelta(minutes=16))
    checks = examine(healthy)
    assert failing(checks) == ["clock"]
    assert checks["clock"].text.startswith(
        "last ticked 16 min ago (2026-03-02 14:00 UTC), more than the 15 min allowed")
    beat(healthy)
    assert examine(healthy)["clock"].line == "ok    clock ticked 0 s ago"


def test_a_clock_that_never_ticked(runtime: Runtime, fake_slack: FakeSlack) -> None:
    checks = examine(runtime)
    assert checks["clock"].text.startswith("no clock has ticked on this database; start "
                                           "'python -m bot clock'")


def test_prompts_without_their_secret(healthy: Runtime) -> None:
    with healthy.sessions.begin() as session:
        pulses.create(session, "ULEAD00001", pulses.PulseSpec(
            question="How rested do you feel?", scale="five_point",
            options=("1", "2", "3", "4", "5"), channel_id="C0PULSE001", department="",
            recurrence="once", weekday=0, minute=0, tz="UTC", open_hours=24),
            now=healthy.clock.now())
    assert examine(healthy, pulse_secret="p" * 40)["prompt secret"].ok
    checks = examine(healthy, pulse_secret=None)
    assert failing(checks) == ["prompt secret"]
    assert checks["prompt secret"].text.startswith("1 wellbeing prompt exists but "
                                                   "PEERSUPPORT_PULSE_SECRET is not set")


def test_messages_slack_keeps_refusing(healthy: Runtime, clock: ManualClock) -> None:
    now = clock.now()
    with healthy.sessions.begin() as session:
        schedule(session, MESSAGE, now, now=now - timedelta(hours=2), key="lost", payload={})
        schedule(session, MESSAGE, now, now=now - timedelta(hours=2), key="held", payload={})
        for item in session.query(DueWork).filter(DueWork.key.in_(["lost", "held"])):
            if item.key == "lost":
                item.state, item.finished_at = WorkState.FAILED, now - timedelta(hours=1)
            else:
                item.last_error = "slack: missing_scope"
    checks = examine(healthy)
    assert failing(checks) == ["outbox"]
    assert checks["outbox"].text.startswith(
        "Slack refused 1 message for good in the past day (the log says why for each); 1 more is "
        "held back because Slack refuses the app (missing_scope)")


def test_content_that_does_not_load(healthy: Runtime, tmp_path: Path) -> None:
    (tmp_path / "ours.yml").write_text("resources:\n  - id: 5\n    title: [1]\n")
    checks = examine(healthy, content_dir=tmp_path)
    assert failing(checks) == ["content"]
    assert checks["content"].text.startswith(f"{tmp_path / 'ours.yml'} line 2: 'id' is required")


# -- the command -------------------------------------------------------------------------------


def test_the_command_prints_one_line_per_check_and_exits_by_them(
        tmp_path: Path, fake_slack: FakeSlack) -> None:
    db_url = f"sqlite:///{tmp_path / 'doctor.sqlite3'}"
    engine = make_engine(db_url)
    migrate(engine)
    sessions = make_sessions(engine)
    now = SystemClock().now()
    add_supporter(sessions, SUPPORTER, now)
    with sessions.begin() as session:
        health.beat(session, "clock-host:1", now)
    engine.dispose()
    fake_slack.add_user(COORDINATOR)
    fake_slack.add_user(SUPPORTER)
    token = "xoxb-1234-secret-token"
    env = {"SLACK_BOT_TOKEN": token, "SLACK_SIGNING_SECRET": SIGNING_SECRET,
           "SLACK_API_URL": fake_slack.api_url, "DATABASE_URL": db_url,
           "PEERSUPPORT_COORDINATORS": COORDINATOR, "PEERSUPPORT_PULSE_SECRET": "q" * 40}

    passing = run(tmp_path, "doctor", **env)
    assert passing.returncode == 0, passing.stdout + passing.stderr
    lines = passing.stdout.splitlines()
    assert len(lines) == len(NAMES) and all(line.startswith("ok    ") for line in lines)
    assert passing.stderr == ""

    fake_slack.granted_scopes.discard("users:read")
    broken = run(tmp_path, "doctor", **{
        **env, "DATABASE_URL": f"postgresql://peersupport:{PASSWORD}@127.0.0.1:1/peersupport"})
    assert broken.returncode == 1, broken.stdout + broken.stderr
    failed = [line for line in broken.stdout.splitlines() if line.startswith("FAIL")]
    assert failed[0] == ("FAIL  scopes: missing users:read; add them to the app (update it from "
                         "manifest.yml at https://api.slack.com/apps, or add them under OAuth & "
                         "Permissions), then reinstall it to the workspace")
    assert failed[1].startswith("FAIL  database: connection failed")
    everything = broken.stdout + broken.stderr + passing.stdout
    for secret in (token, SIGNING_SECRET, PASSWORD, "q" * 40):
        assert secret not in everything
    assert "Traceback" not in broken.stderr


def test_the_command_is_in_the_list(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        main(["--help"])
    listing = " ".join(capsys.readouterr().out.split())
    assert "doctor check the Slack token and scopes" in listing


def test_an_invalid_setting_is_still_one_line_and_exit_2(tmp_path: Path) -> None:
    result = run(tmp_path, "doctor", SLACK_BOT_TOKEN="not-a-token")
    assert (result.returncode, result.stdout) == (2, "")
    assert result.stderr.startswith("peersupport: SLACK_BOT_TOKEN does not look like the Bot "
                                    "User OAuth Token")
    assert len(result.stderr.splitlines()) == 1 and "not-a-token" not in result.stderr
