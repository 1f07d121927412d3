"""A tiny run of every benchmark, end to end: the benchmarks must keep working as the code
changes. Nothing here judges speed (that is bench/'s job, on a quiet machine)."""

from __future__ import annotations

import math

import pytest

from bench import cpu
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
    assert len(throughputs) == 6  # three kinds of request, ours and the bare app
    assert all(value > 0 for value in throughputs.values())
    assert all(value == 0 for key, value in rows.items() if key[1] == "ours: failed or non-200")
    # Where the processors went, per request, for each load: our server, PostgreSQL, Slack.
    spent = {key[1] for key in rows if key[1].endswith("CPU per request")}
    assert spent == {"bare Bolt: server CPU per request", "ours: server CPU per request",
                     "ours: PostgreSQL CPU per request", "ours: Slack stand-in CPU per request"}


def test_cpu_is_counted_per_group_over_the_window_only() -> None:
    before = {1: ("server", 10.0), 2: ("server", 5.0), 3: ("PostgreSQL", 1.0)}
    after = {1: ("server", 10.5), 2: ("server", 5.25), 3: ("PostgreSQL", 1.0),
             4: ("load generator", 3.0)}  # started in between: its start-up is not the load's
    assert cpu.spent(before, after) == {"server": 0.75, "PostgreSQL": 0.0}


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
