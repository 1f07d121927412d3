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
from collections.abc import Iterator
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SIGNING_SECRET = "bench-signing-secret"


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
    try:
        _wait_until_listening(port, process)
        yield f"http://127.0.0.1:{port}/slack/events"
    finally:
        process.terminate()
        try:
            process.wait(timeout=30)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
        log.seek(0)
        lines = log.read().decode(errors="replace").splitlines()
        log.close()
        errors = [n for n, line in enumerate(lines) if "Traceback" in line or "ERROR" in line]
        if errors:
            first = "\n    ".join(lines[errors[0]:errors[0] + 30])
            print(f"  {module}: {len(errors)} errors in its log; the first:\n    {first}",
                  file=sys.stderr)
            if problems is not None:
                problems.extend(lines[n] for n in errors)
