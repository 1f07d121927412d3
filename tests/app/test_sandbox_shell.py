"""`python -m bot sandbox`: a person acts as anyone from the terminal; bad input changes nothing."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from bot.sandbox import demo
from bot.sandbox.shell import SandboxShell, parse_duration
from bot.sandbox.spec import WebApiSpec
from bot.sandbox.world import SandboxError, World

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture
def shell(slack_spec: WebApiSpec | None) -> Iterator[tuple[SandboxShell, io.StringIO]]:
    out = io.StringIO()
    with World(spec=slack_spec) as world:
        yield SandboxShell(world, stdin=io.StringIO(), stdout=out), out
        assert not world.fake.violations


def run(shell: SandboxShell, out: io.StringIO, *lines: str) -> str:
    out.seek(0)
    out.truncate()
    for line in lines:
        shell.onecmd(line)
    return out.getvalue()


def test_a_request_is_accepted_by_label_and_read_in_the_dms(shell) -> None:  # noqa: ANN001
    sh, out = shell
    text = run(sh, out, "as alex", "/peersupport", "fill How soon = Today",
               'fill "Check-ins" I\'d welcome a few check-ins over the next weeks', "form")
    assert "You are now Alex Rivera." in text and "(*) Today" in text and "[x] I'd welcome" in text
    text = run(sh, out, "submit")
    assert "+-- Dana Okafor · DM with the bot" in text and "[ Accept ]  [ Decline ]" in text
    text = run(sh, out, "as Dana Okafor", "click Accept", "dms")
    assert "(clicked in DM with the bot)" in text
    assert "You accepted this request. Your introduction is in a group message." in text
    assert "--- group DM with Alex Rivera and the bot ---" in text
    assert "Hello @Alex Rivera: @Dana Okafor is a trained peer supporter" in text
    text = run(sh, out, "home")
    assert "[ Close ]" in text or "Close the conversation" in text


def test_bad_input_gets_a_clear_message_and_changes_nothing(shell) -> None:  # noqa: ANN001
    sh, out = shell
    run(sh, out, "/peersupport")
    world = sh.world
    calls = len(world.fake.calls)
    text = run(sh, out, "frobnicate now", "click Nonexistent", "as nobody", "fill Mood = great",
               "fill How soon = Tomorrow", "advance soon", "channel #nowhere")
    assert "! unknown command 'frobnicate'; type help for the list" in text
    assert "! Alex Rivera sees no button labelled 'Nonexistent'; buttons they can see:" in text
    assert "! no such user 'nobody'; `users` lists everyone" in text
    assert ("! no field labelled 'Mood' in this form; its fields: \"Who is the support for?\", "
            "\"How soon") in text
    assert "! 'Tomorrow' is not one of the choices: As soon as possible | Today | This week" in text
    assert "! 'soon' is not a duration" in text and "! no such channel '#nowhere'" in text
    assert sh.prompt == "(Alex Rivera, Mon 09:00 EST) > "
    assert len(world.fake.calls) == calls and world.news() == []
    assert "(*) As soon as possible" in world.form_text("UCLIN00001"), "the form is unchanged"


def test_durations() -> None:
    assert parse_duration("1d12h").total_seconds() == 36 * 3600
    assert parse_duration("90s").total_seconds() == 90
    with pytest.raises(SandboxError):
        parse_duration("1x")


def test_python_m_bot_sandbox_reads_commands_from_stdin(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PEERSUPPORT_"))}
    script = "users\nas morgan\n/peersupport help\nadvance 1h\nquit\n"
    result = subprocess.run([sys.executable, "-m", "bot", "sandbox"], input=script, cwd=tmp_path,
                            env={**env, "PYTHONPATH": str(ROOT)}, capture_output=True, text=True,
                            timeout=60)
    assert result.returncode == 0, result.stderr
    assert "ULEAD00001  Morgan Chen" in result.stdout
    assert "(Morgan Chen, Mon 09:00 EST) > " in result.stdout
    assert "/peersupport pulse" in result.stdout
    assert "(it is now Mon 02 Mar 2026 10:00 EST for Morgan Chen;" in result.stdout
    assert "(Morgan Chen, Mon 10:00 EST) > " in result.stdout, "the prompt follows the clock"


def test_a_forms_own_buttons_are_clicked_by_their_labels(shell) -> None:  # noqa: ANN001
    sh, out = shell
    text = run(sh, out, "as alex", "/peersupport", "click Ask for support")
    assert "(form sent)" in text and "sees no button" not in text
    assert "+-- Dana Okafor · DM with the bot" in text and "[ Accept ]" in text
    assert sh.world.fake.open_modal("UCLIN00001") is None
    text = run(sh, out, "as morgan", "/peersupport pulse", "click cancel")
    assert "(form closed)" in text and sh.world.fake.open_modal("ULEAD00001") is None


def test_a_form_sent_by_its_label_shows_each_error_on_its_field(shell) -> None:  # noqa: ANN001
    sh, out = shell
    text = run(sh, out, "as morgan", "/peersupport pulse", "click Post")
    assert "! the form was not sent: channel: Choose the channel to post in." in text
    assert sh.world.fake.open_modal("ULEAD00001") is not None, "the form stays open"


def test_a_single_checkbox_takes_yes_or_no(shell) -> None:  # noqa: ANN001
    sh, out = shell
    for yes in ("yes", "True", "on"):
        text = run(sh, out, "/peersupport" if yes == "yes" else "form",
                   f"fill Check-ins = {yes}", "form")
        assert "(filled 'Check-ins')" in text and "[x] I'd welcome" in text, text
        text = run(sh, out, "fill Check-ins = no", "form")
        assert "[ ] I'd welcome" in text
    text = run(sh, out, "fill How soon = yes")
    assert "! 'yes' is not one of the choices" in text, "yes is only for a single checkbox"


def test_the_prompt_and_advance_show_the_acting_persons_time(shell) -> None:  # noqa: ANN001
    sh, out = shell
    assert sh.prompt == "(Alex Rivera, Mon 09:00 EST) > "
    text = run(sh, out, "as tom", "advance 90m")
    assert "(it is now Mon 02 Mar 2026 16:30 CET for Tom Becker;" in text
    assert sh.prompt == "(Tom Becker, Mon 16:30 CET) > "
    run(sh, out, "as priya")
    assert sh.prompt == "(Priya Shah, Mon 09:30 CST) > "


def test_the_demo_fails_without_the_web_api_spec(tmp_path: Path,
                                                  monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(demo, "load_default_spec", lambda: None)
    out = io.StringIO()
    assert demo.play(out, chart=tmp_path / "chart.png", quiet=True) == 1
    text = out.getvalue()
    assert "MISSING Slack calls not checked: the Web API spec is absent" in text
    assert "ok  Slack calls not checked" not in text


def test_the_demo_ends_with_a_command_that_works_from_a_fresh_clone(
        tmp_path: Path, slack_spec: WebApiSpec | None) -> None:
    out = io.StringIO()
    code = demo.play(out, chart=tmp_path / "chart.png", quiet=True)
    assert code == (0 if slack_spec is not None else 1), out.getvalue()
    assert "Try it yourself: ./run sandbox." in out.getvalue()
    assert (ROOT / "run").stat().st_mode & 0o111, "./run is executable"
