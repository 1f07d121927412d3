"""The README and docs/ stay short, followable and free of dead links and tracker references."""

from __future__ import annotations

import re
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]
README = ROOT / "README.md"
DOCUMENTS = [README, ROOT / "SECURITY.md", *sorted((ROOT / "docs").glob("*.md"))]

# [text](target) in Markdown; an address with a scheme, a mail link or a bare anchor is not a file.
LINK = re.compile(r"\[[^\]]*\]\(([^)\s]+)\)")
EXTERNAL = re.compile(r"^(?:[a-z][a-z0-9+.-]*:|#)", re.IGNORECASE)


def _anchors(path: Path) -> set[str]:
    """GitHub's anchors for a Markdown file's headings."""
    anchors = set()
    for line in path.read_text().splitlines():
        if match := re.match(r"#+\s+(.*)", line):
            words = re.sub(r"[^\w\- ]", "", match.group(1).strip().lower())
            anchors.add(words.replace(" ", "-"))
    return anchors


def _rel(path: Path) -> str:
    return str(path.relative_to(ROOT))


@pytest.mark.parametrize("document", DOCUMENTS, ids=_rel)
def test_every_relative_link_points_at_a_file_that_exists(document: Path) -> None:
    broken = []
    for target in LINK.findall(document.read_text()):
        if EXTERNAL.match(target):
            continue
        file, _, anchor = target.partition("#")
        linked = (document.parent / file).resolve()
        if not linked.exists():
            broken.append(target)
        elif anchor and linked.suffix == ".md" and anchor not in _anchors(linked):
            broken.append(target)
    assert broken == [], f"{_rel(document)} links to what does not exist: {broken}"


def test_the_readme_links_to_the_docs_for_the_rest() -> None:
    text = README.read_text()
    for target in ("docs/operations.md", "docs/privacy.md", "docs/architecture.md",
                   "BENCHMARKS.md"):
        assert f"]({target})" in text, target


def test_the_readme_is_short_enough_to_read_in_ten_minutes() -> None:
    assert len(README.read_text().splitlines()) <= 250


def test_the_quick_start_is_the_two_commands_ci_relies_on() -> None:
    text = README.read_text()
    quick_start = text.split("## Quick start", 1)[1].split("\n## ", 1)[0]
    commands = re.findall(r"^(\./\w+)\b", quick_start.split("```sh", 1)[1].split("```", 1)[0],
                          re.MULTILINE)
    assert commands == ["./run", "./test"]
    # CI runs the same test command the README gives.
    assert re.search(r"^\./test\b", (ROOT / ".ci" / "run").read_text(), re.MULTILINE)
    for script in ("run", "test"):
        assert (ROOT / script).stat().st_mode & 0o111, f"{script} is not executable"


def test_the_go_live_checklist_names_what_a_first_deployment_needs() -> None:
    text = README.read_text()
    # The CLI's no-token line and the demo send people to this heading by name.
    assert "Create the Slack app" in text
    for needed in ("manifest.yml", "Socket Mode", "PostgreSQL", "PEERSUPPORT_COORDINATORS",
                   "PEERSUPPORT_LEADERS", "PEERSUPPORT_PULSE_SECRET", "roster import",
                   "PEERSUPPORT_CONTENT_DIR", "Announce it"):
        assert needed in text, needed


@pytest.mark.parametrize("document", DOCUMENTS, ids=_rel)
def test_no_document_refers_to_tracker_issues(document: Path) -> None:
    # Documents describe the program as it is; "#12" or "issue 12" means nothing to a reader.
    references = re.findall(r"(?<![\w&/])#\d{1,3}\b|\bissues? \d+\b", document.read_text(),
                            re.IGNORECASE)
    assert references == [], f"{_rel(document)} refers to issues: {references}"
