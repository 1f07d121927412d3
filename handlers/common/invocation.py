"""One /peersupport call as the subcommands receive it."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

from slack_bolt import Ack, Respond


@dataclass(frozen=True)
class Invocation:
    """One /peersupport call, with the payload values subcommands need."""

    ack: Ack
    respond: Respond
    user_id: str
    channel_id: str
    trigger_id: str
    args: str
    context: dict[str, Any]
