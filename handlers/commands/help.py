"""The /peersupport help message."""

from __future__ import annotations

from collections.abc import Sequence

from slack_sdk.models.blocks import ContextBlock, HeaderBlock, MarkdownTextObject, SectionBlock

from handlers.common.blockkit import escape, to_dicts
from handlers.common.ids import PEERSUPPORT_COMMAND, Block


def help_message(commands: Sequence[tuple[str, str]], *, unknown: str | None = None) -> dict:
    """The ephemeral list of subcommands; `unknown` is a word the person typed that we don't know."""
    lines = [f"`{f'{PEERSUPPORT_COMMAND} {usage}'.strip()}`  {summary}"
             for usage, summary in commands]
    blocks = []
    if unknown is not None:
        word = escape(unknown[:40])
        blocks.append(SectionBlock(text=MarkdownTextObject(
            text=f"I don't know the subcommand `{word}`. Here is what I can do:")))
    else:
        blocks.append(HeaderBlock(text="Peer support: what you can do"))
    blocks.append(SectionBlock(block_id=Block.HELP, text=MarkdownTextObject(text="\n".join(lines))))
    blocks.append(ContextBlock(elements=[MarkdownTextObject(
        text="Everything you do here is confidential. The bot never asks what happened, "
             "and never needs any patient detail.")]))
    text = "Peer support commands: " + ", ".join(
        f"{PEERSUPPORT_COMMAND} {usage}".strip() for usage, _ in commands)
    return {"text": text, "blocks": to_dicts(blocks)}
