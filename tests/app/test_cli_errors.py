"""Every mistake on the command line or in a setting is one line on stderr and exit 2, run as the
real command would be: a fresh process with a clean environment."""

from __future__ import annotations

import os
import re
import socket
import subprocess
import sys
from collections.abc import Sequence
from importlib.metadata import version
from pathlib import Path

import pytest

from bot.cli import COMMANDS, main, program_name
from bot.roster import csv_import as roster_csv

ROOT = Path(__file__).resolve().parents[2]
# A log record from a running process (slack_sdk logs each failed attempt before giving up).
LOG_RECORD = re.compile(r"^\d{4}-\d\d-\d\d \d\d:\d\d:\d\d,\d+ [A-Z]+ ")


def clean_env(**env: str) -> dict[str, str]:
    """The caller's environment without any of the app's settings or proxies, plus `env`."""
    settings = ("SLACK_", "PEERSUPPORT_", "DATABASE_URL", "PORT", "LOG_LEVEL", "WEB_CONCURRENCY")
    clean = {k: v for k, v in os.environ.items()
             if not k.startswith(settings) and k.lower() not in ("https_proxy", "http_proxy",
                                                                 "all_proxy", "no_proxy")}
    return {**clean, "PYTHONPATH": str(ROOT), **env}


def run(tmp_path: Path, *args: str, command: Sequence[str] | None = None,
        **env: str) -> subprocess.CompletedProcess:
    return subprocess.run([*(command or [sys.executable, "-m", "bot"]), *args], cwd=tmp_path,
                          env=clean_env(**env), capture_output=True, text=True, timeout=60)


def one_line(result: subprocess.CompletedProcess) -> str:
    """The only line on stderr, after checking the exit code is 2 and there is no traceback."""
    assert result.returncode == 2, (result.returncode, result.stderr)
    assert "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert len(lines) == 1, result.stderr
    return lines[0]


@pytest.mark.parametrize(("args", "expected"), [
    (["demo", "--pace", "-1"], "argument --pace: must be a number of seconds from 0 to 60, got '-1'"),
    (["demo", "--pace", "soon"], "argument --pace: must be a number of seconds"),
    (["demo", "--chart", "/nonexistent/dir/x.png"],
     "argument --chart: the folder /nonexistent/dir does not exist"),
    (["demo", "--chart", "/tmp"], "argument --chart: /tmp is a folder; give a file name in it"),
])
def test_demo_options_are_checked_before_the_story_plays(
        tmp_path: Path, args: list[str], expected: str) -> None:
    result = run(tmp_path, *args)
    line = one_line(result)
    assert line.startswith("python -m bot demo: ") and expected in line
    assert line.endswith("see 'python -m bot demo --help'.")
    assert result.stdout == ""  # nothing of the demo was played


def test_roster_files_are_checked_before_the_database_is_touched(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'db.sqlite3'}"
    export = one_line(run(tmp_path, "roster", "export", "/nonexistent/x.csv", DATABASE_URL=db))
    assert export.startswith("python -m bot roster export: argument FILE: the folder "
                             "/nonexistent does not exist")
    folder = one_line(run(tmp_path, "roster", "export", str(tmp_path), DATABASE_URL=db))
    assert "is a folder" in folder
    missing = one_line(run(tmp_path, "roster", "import", "/nonexistent/x.csv", DATABASE_URL=db,
                           SLACK_BOT_TOKEN="xoxb-test"))
    assert missing.startswith("python -m bot roster import: argument FILE: /nonexistent/x.csv "
                              "does not exist")
    assert not (tmp_path / "db.sqlite3").exists()


def test_sqlite_file_in_a_missing_folder_is_one_line(tmp_path: Path) -> None:
    line = one_line(run(tmp_path, "migrate", DATABASE_URL="sqlite:////nonexistent/dir/x.db"))
    assert line == ("peersupport: DATABASE_URL points into the folder /nonexistent/dir, which does "
                    "not exist: create it, or use a path such as sqlite:///peersupport.sqlite3.")


@pytest.mark.parametrize("url", ["postgresql://postgres@127.0.0.1:5432",
                                 "postgresql://postgres@127.0.0.1:5432/",
                                 "postgres://user:secret@db.example.org"])
def test_postgresql_url_without_a_database_is_refused(tmp_path: Path, url: str) -> None:
    line = one_line(run(tmp_path, "migrate", DATABASE_URL=url))
    assert line.startswith("peersupport: DATABASE_URL names no database")
    assert "postgresql://user:password@host:5432/peersupport" in line
    assert "secret" not in line


def test_unreachable_slack_names_the_address_actually_used(tmp_path: Path) -> None:
    with socket.socket() as probe:  # a port nothing listens on: the proxy refuses at once
        probe.bind(("127.0.0.1", 0))
        closed = probe.getsockname()[1]
    result = run(tmp_path, "web", SLACK_BOT_TOKEN="xoxb-test", SLACK_SIGNING_SECRET="secret",
                 DATABASE_URL=f"sqlite:///{tmp_path / 'db.sqlite3'}",
                 HTTPS_PROXY=f"http://127.0.0.1:{closed}", LOG_LEVEL="WARNING")
    assert result.returncode == 2 and "Traceback" not in result.stderr
    own = [line for line in result.stderr.splitlines() if not LOG_RECORD.match(line)]
    assert len(own) == 1, result.stderr
    assert own[0].startswith("peersupport: could not reach Slack at https://slack.com/api/ (")
    assert "HTTPS_PROXY" in own[0] and "SLACK_API_URL" not in own[0]


def test_roster_import_lists_every_problem_of_every_line(tmp_path: Path) -> None:
    csv_file = tmp_path / "roster.csv"
    csv_file.write_text("user_id,department,role\n"
                        f"alice,{'x' * 81},wizard\n"
                        "U0AAA0001,ICU,nurse\n"
                        "U0AAA0001,ED,healer\n")
    result = run(tmp_path, "roster", "import", str(csv_file), SLACK_BOT_TOKEN="xoxb-test",
                 SLACK_API_URL="http://127.0.0.1:9/", DATABASE_URL=f"sqlite:///{tmp_path / 'db'}",
                 LOG_LEVEL="WARNING")
    assert result.returncode == 1 and "Traceback" not in result.stderr
    lines = result.stderr.splitlines()
    assert [line.split(" (")[0].split(";")[0] for line in lines[:-1]] == [
        f"{csv_file}:2: 'alice' is not a Slack user id",
        f"{csv_file}:2: a department name is at most 80 characters",
        f"{csv_file}:2: unknown role 'wizard'",
        f"{csv_file}:4: U0AAA0001 is already on line 3",
        f"{csv_file}:4: unknown role 'healer'",
    ]
    assert "fix the 5 problem(s)" in lines[-1]


def test_a_line_with_other_problems_still_claims_its_user_id() -> None:
    parsed = roster_csv.parse("user_id,department,role\nU0AAA0001,ICU,wizard\nU0AAA0001,ICU,nurse\n")
    assert [(p.line, p.message.split(";")[0]) for p in parsed.problems] == [
        (2, "unknown role 'wizard'"), (3, "U0AAA0001 is already on line 2")]
    assert parsed.rows == []


def test_version_is_the_installed_package_version(tmp_path: Path) -> None:
    result = run(tmp_path, "--version")
    assert result.returncode == 0, result.stderr
    assert result.stdout == f"peersupport {version('peersupport')}\n"


@pytest.mark.parametrize("name", list(COMMANDS))
def test_each_command_help_says_what_it_does_needs_and_returns(
        name: str, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as stopped:
        main([name, "--help"])
    assert stopped.value.code == 0
    text = " ".join(capsys.readouterr().out.split())
    assert COMMANDS[name].summary[1:] in text
    assert f"settings: {' '.join(COMMANDS[name].settings.split())}" in text
    assert "exit codes: " in text and " 2 " in text


@pytest.mark.parametrize("action", ["import", "export"])
def test_roster_actions_have_their_own_help(action: str, capsys: pytest.CaptureFixture[str]
                                            ) -> None:
    with pytest.raises(SystemExit):
        main(["roster", action, "--help"])
    text = " ".join(capsys.readouterr().out.split())
    assert "settings: DATABASE_URL" in text and "exit codes: 0" in text


def test_the_program_is_named_as_it_was_started(tmp_path: Path) -> None:
    assert program_name("/work/main/bot/__main__.py") == "python -m bot"
    assert program_name("/usr/local/bin/peersupport") == "peersupport"
    module = one_line(run(tmp_path, "frobnicate"))
    assert module.startswith("python -m bot: argument COMMAND: invalid choice: 'frobnicate'")
    script = Path(sys.executable).parent / "peersupport"
    if not script.exists():
        pytest.skip("the peersupport console script is not installed in this environment")
    entry = one_line(run(tmp_path, "frobnicate", command=[sys.executable, str(script)]))
    assert entry.startswith("peersupport: argument COMMAND: invalid choice: 'frobnicate'")
    assert entry.endswith("see 'peersupport --help'.")
    usage = run(tmp_path, "demo", "--help", command=[sys.executable, str(script)]).stdout
    assert usage.startswith("usage: peersupport demo ")
