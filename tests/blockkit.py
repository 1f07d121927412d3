"""Slack's Block Kit limits, checked on the JSON we send (independently of slack_sdk's models)."""

from __future__ import annotations

from typing import Any

MESSAGE_BLOCKS = 50
VIEW_BLOCKS = 100


def assert_within_limits(blocks: list[dict[str, Any]], *, max_blocks: int = MESSAGE_BLOCKS) -> None:
    """Fail when any block or element breaks a documented Block Kit limit."""
    assert len(blocks) <= max_blocks, f"{len(blocks)} blocks (limit {max_blocks})"
    block_ids = [b["block_id"] for b in blocks if "block_id" in b]
    assert len(block_ids) == len(set(block_ids)), "block_id values must be unique"
    for block in blocks:
        kind = block["type"]
        if kind == "header":
            assert len(block["text"]["text"]) <= 150
        if kind == "section":
            if "text" in block:
                assert 1 <= len(block["text"]["text"]) <= 3000
            assert len(block.get("fields", [])) <= 10
        if kind == "context":
            assert len(block["elements"]) <= 10
            assert all(len(e.get("text", "")) <= 3000 for e in block["elements"])
        if kind == "actions":
            assert len(block["elements"]) <= 25
            ids = [e["action_id"] for e in block["elements"]]
            assert len(ids) == len(set(ids)), "action_id values must be unique within a block"
            for element in block["elements"]:
                assert len(element["action_id"]) <= 255
                if element["type"] == "button":
                    assert len(element["text"]["text"]) <= 75
                    assert len(element.get("value", "")) <= 2000
                    assert len(element.get("url", "")) <= 3000
