"""Reading Slack's mention syntax out of command text."""

from __future__ import annotations

import re

# Slack sends mentions as <@U123> or, in older clients and some apps, <@U123|name>.
MENTION = re.compile(r"<@([UW][A-Z0-9]{2,31})(?:\|[^>]*)?>")


def split_mentions(text: str) -> tuple[list[str], str]:
    """The mentioned user ids in order (without repeats), and the text with them removed."""
    ids: list[str] = []
    for user_id in MENTION.findall(text):
        if user_id not in ids:
            ids.append(user_id)
    return ids, " ".join(MENTION.sub(" ", text).split())
