"""Small pieces shared by builders."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime

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


def date_token(at: datetime) -> str:
    """A time as Slack shows it in each reader's own time zone (Slack's date token), with a UTC
    text where a client cannot: "Tue 7 Apr 2026, 14:00 UTC"."""
    utc = (at if at.tzinfo is not None else at.replace(tzinfo=UTC)).astimezone(UTC)
    return (f"<!date^{int(utc.timestamp())}^{{date_short_pretty}} at {{time}}|"
            f"{utc:%a} {utc.day} {utc:%b %Y}, {utc:%H:%M} UTC>")
