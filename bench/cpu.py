"""CPU time by process group, read from /proc: where a load's processor time went."""

from __future__ import annotations

import contextlib
import os
import threading
from collections.abc import Callable, Iterator
from pathlib import Path

TICK = os.sysconf("SC_CLK_TCK")


def _processes() -> Iterator[tuple[int, str, float]]:
    """(pid, command line, CPU seconds so far) of every process we may read."""
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        with contextlib.suppress(OSError, IndexError, ValueError):
            fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            command = (entry / "cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
            yield int(entry.name), command, (int(fields[11]) + int(fields[12])) / TICK


def snapshot(groups: dict[str, Callable[[int, str], bool]]) -> dict[int, tuple[str, float]]:
    """Each process some group claims (first match wins): its group and CPU seconds so far."""
    found = {}
    for pid, command, seconds in _processes():
        for name, belongs in groups.items():
            if belongs(pid, command):
                found[pid] = (name, seconds)
                break
    return found


def spent(before: dict[int, tuple[str, float]], after: dict[int, tuple[str, float]]
          ) -> dict[str, float]:
    """CPU seconds each group used between two snapshots, counting the processes in both (one
    started in between would bring its start-up, which is not the load's)."""
    totals: dict[str, float] = {}
    for pid, (name, seconds) in after.items():
        if pid in before:
            totals[name] = totals.get(name, 0.0) + seconds - before[pid][1]
    return totals


class Window:
    """Snapshots at two moments from now, taken on a timer while the caller is busy."""

    def __init__(self, groups: dict[str, Callable[[int, str], bool]], start: float,
                 length: float):
        self.groups, self.length = groups, max(length, 0.01)
        self.before: dict[int, tuple[str, float]] = {}
        self.after: dict[int, tuple[str, float]] = {}
        self._timers = [threading.Timer(start, self._first),
                        threading.Timer(start + length, self._second)]
        for timer in self._timers:
            timer.start()

    def _first(self) -> None:
        self.before = snapshot(self.groups)

    def _second(self) -> None:
        self.after = snapshot(self.groups)

    def cores(self) -> dict[str, float]:
        """Average processors each group kept busy during the window (0 if it did not end)."""
        for timer in self._timers:
            timer.join()
        if not self.after:
            return {}
        return {name: seconds / self.length for name, seconds in
                spent(self.before, self.after).items()}
