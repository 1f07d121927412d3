"""What every benchmark shares: result rows, percentiles, scratch databases, the machine."""

from __future__ import annotations

import contextlib
import gc
import os
import platform
import tempfile
import uuid
from collections.abc import Iterator, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from sqlalchemy import Engine, text

from bot.infra import aggregate
from bot.infra.db import make_engine, migrate

DEFAULT_PG_URL = "postgresql://postgres@127.0.0.1:5432/test"


@dataclass
class Row:
    """One measured figure, with its target when the issue sets one."""

    benchmark: str
    case: str
    figure: str
    value: float
    unit: str
    target: str = ""
    met: bool | None = None

    def shown(self) -> str:
        number = f"{self.value:,.0f}" if abs(self.value) >= 100 else f"{self.value:,.2f}"
        return f"{number} {self.unit}".strip()


@dataclass
class Report:
    """What one benchmark measured: rows for the table, and notes (query plans, settings)."""

    name: str
    rows: list[Row] = field(default_factory=list)
    notes: list[str] = field(default_factory=list)
    measured: str = ""  # when and by which command, once saved

    def to_json(self) -> dict:
        """The report as plain data, to keep beside BENCHMARKS.md."""
        return {"name": self.name, "measured": self.measured, "notes": self.notes,
                "rows": [vars(row) for row in self.rows]}

    @classmethod
    def from_json(cls, data: dict) -> Report:
        """A report saved by to_json."""
        return cls(data["name"], [Row(**row) for row in data["rows"]], list(data["notes"]),
                   data.get("measured", ""))

    def add(self, case: str, figure: str, value: float, unit: str, *, target: float | None = None,
            below: bool = True) -> Row:
        """Record a figure; with a target, whether it was met (`below` or at least)."""
        shown_target, met = "", None
        if target is not None:
            shown_target = f"{'<' if below else '≥'} {target:g} {unit}".strip()
            met = value < target if below else value >= target
        row = Row(self.name, case, figure, value, unit, shown_target, met)
        self.rows.append(row)
        return row


def percentile(values: Sequence[float], share: float) -> float:
    """The nearest-rank percentile (share in 0..1) of `values`, as the app's own figures use it;
    0 when there are none."""
    return aggregate.percentile(list(values), share, 1) if values else 0.0


def pg_url() -> str:
    """The PostgreSQL server benchmarks use: BENCH_DATABASE_URL, TEST_DATABASE_URL or loopback."""
    url = os.environ.get("BENCH_DATABASE_URL") or os.environ.get("TEST_DATABASE_URL") \
        or DEFAULT_PG_URL
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix):]
    return url


@dataclass
class Scratch:
    """A migrated, empty database for one benchmark, and the URL other processes reach it by."""

    backend: str
    engine: Engine
    url: str


@contextlib.contextmanager
def scratch_database(backend: str, **engine_options: object) -> Iterator[Scratch]:
    """A fresh SQLite file in a temporary folder, or a fresh schema on PostgreSQL, dropped after."""
    if backend == "sqlite":
        with tempfile.TemporaryDirectory(prefix="peersupport-bench-") as folder:
            url = f"sqlite:///{Path(folder) / 'bench.sqlite3'}"
            engine = make_engine(url, **engine_options)
            migrate(engine)
            try:
                yield Scratch("sqlite", engine, url)
            finally:
                engine.dispose()
        return
    base = pg_url()
    schema = f"bench_{uuid.uuid4().hex[:10]}"
    admin = make_engine(base)
    with admin.begin() as connection:
        connection.execute(text(f'CREATE SCHEMA "{schema}"'))
    engine = make_engine(base, connect_args={"options": f"-csearch_path={schema}"}, **engine_options)
    try:
        migrate(engine)
        yield Scratch("postgresql", engine, f"{base}?options=-csearch_path%3D{schema}")
    finally:
        engine.dispose()
        with admin.begin() as connection:
            connection.execute(text(f'DROP SCHEMA "{schema}" CASCADE'))
        admin.dispose()


@contextlib.contextmanager
def stand_in_uncollected() -> Iterator[None]:
    """No garbage collection in this process while a load runs. The Slack stand-in runs here
    and keeps every call it is sent; a full collection walks all of them while its threads
    wait, stalling the app's Web API calls for hundreds of milliseconds, a stall of the
    measuring rig that real Slack does not add. Collected once the load is over."""
    gc.disable()
    try:
        yield
    finally:
        gc.enable()
        gc.collect()


def machine() -> list[str]:
    """A few lines describing where the numbers were taken."""
    cpu = platform.processor() or platform.machine()
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                cpu = line.split(":", 1)[1].strip()
                break
    memory = ""
    with contextlib.suppress(OSError, ValueError, IndexError):
        kib = int(Path("/proc/meminfo").read_text().split()[1])
        memory = f", {kib / 1024 / 1024:.0f} GiB memory"
    lines = [f"{os.cpu_count()} CPUs ({cpu}){memory}",
             f"{platform.system()} {platform.release()}, Python {platform.python_version()}"]
    with contextlib.suppress(Exception):
        engine = make_engine(pg_url())
        with engine.connect() as connection:
            lines.append(str(connection.execute(text("SELECT version()")).scalar()).split(",")[0])
        engine.dispose()
    return lines
