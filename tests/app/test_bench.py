"""A tiny run of every benchmark, end to end: the benchmarks must keep working as the code
changes. Nothing here judges speed (that is bench/'s job, on a quiet machine)."""

from __future__ import annotations

import math

import pytest

from bench import cpu, prompts
from bench.__main__ import markdown, quick
from tests.conftest import PG_URL

pytestmark = pytest.mark.skipif(not PG_URL, reason="the benchmarks run on PostgreSQL: "
                                                    "set TEST_DATABASE_URL")


@pytest.fixture(scope="module")
def reports():  # noqa: ANN201
    return {name: run() for name, run in quick().items()}


def figures(report) -> dict[tuple[str, str], float]:  # noqa: ANN001
    return {(row.case, row.figure): row.value for row in report.rows}


def test_every_figure_is_measured(reports) -> None:  # noqa: ANN001
    for report in reports.values():
        assert report.rows, report.name
        assert all(math.isfinite(row.value) for row in report.rows), report.name


def test_ack_drives_both_apps_with_no_failures(reports) -> None:  # noqa: ANN001
    rows = figures(reports["ack"])
    throughputs = {key: value for key, value in rows.items() if key[1].endswith("requests/s")}
    # Four kinds of click; the bare app, ours sending its messages, ours handing them over.
    assert len(throughputs) == 12
    assert all(value > 0 for value in throughputs.values())
    failed = [value for key, value in rows.items() if key[1].endswith("failed or non-200")]
    assert len(failed) == 8 and not any(failed)
    assert rows[("all loads", "errors in our servers' and clock's logs")] == 0
    # Where the processors went, per request, for each load: our server, the clock that sends
    # what it handed over, PostgreSQL, Slack.
    spent = {key[1] for key in rows if key[1].endswith("CPU per request")}
    assert spent == {"bare Bolt: server CPU per request"} | {
        f"ours, {who} sends: {group} CPU per request" for who in ("web", "clock")
        for group in ("server", "clock", "PostgreSQL", "Slack stand-in")}
    # An Accept records its messages in the outbox whichever process sends them.
    recorded = [value for key, value in rows.items()
                if key[1].endswith("outbox messages per request")]
    assert len(recorded) == 2 and all(value > 0 for value in recorded)


def test_cpu_is_counted_per_group_over_the_window_only() -> None:
    before = {1: ("server", 10.0), 2: ("server", 5.0), 3: ("PostgreSQL", 1.0)}
    after = {1: ("server", 10.5), 2: ("server", 5.25), 3: ("PostgreSQL", 1.0),
             4: ("load generator", 3.0)}  # started in between: its start-up is not the load's
    assert cpu.spent(before, after) == {"server": 0.75, "PostgreSQL": 0.0}


def test_prompt_burst_counts_every_answer_once_double_clicks_included(reports) -> None:  # noqa: ANN001
    rows = {figure: value for (_case, figure), value in figures(reports["prompts"]).items()}
    people = rows["distinct people who answered"]
    assert people == prompts.TINY.answers
    assert rows["answer clicks sent"] > people, "some people clicked twice"
    assert rows["answers stored"] == people
    assert rows["answers counted wrongly"] == rows["stored answer not the last one sent"] == 0
    assert rows["failed or non-200"] == rows["clicks without a private confirmation"] == 0
    assert rows["errors in the server's and clock's logs"] == 0


def test_paths_are_timed_against_their_floor_both_ways(reports) -> None:  # noqa: ANN001
    rows = figures(reports["paths"])
    ratios = {case: value for (case, figure), value in rows.items()
              if figure == "median / floor"}
    assert len(ratios) == 4, "two paths, each sent by the web and handed to the clock"
    # Nothing is posted before its round trips could have happened.
    assert all(value >= 1 for value in ratios.values())


def test_fanout_times_the_whole_wave(reports) -> None:  # noqa: ANN001
    rows = figures(reports["fanout"])
    first = next(v for k, v in rows.items() if k[1] == "first offer posted (median)")
    wave = next(v for k, v in rows.items() if k[1] == "whole wave posted (median)")
    assert 0 < first <= wave


def test_duework_sends_everything_on_both_databases(reports) -> None:  # noqa: ANN001
    rates = {k[0]: v for k, v in figures(reports["duework"]).items() if k[1] == "sent per second"}
    assert set(rates) == {"40 due check-ins, postgresql", "40 due check-ins, sqlite"}
    assert all(rate > 0 for rate in rates.values())


def test_insights_come_with_their_query_plans(reports) -> None:  # noqa: ANN001
    notes = "\n".join(reports["insights"].notes)
    assert notes.count("#### Query plans") == 3
    assert "GROUPING SETS" in notes and "percentile_disc" in notes and "Execution Time" in notes


def test_the_report_is_a_table_of_every_row(reports) -> None:  # noqa: ANN001
    text = markdown(list(reports.values()), "python -m bench --quick", 1.0)
    rows = sum(len(report.rows) for report in reports.values())
    assert text.count("\n| ") == rows + 1  # the header, then one line a row
    assert "## Machine" in text and "CPUs" in text
