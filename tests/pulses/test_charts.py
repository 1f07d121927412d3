"""Charts drawn from several threads at once come out whole and the same as drawn alone."""

from __future__ import annotations

import subprocess
import sys
import threading

from bot.pulses.charts import series_chart

PNG = b"\x89PNG\r\n\x1a\n"
CHARTS = [
    ("Requests by month", ["2026-01", "2026-02", "2026-03", "2026-04"], [3, None, 5, 8], "bar"),
    ("How was your week?", ["w1", "w2", "w3", "w4", "w5"], [1.5, 2.5, None, 4.0, 3.25], "line"),
    ("Nothing yet", ["w1", "w2"], [None, None], "bar"),
    ("Staffing feels safe", ["Mon", "Tue", "Wed"], [0.2, 0.9, 0.55], "bar"),
    ("A title long enough to be cut at eighty characters so the chart keeps its layout, "
     "whatever the question", ["a", "b"], [1, 2], "line"),
    ("Answers", [f"day {n}" for n in range(14)], [n % 5 for n in range(14)], "bar"),
    ("Mood", ["one"], [4.0], "line"),
    ("Reached", ["ICU", "ED", "Wards"], [12, None, 30], "bar"),
]


def draw(index: int) -> bytes:
    title, labels, values, kind = CHARTS[index]
    return series_chart(title, labels, values, ylabel="Value", kind=kind)


def test_charts_drawn_at_once_from_threads_match_the_ones_drawn_alone() -> None:
    alone = [draw(index) for index in range(len(CHARTS))]
    assert all(image.startswith(PNG) and len(image) > 1000 for image in alone)
    assert len(set(alone)) == len(CHARTS)
    for _ in range(3):  # a few rounds: a race shows up as a changed or broken image
        together: list[bytes | None] = [None] * len(CHARTS)
        start = threading.Barrier(len(CHARTS))

        def run(index: int, results: list[bytes | None] = together,
                go: threading.Barrier = start) -> None:
            go.wait()
            results[index] = draw(index)

        threads = [threading.Thread(target=run, args=(index,)) for index in range(len(CHARTS))]
        for thread in threads:
            thread.start()
        for thread in threads:
            thread.join(timeout=60)
        assert together == alone


def test_a_chart_is_the_same_bytes_in_another_process() -> None:
    code = ("import sys; from tests.pulses.test_charts import draw; "
            "sys.stdout.buffer.write(draw(1))")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                           timeout=120)
    assert other.stdout == draw(1)


def test_importing_the_charts_module_does_not_load_matplotlib() -> None:
    code = ("import sys, bot.pulses.charts, handlers.pulses.listeners; "
            "print(any(name.startswith('matplotlib') for name in sys.modules))")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                            check=True, timeout=120)
    assert result.stdout.strip() == "False"


def draw_prompt() -> bytes:
    from bot.pulses.charts import distribution_chart, prompt_distribution
    from tests.pulses.test_chart_reading import K, fixture_results

    return distribution_chart(prompt_distribution(fixture_results(), K))


def test_a_prompt_chart_is_the_same_bytes_from_threads_and_in_another_process() -> None:
    alone = draw_prompt()
    together: list[bytes | None] = [None] * 4
    start = threading.Barrier(len(together))

    def run(index: int) -> None:
        start.wait()
        together[index] = draw_prompt()

    threads = [threading.Thread(target=run, args=(index,)) for index in range(len(together))]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join(timeout=60)
    assert together == [alone] * len(together)
    code = ("import sys; from tests.pulses.test_charts import draw_prompt; "
            "sys.stdout.buffer.write(draw_prompt())")
    other = subprocess.run([sys.executable, "-c", code], capture_output=True, check=True,
                           timeout=120)
    assert other.stdout == alone
