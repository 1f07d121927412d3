"""Small pieces shared by builders."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import Block, MarkdownTextObject, SectionBlock


def escape(text: str) -> str:
    """Escape the three characters Slack's mrkdwn treats as control characters."""
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")


def to_dicts(blocks: Sequence[Block]) -> list[dict]:
    """Serialise blocks; slack_sdk validates each block's limits while doing so."""
    return [block.to_dict() for block in blocks]


def notice(text: str) -> dict:
    """A one-section ephemeral message."""
    return {"text": text, "blocks": to_dicts([SectionBlock(text=MarkdownTextObject(text=text))])}
