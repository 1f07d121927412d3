"""`python -m bench`: run every benchmark (or those named), print a table, write BENCHMARKS.md."""

from __future__ import annotations

import argparse
import json
import sys
import time
from collections.abc import Callable, Sequence
from datetime import UTC, datetime
from pathlib import Path

from bench import ack, duework, fanout, insights, paths, prompts
from bench.common import Report, Row, machine

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "bench" / "results"  # the latest full-size report of each benchmark


def _full() -> dict[str, Callable[[], Report]]:
    return {"ack": ack.run, "prompts": prompts.run, "paths": paths.run, "fanout": fanout.run,
            "duework": duework.run, "insights": insights.run}


def quick() -> dict[str, Callable[[], Report]]:
    """Tiny sizes: every benchmark runs end to end in seconds (the test suite's smoke run)."""
    return {
        "ack": lambda: ack.run(ack.Settings(clients=(4,), seconds=0.5, warmup=0.2,
                                            supporters=20, seeds_per_run=200)),
        "prompts": lambda: prompts.run(prompts.TINY),
        "paths": lambda: paths.run(paths.Settings(latency=0.02, supporters=10, wave=3,
                                                  requests=2)),
        "fanout": lambda: fanout.run(fanout.Settings(supporters=30, wave=10, latency=0.01,
                                                     requests=1)),
        "duework": lambda: duework.run(duework.Settings(checkins=40)),
        "insights": lambda: insights.run(insights.Settings(
            requests=500, answers=5_000, answers_per_run=100, runs_per_prompt=5, repeats=1)),
    }


def table(rows: Sequence[Row]) -> str:
    """The rows as a Markdown table."""
    lines = ["| benchmark | case | figure | measured | target | met |",
             "|---|---|---|---:|---|---|"]
    for row in rows:
        met = "" if row.met is None else ("yes" if row.met else "**no**")
        lines.append(f"| {row.benchmark} | {row.case} | {row.figure} | {row.shown()} | "
                     f"{row.target} | {met} |")
    return "\n".join(lines)


def markdown(reports: Sequence[Report], command: str, seconds: float) -> str:
    """BENCHMARKS.md: the machine, the commands, the table, then each benchmark's notes."""
    rows = [row for report in reports for row in report.rows]
    measured = [f"- `{r.name}`: {r.measured}" for r in reports if r.measured]
    parts = [
        "# Benchmarks", "",
        f"Written by `{command}` ({seconds / 60:.0f} min) from the latest full-size run of each "
        "benchmark, kept in `bench/results/`; rerun `python -m bench` (or name some benchmarks) "
        "to update it.", "", *measured, "",
        "## Machine", "", *[f"- {line}" for line in machine()], "",
        "## Results", "", table(rows), "",
    ]
    for report in reports:
        if report.notes:
            parts += [f"## {report.name}", "", *[note + "\n" for note in report.notes]]
    return "\n".join(parts).rstrip() + "\n"


def saved(names: Sequence[str]) -> list[Report]:
    """The latest saved report of each benchmark that has one, in the given order."""
    found = []
    for name in names:
        path = RESULTS / f"{name}.json"
        if path.exists():
            found.append(Report.from_json(json.loads(path.read_text())))
    return found


def main(argv: Sequence[str] | None = None) -> int:
    """Run the chosen benchmarks; exit 1 if any target was missed."""
    parser = argparse.ArgumentParser(prog="python -m bench", description=__doc__)
    parser.add_argument("names", nargs="*", metavar="NAME",
                        help=f"benchmarks to run: {', '.join(_full())} (default: all)")
    parser.add_argument("--quick", action="store_true",
                        help="tiny sizes, to check the benchmarks themselves work")
    parser.add_argument("--output", default=str(ROOT / "BENCHMARKS.md"),
                        help="where to write the report ('-' for nowhere)")
    args = parser.parse_args(argv)
    chosen = quick() if args.quick else _full()
    names = args.names or list(chosen)
    started = time.monotonic()
    reports = []
    for name in names:
        print(f"bench: {name} ...", file=sys.stderr, flush=True)
        began = time.monotonic()
        reports.append(chosen[name]())
        print(f"bench: {name} took {time.monotonic() - began:.0f} s", file=sys.stderr, flush=True)
    rows = [row for report in reports for row in report.rows]
    print(table(rows))
    command = "python -m bench" + (" --quick" if args.quick else "") + \
        "".join(f" {name}" for name in args.names)
    if not args.quick:
        # Full-size figures are kept, so rerunning one benchmark keeps the others' figures.
        RESULTS.mkdir(exist_ok=True)
        stamp = f"{datetime.now(UTC):%Y-%m-%d %H:%M} UTC, `{command}`"
        for report in reports:
            report.measured = stamp
            (RESULTS / f"{report.name}.json").write_text(json.dumps(report.to_json(), indent=1))
        reports = saved(list(_full()))
    if args.output != "-":
        Path(args.output).write_text(markdown(reports, command, time.monotonic() - started))
        print(f"bench: wrote {args.output}", file=sys.stderr)
    return 1 if any(row.met is False for row in rows) else 0


if __name__ == "__main__":
    sys.exit(main())
