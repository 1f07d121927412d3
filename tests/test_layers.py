"""The layering rules the code relies on, checked so they cannot quietly erode."""

from __future__ import annotations

import ast
import inspect
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
# Modules of bot/ that are Slack I/O or wiring by design; everything else is domain.
SLACK_FACING = {"messaging.py", "app.py", "web.py", "cli.py", "runtime.py", "roster_cli.py"}


def test_domain_modules_import_nothing_from_slack() -> None:
    offenders = []
    for path in (ROOT / "bot").rglob("*.py"):
        if path.name in SLACK_FACING or "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            names = [a.name for a in node.names] if isinstance(node, ast.Import) else \
                [node.module or ""] if isinstance(node, ast.ImportFrom) else []
            offenders += [f"{path.relative_to(ROOT)}: {n}" for n in names
                          if n.split(".")[0] in ("slack_sdk", "slack_bolt", "handlers")]
    assert offenders == []


def test_every_listener_that_uses_the_database_commits_it(app_server) -> None:  # noqa: ANN001
    listeners = app_server.bolt._listeners  # Bolt keeps no public list of its listeners
    unwrapped = [listener.ack_function.__name__ for listener in listeners
                 if "db" in inspect.signature(listener.ack_function).parameters
                 and not getattr(listener.ack_function, "__transactional__", False)]
    assert len(listeners) > 20
    assert unwrapped == []
