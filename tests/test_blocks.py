"""Block Kit builders, tested as pure functions: ids, texts and Slack's limits."""

from __future__ import annotations

import json

import pytest

from bot.library import Library, Moment, load_library
from bot.library.library import CATEGORIES
from handlers.commands.help import help_message
from handlers.commands.listeners import SUBCOMMANDS
from handlers.common.blockkit import to_dicts
from handlers.common.ids import Action, Block
from handlers.library.blocks import (
    AUDIENCE_LABELS,
    crisis_blocks,
    entry_blocks,
    library_page,
    surfacing_blocks,
)
from tests.blockkit import assert_within_limits


def test_help_lists_every_subcommand_with_its_summary() -> None:
    message = help_message([(sub.usage, sub.summary) for sub in SUBCOMMANDS.values()])
    listing = next(b for b in message["blocks"] if b.get("block_id") == Block.HELP)
    for sub in SUBCOMMANDS.values():
        assert f"`/peersupport {sub.usage}`" in listing["text"]["text"]
        assert sub.summary in listing["text"]["text"]
    assert message["text"], "a plain-text fallback for notifications and screen readers"


def test_help_for_an_unknown_word_escapes_and_shortens_it() -> None:
    message = help_message([("help", "Show this list.")], unknown="<@U123>&" + "x" * 500)
    first = message["blocks"][0]["text"]["text"]
    assert "&lt;@U123&gt;&amp;" in first and "<@U123>" not in first
    assert len(first) < 200


def test_help_says_the_bot_never_asks_what_happened() -> None:
    text = json.dumps(help_message([("help", "Show this list.")]))
    assert "never asks what happened" in text


# -- the resource library ----------------------------------------------------------------------




@pytest.fixture(scope="module")
def library() -> Library:
    return load_library()


def test_every_entry_renders_within_limits(library: Library) -> None:
    for entry in library.all_entries:
        assert_within_limits(to_dicts(entry_blocks(entry)))


@pytest.mark.parametrize("category", [None, *CATEGORIES])
@pytest.mark.parametrize("audience", [None, *AUDIENCE_LABELS])
def test_every_browse_page_fits(library: Library, category: str | None,
                                audience: str | None) -> None:
    offset = 0
    while True:
        page = library.browse(category=category, audience=audience, offset=offset)
        message = library_page(page, library.crisis_lines())
        assert_within_limits(message["blocks"])
        if not page.has_more:
            break
        offset += page.limit


def test_a_search_page_has_a_way_to_see_more(library: Library) -> None:
    message = library_page(library.search("peer support"), library.crisis_lines())
    buttons = [e for b in message["blocks"] if b["type"] == "actions" for e in b["elements"]]
    assert [b["action_id"] for b in buttons] == [Action.LIBRARY_NEXT]
    assert buttons[0]["text"]["text"].startswith("More (6–10 of")
    assert_within_limits(message["blocks"])


def test_a_long_query_still_fits(library: Library) -> None:
    message = library_page(library.search("support " * 300), library.crisis_lines())
    assert_within_limits(message["blocks"])


def test_no_results_says_how_to_browse(library: Library) -> None:
    text = json.dumps(library_page(library.search("zzzz"))["blocks"])
    assert "Nothing found" in text and "/peersupport resources" in text


def test_site_only_entries_say_where_to_look(library: Library) -> None:
    text = json.dumps(to_dicts(entry_blocks(library.get("ihi-respectful-management"))))
    assert "<https://www.ihi.org|ihi.org>" in text and "Search the IHI site" in text
    assert "|Respectful management" not in text, "the title does not pretend to be a deep link"


def test_titles_cannot_break_out_of_links() -> None:
    from bot.library import Entry

    entry = Entry(id="x", kind="resource", title="A|B>C <!channel>", summary="s",
                  types=("tool",), audience=("clinician",), address="https://example.org/x")
    text = json.dumps(to_dicts(entry_blocks(entry)), ensure_ascii=False)
    assert "<!channel>" not in text and "A¦B&gt;C" in text


@pytest.mark.parametrize("moment", list(Moment))
@pytest.mark.parametrize("audience", [None, *AUDIENCE_LABELS])
def test_every_moment_renders_within_limits(library: Library, moment: Moment,
                                            audience: str | None) -> None:
    assert_within_limits(surfacing_blocks(library.for_moment(moment, audience=audience)))


def test_crisis_lines_show_how_to_reach_them(library: Library) -> None:
    text = json.dumps(crisis_blocks(library.crisis_lines()))
    assert "*988*" in text and "1-888-409-0141" in text and "988lifeline.org" in text
    assert crisis_blocks([]) == []
