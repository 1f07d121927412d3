"""`python -m bot demo`: the whole story in the sandbox, its outcomes, and the same output each run."""

from __future__ import annotations

import io
import os
import subprocess
import sys
from pathlib import Path

from bot.sandbox.demo import play

ROOT = Path(__file__).resolve().parents[2]


def run_demo(chart: Path) -> tuple[int, str]:
    out = io.StringIO()
    code = play(out, chart=chart)
    return code, out.getvalue().replace(str(chart), "CHART")


def test_the_story_happens_and_is_the_same_every_run(tmp_path: Path) -> None:
    code, first = run_demo(tmp_path / "first.png")
    assert code == 0, first
    outcomes = first[first.index("\nOutcomes:"):]
    assert "ok  request closed, accepted by Dana Okafor" in outcomes
    assert "ok  introduced in a group DM: Alex Rivera and Dana Okafor" in outcomes
    assert "ok  check-in answered: better" in outcomes
    assert "ok  prompt answered by 6 people" in outcomes
    assert "ok  team request assigned, supported by Dana Okafor and Tom Becker" in outcomes
    assert "ok  group conversation time picked: Thu 05 Mar 14:00 EST" in outcomes
    assert "ok  team members reached privately: 6" in outcomes
    assert "ok  asked for personal support from the note: 2 (a count only)" in outcomes
    assert "ok  check-in about the team sent to Robin Park" in outcomes
    assert "MISSING" not in outcomes
    chart = (tmp_path / "first.png").read_bytes()
    assert chart.startswith(b"\x89PNG\r\n\x1a\n") and len(chart) > 1000
    # What each person sees, as they see it: the offer's buttons, the introduction, the results.
    assert "[1/22]" in first and "[22/22]" in first
    assert "[ Accept ]  [ Decline ]" in first
    assert "+-- Alex Rivera · group DM with Dana Okafor and the bot" in first
    assert "+-- Alex Rivera · DM with the bot (updated)\n  | You answered *Doing better*" in first
    assert "6 answers · average 3.7" in first and "[file: prompt-results.png" in first
    # The team's story: one group DM for the caller and both supporters, times in each reader's
    # own zone, one private note to each of the six, and nobody told who asked to talk.
    assert "+-- Robin Park · group DM with Dana Okafor, Tom Becker and the bot" in first
    assert "the ICU team is at Thu 5 Mar 2026, 20:00 CET" in first  # Tom Becker, in Berlin
    assert "the ICU team is at Thu 5 Mar 2026, 14:00 EST" in first
    assert first.count("Your team, *ICU*, has been through something hard") == 6
    code, second = run_demo(tmp_path / "second.png")
    assert code == 0 and second == first
    assert (tmp_path / "second.png").read_bytes() == chart


def test_the_request_form_in_the_story_has_nowhere_to_type(tmp_path: Path) -> None:
    _, output = run_demo(tmp_path / "chart.png")
    form = output[output.index("== Peer support =="):output.index("[ Ask for support ]")]
    assert "[ ______ ]" not in form, "no free-text field in the request form"


def test_python_m_bot_demo_needs_no_settings(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("SLACK_", "PEERSUPPORT_"))}
    env.update(PYTHONPATH=str(ROOT), SLACK_BOT_TOKEN="xoxb-ignored", PORT="not a number")
    result = subprocess.run([sys.executable, "-m", "bot", "demo", "--quiet"], cwd=tmp_path,
                            env=env, capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "ok  results chart written to peersupport-demo-chart.png" in result.stdout
    assert "+--" not in result.stdout, "--quiet prints the steps and outcomes only"
    assert (tmp_path / "peersupport-demo-chart.png").read_bytes().startswith(b"\x89PNG")
