"""The prompt chart reads right: a fixed scale, answers per run as stacked bars with their count,
departments side by side, and hidden runs marked as hidden rather than missing."""

from __future__ import annotations

from datetime import UTC, datetime, timedelta

import pytest

from bot.infra.models import Pulse
from bot.pulses.charts import (
    SHARE_LIMITS,
    Bar,
    Distribution,
    Panel,
    describe,
    distribution_chart,
    distribution_figure,
    prompt_distribution,
    series_figure,
)
from bot.pulses.service import FIVE_POINT, PulseResults, RunResult

K = 5
LABELS = ["Exhausted", "Tired", "So-so", "Rested", "Well rested"]
START = datetime(2026, 3, 2, 9, 0, tzinfo=UTC)


def prompt(department: str, *, options: list[str] | None = None, scale: str = "five_point",
           pulse_id: int = 1) -> Pulse:
    return Pulse(id=pulse_id, leader_id="ULEAD00001", question="How rested have you felt?",
                 scale=scale, options=options or LABELS, channel_id="C0ICU0001",
                 department=department, recurrence="weekly", weekday=0, minute=540, tz="UTC",
                 open_hours=72, active=True, created_at=START)


def run(week: int, counts: tuple[int, ...] | None) -> RunResult:
    """A run as the aggregates give it: counts None where fewer than K answered."""
    if counts is None:
        return RunResult(week, START + timedelta(weeks=week), None, None, None)
    total = sum(counts)
    mean = sum((i + 1) * n for i, n in enumerate(counts)) / total
    return RunResult(week, START + timedelta(weeks=week), total, counts, mean)


def fixture_results() -> list[PulseResults]:
    """Two departments asked the same question weekly; one week in the ED had too few answers."""
    icu = PulseResults(prompt("ICU", pulse_id=2), runs=[
        run(0, (1, 2, 3, 2, 0)), run(1, (0, 2, 4, 3, 1)), run(2, (0, 1, 3, 5, 3)),
        run(3, (2, 3, 4, 2, 1))], departments={"ICU": 12, "ED": None})
    ed = PulseResults(prompt("ED", pulse_id=1), runs=[
        run(0, (3, 2, 1, 0, 0)), run(1, None), run(2, (1, 1, 2, 1, 0)), run(3, (0, 2, 2, 2, 1))],
        departments={"ICU": 12, "ED": None})
    return [icu, ed]


def chart_texts(figure) -> list[str]:  # noqa: ANN001
    return [text.get_text() for axes in figure.axes for text in axes.texts]


def test_the_y_axis_is_fixed_whatever_the_answers() -> None:
    lopsided = Distribution("Q", tuple(FIVE_POINT), True, (
        Panel("", (Bar("02 Mar", (0, 0, 6, 1, 0), 3.1),)),), K)
    for chart in (prompt_distribution(fixture_results(), K), lopsided):
        figure = distribution_figure(chart)
        shown = [axes for axes in figure.axes if axes.get_visible()]
        assert shown and all(axes.get_ylim() == SHARE_LIMITS for axes in shown)


def test_each_run_is_a_stacked_bar_of_the_scale_with_its_count_written_on_it() -> None:
    chart = prompt_distribution(fixture_results()[:1], K)
    assert chart.answers == ("1 Exhausted", "2 Tired", "3 So-so", "4 Rested", "5 Well rested")
    figure = distribution_figure(chart)
    (axes,) = figure.axes
    texts = chart_texts(figure)
    assert [t for t in texts if t.endswith("answers")] == [
        "8\nanswers", "10\nanswers", "12\nanswers", "12\nanswers"]
    # The first run: 1, 2, 3 and 2 answers stacked to 100%, none of "5 Well rested".
    first = sorted((p.get_y(), p.get_height()) for p in axes.patches if abs(p.get_x() + 0.35) < 1e-9)
    assert [round(height, 1) for _, height in first] == [12.5, 25.0, 37.5, 25.0]
    assert first[-1][0] + first[-1][1] == pytest.approx(100)
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend == ["5 Well rested", "4 Rested", "3 So-so", "2 Tired", "1 Exhausted"]
    assert [label.get_text() for label in axes.get_xticklabels()][0] == "02 Mar\navg 2.8"


def test_departments_are_small_multiples_and_a_hidden_run_says_so() -> None:
    figure = distribution_figure(prompt_distribution(fixture_results(), K))
    shown = [axes for axes in figure.axes if axes.get_visible()]
    assert [axes.get_title() for axes in shown] == ["ED", "ICU"]
    ed_texts = [text.get_text() for text in shown[0].texts]
    assert "hidden (fewer than 5)" in ed_texts
    assert [t for t in ed_texts if t.endswith("answers")] == [
        "6\nanswers", "5\nanswers", "7\nanswers"], "no count for the hidden week"
    legend = [text.get_text() for text in figure.legends[0].get_texts()]
    assert legend[-1] == "hidden (fewer than 5)"
    # The hidden week is still a bar in its place, between the weeks shown.
    assert [label.get_text().split("\n")[0] for label in shown[0].get_xticklabels()] == [
        "02 Mar", "09 Mar", "16 Mar", "23 Mar"]


def test_named_answers_keep_their_own_labels_and_order() -> None:
    options = ["Yes", "Not sure", "No"]
    result = PulseResults(prompt("", options=options, scale="options"), runs=[
        RunResult(1, START, 9, (5, 3, 1), None)])
    chart = prompt_distribution([result], K)
    assert chart.answers == tuple(options) and not chart.ordered
    figure = distribution_figure(chart)
    assert [t.get_text() for t in figure.legends[0].get_texts()] == options
    assert figure.axes[0].get_ylim() == SHARE_LIMITS
    assert "9\nanswers" in chart_texts(figure)


def test_only_the_suppressed_figures_reach_the_chart_and_its_alt_text() -> None:
    chart = prompt_distribution(fixture_results(), K)
    ed = chart.panels[0]
    assert ed.bars[1] == Bar("09 Mar", None, None)
    text = describe(chart)
    assert "ED: 02 Mar 6 answers, average 1.7" in text
    assert "09 Mar hidden (fewer than 5)" in text
    assert "ICU: 02 Mar 8 answers" in text and len(text) <= 1000


def test_no_closed_run_yet_is_said_not_drawn_as_empty_axes() -> None:
    chart = prompt_distribution([PulseResults(prompt(""))], K)
    assert "No closed run yet" in chart_texts(distribution_figure(chart))
    assert describe(chart).endswith("No closed run yet.")


def test_the_chart_is_the_same_bytes_every_time() -> None:
    first = distribution_chart(prompt_distribution(fixture_results(), K))
    assert first.startswith(b"\x89PNG\r\n\x1a\n")
    assert distribution_chart(prompt_distribution(fixture_results(), K)) == first


def test_the_chart_reaches_slack_with_its_alt_text(leader_server) -> None:  # noqa: ANN001
    from handlers.pulses.listeners import share_results
    from tests.conftest import LEADER

    share_results(leader_server.runtime, LEADER, fixture_results())
    fake = leader_server.slack.fake
    (upload,) = fake.wait_for("files.getUploadURLExternal",
                              lambda c: c.args.get("filename") == "prompt-results.png")
    alt = upload.args.get("alt_txt")
    assert alt == describe(prompt_distribution(fixture_results(), K))
    assert "09 Mar hidden (fewer than 5)" in alt
    png = next(f for f in fake.files.values() if f["filename"] == "prompt-results.png")
    assert png["content"] == distribution_chart(prompt_distribution(fixture_results(), K))


def test_requests_by_month_start_at_zero_with_counts_and_hidden_months_said() -> None:
    figure = series_figure("Requests by month", ["2026-01", "2026-02", "2026-03"],
                           [12.0, None, 9.0], ylabel="Requests", hidden="hidden")
    (axes,) = figure.axes
    assert axes.get_ylim()[0] == 0
    texts = [text.get_text() for text in axes.texts]
    assert "hidden" in texts
    assert [label.get_text() for label in axes.get_xticklabels()] == [
        "2026-01", "2026-02", "2026-03"], "the hidden month keeps its place"
    assert "12" in texts and "9" in texts, "each month's count is written on its bar"
