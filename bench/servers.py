"""Start the real app and the bare Bolt app as separate server processes, on free loopback ports."""

from __future__ import annotations

import contextlib
import http.client
import os
import socket
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO

from sqlalchemy import Engine, select

from bot.infra.models import ClockHeartbeat

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "bench-signing-secret"


_masters: dict[str, int] = {}  # each running server's URL and its process id


def server_pids(url: str) -> Callable[[], set[int]]:
    """A function giving the process ids serving `url` now: the server and its children (a
    gunicorn master and its workers)."""
    master = _masters[url]

    def pids() -> set[int]:
        found = {master}
        for entry in Path("/proc").iterdir():
            if entry.name.isdigit():
                with contextlib.suppress(OSError, IndexError, ValueError):
                    parent = int((entry / "stat").read_text().rsplit(")", 1)[1].split()[1])
                    if parent == master:
                        found.add(int(entry.name))
        return found

    return pids


def free_port() -> int:
    """A loopback port nobody is listening on right now."""
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return int(probe.getsockname()[1])


def _wait_until_listening(port: int, process: subprocess.Popen[bytes], timeout: float = 60) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"the server exited with {process.returncode} before listening")
        with contextlib.suppress(OSError):
            connection = http.client.HTTPConnection("127.0.0.1", port, timeout=2)
            connection.request("GET", "/healthz")
            connection.getresponse().read()
            connection.close()
            return
        time.sleep(0.1)
    raise RuntimeError(f"the server did not listen on port {port} within {timeout:.0f} s")


@contextlib.contextmanager
def server(module: str, args: list[str], env: dict[str, str],
           problems: list[str] | None = None) -> Iterator[str]:
    """Run `python -m module args` with `env` added; yield its Slack events URL; stop it after,
    adding each error its log showed to `problems`."""
    port = free_port()
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "PORT": str(port),
                "SLACK_SIGNING_SECRET": SIGNING_SECRET, **env}
    # The log goes to a file, not a pipe: a pipe nobody reads during the load would fill and
    # block the server's logging.
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", module, *args], env=full_env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=log)
    url = f"http://127.0.0.1:{port}/slack/events"
    _masters[url] = process.pid
    try:
        _wait_until_listening(port, process)
        yield url
    finally:
        _stop(process)
        _report(log, module, problems)


def _stop(process: subprocess.Popen[bytes]) -> None:
    """SIGTERM, as a supervisor stops it; SIGKILL if it has not stopped within 30 s."""
    if process.poll() is not None:
        return
    process.terminate()
    try:
        process.wait(timeout=30)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()


def clock_listening(engine: Engine) -> bool:
    """True once a clock on this database has said it listens (the `ready` check for clock)."""
    with engine.connect() as connection:
        return connection.scalar(select(ClockHeartbeat.listener_at)) is not None


def _report(log: IO[bytes], name: str, problems: list[str] | None) -> None:
    """Print the first error a server's log showed, add every error line to `problems`, and
    close the log."""
    log.seek(0)
    lines = log.read().decode(errors="replace").splitlines()
    log.close()
    errors = [n for n, line in enumerate(lines) if "Traceback" in line or "ERROR" in line]
    if errors:
        first = "\n    ".join(lines[errors[0]:errors[0] + 30])
        print(f"  {name}: {len(errors)} errors in its log; the first:\n    {first}",
              file=sys.stderr)
        if problems is not None:
            problems.extend(lines[n] for n in errors)


@contextlib.contextmanager
def clock(env: dict[str, str], problems: list[str] | None = None,
          ready: Callable[[], bool] | None = None) -> Iterator[subprocess.Popen[bytes]]:
    """Run `python -m bot clock` with `env` added until the block ends; wait until `ready()`
    says it is working (for example, listening) when given; add its log's errors to
    `problems`."""
    full_env = {**os.environ, "PYTHONPATH": str(ROOT), "SLACK_SIGNING_SECRET": SIGNING_SECRET,
                **env}
    log = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "bot", "clock"], env=full_env, cwd=ROOT,
                               stdout=subprocess.DEVNULL, stderr=log)
    try:
        deadline = time.monotonic() + 60
        while ready is not None and not ready():
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError("the clock did not start")
            time.sleep(0.1)
        yield process
    finally:
        _stop(process)
        _report(log, "clock", problems)
