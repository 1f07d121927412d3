"""The transition table is the documented one, and each event is guarded by it."""

from __future__ import annotations

from pathlib import Path

from bot.requests.transitions import TABLE, Event, table_markdown

ROOT = Path(__file__).resolve().parents[2]


def test_the_readme_and_the_architecture_doc_show_the_table_the_code_applies() -> None:
    assert table_markdown() in (ROOT / "README.md").read_text()
    assert table_markdown() in (ROOT / "docs" / "architecture.md").read_text()


def test_every_event_has_a_row_and_finished_requests_accept_no_event_but_none() -> None:
    assert set(TABLE) == set(Event)
    for event, transition in TABLE.items():
        assert transition.sources, event
        assert not {"closed", "cancelled"} & transition.sources, \
            f"{event} would reopen a finished request"
