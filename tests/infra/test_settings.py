"""Settings: built once from the environment and .env, validated with one clear line per problem."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from pathlib import Path

import pytest

from bot.infra.settings import DEFAULT_DATABASE_URL, DEFAULT_SLACK_API_URL, Settings, SettingsError

ROOT = Path(__file__).resolve().parents[2]


def test_defaults_need_nothing() -> None:
    settings = Settings.from_mapping({})
    assert settings.database_url == DEFAULT_DATABASE_URL
    assert settings.slack_api_url == DEFAULT_SLACK_API_URL
    assert settings.port == 3000
    assert settings.coordinators == ()
    assert settings.socket_mode is False


def test_values_are_read_and_normalised() -> None:
    settings = Settings.from_mapping({
        "SLACK_BOT_TOKEN": "xoxb-1", "SLACK_APP_TOKEN": "xapp-1", "PORT": "8080",
        "SLACK_API_URL": "http://127.0.0.1:9000/api",
        "DATABASE_URL": "postgres://u:p@db:5432/peers",
        "PEERSUPPORT_COORDINATORS": " U012ABCDEF, W0ENTERPRISE1 ,",
        "PEERSUPPORT_TICK_SECONDS": "2.5",
    })
    assert settings.slack_api_url == "http://127.0.0.1:9000/api/"
    assert settings.database_url == "postgresql+psycopg://u:p@db:5432/peers"
    assert settings.coordinators == ("U012ABCDEF", "W0ENTERPRISE1")
    assert settings.port == 8080 and settings.tick_seconds == 2.5
    assert settings.socket_mode is True


def test_dotenv_is_read_and_the_environment_wins(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("SLACK_BOT_TOKEN=xoxb-from-file\nPORT=4000\n")
    settings = Settings.from_env({"PORT": "5000"}, dotenv)
    assert settings.slack_bot_token == "xoxb-from-file"
    assert settings.port == 5000


def test_reading_settings_changes_no_process_state(tmp_path: Path) -> None:
    dotenv = tmp_path / ".env"
    dotenv.write_text("PEERSUPPORT_SETTINGS_PROBE=1\n")
    Settings.from_env({}, dotenv)
    assert "PEERSUPPORT_SETTINGS_PROBE" not in os.environ


@pytest.mark.parametrize(("values", "names"), [
    ({"SLACK_BOT_TOKEN": "xoxp-user-token"}, "SLACK_BOT_TOKEN"),
    ({"SLACK_APP_TOKEN": "xoxb-wrong"}, "SLACK_APP_TOKEN"),
    ({"PORT": "eighty"}, "PORT"),
    ({"PORT": "70000"}, "PORT"),
    ({"DATABASE_URL": "mysql://x"}, "DATABASE_URL"),
    ({"SLACK_API_URL": "slack.com/api"}, "SLACK_API_URL"),
    ({"PEERSUPPORT_COORDINATORS": "alice,U012ABCDEF"}, "PEERSUPPORT_COORDINATORS"),
    ({"PEERSUPPORT_TICK_SECONDS": "0"}, "PEERSUPPORT_TICK_SECONDS"),
    ({"LOG_LEVEL": "chatty"}, "LOG_LEVEL"),
    ({"PEERSUPPORT_CONTENT_DIR": "/no/such/folder"}, "PEERSUPPORT_CONTENT_DIR"),
    ({"PEERSUPPORT_TICK_SECONDS": "600"}, "PEERSUPPORT_TICK_SECONDS"),
    ({"PEERSUPPORT_CLOCK_NICE": "-5"}, "PEERSUPPORT_CLOCK_NICE"),
    ({"PEERSUPPORT_CLOCK_NICE": "20"}, "PEERSUPPORT_CLOCK_NICE"),
    ({"PEERSUPPORT_OFFER_TIMEOUT": "soon=5"}, "PEERSUPPORT_OFFER_TIMEOUT"),
    ({"PEERSUPPORT_CHECKIN_DAYS": "1,x"}, "PEERSUPPORT_CHECKIN_DAYS"),
    ({"PEERSUPPORT_ALERT_ON_STRUGGLING": "maybe"}, "PEERSUPPORT_ALERT_ON_STRUGGLING"),
    ({"PEERSUPPORT_TIMEZONE": "Mars/Olympus"}, "PEERSUPPORT_TIMEZONE"),
    ({"PEERSUPPORT_COORDINATOR_GROUP": "coordinators"}, "PEERSUPPORT_COORDINATOR_GROUP"),
])
def test_invalid_values_name_the_variable_in_one_line(values: dict, names: str) -> None:
    with pytest.raises(SettingsError) as error:
        Settings.from_mapping(values)
    message = str(error.value)
    assert message.startswith(names) and "\n" not in message


def test_each_process_checks_the_credentials_it_needs() -> None:
    with pytest.raises(SettingsError, match="^SLACK_BOT_TOKEN is not set.*api.slack.com/apps"):
        Settings.from_mapping({}).require_slack(transport="http")
    with pytest.raises(SettingsError, match="^SLACK_SIGNING_SECRET"):
        Settings.from_mapping({"SLACK_BOT_TOKEN": "xoxb-1"}).require_slack(transport="http")
    with pytest.raises(SettingsError, match="^SLACK_APP_TOKEN"):
        Settings.from_mapping({"SLACK_BOT_TOKEN": "xoxb-1"}).require_slack(transport="socket")
    Settings.from_mapping({"SLACK_BOT_TOKEN": "xoxb-1"}).require_slack(transport="clock")


def run_cli(tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess:
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(("SLACK_", "PEERSUPPORT_", "DATABASE_URL", "PORT"))}
    return subprocess.run([sys.executable, "-m", "bot", *args], cwd=tmp_path, env={**clean, **env},
                          capture_output=True, text=True, timeout=60)


def test_the_bare_command_without_tokens_plays_the_demo(tmp_path: Path) -> None:
    result = run_cli(tmp_path, PYTHONPATH=str(ROOT))
    assert result.returncode == 0, result.stderr
    first = result.stdout.splitlines()[0]
    assert first.startswith("peersupport: no Slack tokens are set") and "README.md" in first
    assert "Create the Slack app" in first
    assert "ok  request closed, accepted by Dana Okafor" in result.stdout


@pytest.mark.parametrize(("args", "env"), [
    (["web"], {}), (["clock"], {}), (["socket"], {}), (["run"], {}),
    ([], {"SLACK_SIGNING_SECRET": "a-signing-secret"}),  # some Slack settings, not all: an error
])
def test_without_tokens_a_named_process_says_what_is_missing_and_exits_2(
        tmp_path: Path, args: list[str], env: dict[str, str]) -> None:
    result = run_cli(tmp_path, *args, PYTHONPATH=str(ROOT), **env)
    assert result.returncode == 2 and result.stdout == ""
    lines = result.stderr.strip().splitlines()
    assert len(lines) == 1 and "Traceback" not in result.stderr
    assert "SLACK_BOT_TOKEN" in lines[0] and "api.slack.com/apps" in lines[0]


def test_invalid_setting_stops_start_up_with_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", PYTHONPATH=str(ROOT), PORT="nope")
    assert result.returncode == 2
    assert re.fullmatch(r"peersupport: PORT must be a whole number.*\n", result.stderr)


def test_migrate_command_creates_the_database(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", PYTHONPATH=str(ROOT),
                     DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}")
    assert result.returncode == 0, result.stderr
    assert (tmp_path / "db.sqlite3").exists()


def test_unreachable_database_is_one_line(tmp_path: Path) -> None:
    result = run_cli(tmp_path, "migrate", PYTHONPATH=str(ROOT),
                     DATABASE_URL="postgresql://nobody@127.0.0.1:1/none")
    assert result.returncode == 2
    assert result.stderr.startswith("peersupport: DATABASE_URL could not be used")
    assert "Traceback" not in result.stderr


def test_every_setting_is_documented_in_env_example_and_the_settings_reference() -> None:
    names = {field.alias for field in Settings.model_fields.values()}
    assert {"SLACK_BOT_TOKEN", "DATABASE_URL", "PEERSUPPORT_CONTENT_DIR"} <= names
    example = (ROOT / ".env.example").read_text()
    reference = (ROOT / "docs" / "operations.md").read_text()
    assert sorted(n for n in names if n not in example) == []
    assert sorted(n for n in names if f"| `{n}` |" not in reference) == []
