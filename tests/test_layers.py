"""The layering rules the code relies on, checked so they cannot quietly erode.

Each module belongs to a part: the shared infrastructure (bot.infra), one domain package per
feature (bot.<feature>), the Slack side's shared pieces (handlers.common), one Slack package per
feature (handlers.<feature>), the listeners' registry (the handlers package itself), and the
composition root (bot.app, bot.sandbox, bot.cli, bot.__main__). Parts sit on tiers in that order, and an
import may only go to the same tier or one below. Within a tier, parts may use each other only
without a loop, and no modules anywhere import each other in a loop. Every import counts, also
one inside a function or under TYPE_CHECKING.
"""

from __future__ import annotations

import ast
import inspect
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
TIERS = ("bot.infra", "bot.<feature>", "handlers.common", "handlers.<feature>", "handlers",
         "bot.app")
COMPOSITION = ("bot.app", "bot.sandbox", "bot.cli", "bot.__main__")
# bot.infra modules that are Slack I/O by design: the one messaging module.
SLACK_FACING = {"bot.infra.messaging"}


def module_name(path: Path) -> str:
    parts = list(path.relative_to(ROOT).with_suffix("").parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def imports_of(path: Path, name: str) -> set[str]:
    """Every module `path` imports, wherever in the file the import stands."""
    found: set[str] = set()
    package = name if path.name == "__init__.py" else name.rpartition(".")[0]
    for node in ast.walk(ast.parse(path.read_text())):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            base = node.module or ""
            if node.level:
                anchor = package.split(".")[: len(package.split(".")) - node.level + 1]
                base = ".".join([*anchor, base] if base else anchor)
            found.add(base)
            # `from package import module` imports the module itself.
            found.update(f"{base}.{alias.name}" for alias in node.names)
    return found


def project_graph() -> dict[str, set[str]]:
    """Module -> the project's modules it imports."""
    paths = {module_name(p): p for top in ("bot", "handlers") for p in (ROOT / top).rglob("*.py")
             if "migrations" not in p.parts}
    return {name: {i for i in imports_of(path, name) if i in paths and i != name}
            for name, path in paths.items()}


def part_of(module: str) -> str:
    """The part a module belongs to (see the module's docstring)."""
    if module.startswith(COMPOSITION):
        return "bot.app"
    pieces = module.split(".")
    return module if len(pieces) == 1 else ".".join(pieces[:2])


def tier_of(part: str) -> int:
    if part in ("bot.infra", "handlers.common", "handlers", "bot.app", "bot"):
        return TIERS.index(part) if part != "bot" else TIERS.index("bot.app")
    return TIERS.index("bot.<feature>" if part.startswith("bot.") else "handlers.<feature>")


def cycles(graph: Mapping[str, set[str]]) -> list[list[str]]:
    """The loops of a directed graph, one per strongly connected component (Tarjan)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []

    def visit(node: str) -> None:
        index[node] = low[node] = len(index)
        stack.append(node)
        on_stack.add(node)
        for target in sorted(graph.get(node, ())):
            if target not in index:
                visit(target)
                low[node] = min(low[node], low[target])
            elif target in on_stack:
                low[node] = min(low[node], index[target])
        if low[node] == index[node]:
            component = []
            while True:
                member = stack.pop()
                on_stack.discard(member)
                component.append(member)
                if member == node:
                    break
            if len(component) > 1 or node in graph.get(node, ()):
                found.append(sorted(component))

    for node in sorted(graph):
        if node not in index:
            visit(node)
    return found


def violations(graph: Mapping[str, set[str]]) -> list[str]:
    """Upward imports between tiers, loops between parts, and loops between modules."""
    problems = []
    parts: dict[str, set[str]] = {}
    for module, targets in graph.items():
        for target in targets:
            source_part, target_part = part_of(module), part_of(target)
            if tier_of(target_part) > tier_of(source_part):
                problems.append(f"upward: {module} imports {target}")
            if source_part != target_part:
                parts.setdefault(source_part, set()).add(target_part)
    problems += [f"parts in a loop: {' <-> '.join(loop)}" for loop in cycles(parts)]
    problems += [f"modules in a loop: {' <-> '.join(loop)}" for loop in cycles(graph)]
    return problems


def test_the_project_keeps_its_layers() -> None:
    graph = project_graph()
    assert len(graph) > 60  # every module was read
    assert violations(graph) == []


def test_the_check_finds_an_upward_import_and_loops() -> None:
    # The same check on a made-up project with one of each fault it must find.
    graph = {
        "bot.infra.db": {"bot.requests.service"},  # infrastructure reaching up into a feature
        "bot.requests.service": {"bot.checkins.service"},
        "bot.checkins.service": {"bot.requests.service"},  # two features using each other
        "handlers.requests.listeners": {"bot.app.runtime"},  # a listener reaching the root
        "bot.app.runtime": set(),
    }
    found = violations(graph)
    assert "upward: bot.infra.db imports bot.requests.service" in found
    assert "upward: handlers.requests.listeners imports bot.app.runtime" in found
    assert "parts in a loop: bot.checkins <-> bot.requests" in found
    assert "modules in a loop: bot.checkins.service <-> bot.requests.service" in found
    assert violations({"bot.requests.flows": {"bot.requests.service", "bot.infra.db"},
                       "handlers.requests.jobs": {"bot.requests.flows"}}) == []


def test_domain_modules_import_nothing_from_slack() -> None:
    offenders = []
    for path in (ROOT / "bot").rglob("*.py"):
        name = module_name(path)
        if part_of(name) == "bot.app" or name in SLACK_FACING:
            continue
        offenders += [f"{name}: {imported}" for imported in imports_of(path, name)
                      if imported.split(".")[0] in ("slack_sdk", "slack_bolt", "handlers")]
    assert offenders == []


def test_listeners_are_handed_services_not_the_runtime() -> None:
    graph = project_graph()
    reaching_root = [module for module, targets in graph.items()
                     if module.startswith("handlers") and any(part_of(t) == "bot.app"
                                                              for t in targets)]
    assert reaching_root == []
    text = "\n".join(p.read_text() for p in (ROOT / "handlers").rglob("*.py"))
    assert 'context["runtime"]' not in text


def test_every_listener_that_uses_the_database_commits_it(app_server) -> None:  # noqa: ANN001
    listeners = app_server.bolt._listeners  # Bolt keeps no public list of its listeners
    unwrapped = [listener.ack_function.__name__ for listener in listeners
                 if "db" in inspect.signature(listener.ack_function).parameters
                 and not getattr(listener.ack_function, "__transactional__", False)]
    assert len(listeners) > 20
    assert unwrapped == []
