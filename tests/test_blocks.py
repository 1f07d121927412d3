"""Block Kit builders, tested as pure functions: ids, texts and Slack's limits."""

from __future__ import annotations

import json

from handlers.blocks.help import help_message
from handlers.commands import SUBCOMMANDS
from handlers.ids import Block


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
