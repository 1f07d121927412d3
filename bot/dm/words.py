"""What a direct message to the bot asks for, read from its words: nothing of it is kept.

A DM is classified and then forgotten: this module returns an intent and, for the words that
take them (`resources sleep`, `away until friday 6pm`), the rest of the line, which the caller
passes on to the same code the slash command uses and drops.
"""

from __future__ import annotations

import enum
import re
from dataclasses import dataclass


class Intent(enum.StrEnum):
    """What a DM asks for."""

    CRISIS = "crisis"
    HELP = "help"
    RESOURCES = "resources"
    TEAM = "team"
    CHECKINS = "checkins"
    AVAILABLE = "available"
    AWAY = "away"
    OTHER = "other"


@dataclass(frozen=True)
class Reading:
    """A DM's intent, and the words after the first one for intents that take them."""

    intent: Intent
    rest: str = ""


# Phrases that speak of suicide or self-harm. Matched as whole words, in any case, with any
# spacing or hyphen between words: a false alarm only shows crisis lines and a button, while a
# miss could leave someone without them, so the list leans towards inclusion.
_CRISIS_PHRASES = (
    r"suicide", r"suicidal", r"kill(?:ing)? myself", r"end(?:ing)? (?:my|it) (?:life|all)",
    r"take my (?:own )?life", r"taking my (?:own )?life", r"self harm(?:ing)?", r"selfharm",
    r"(?:hurt|hurting|harm|harming|cut|cutting) myself", r"(?:want|wanted|wanting) to die",
    r"wanna die", r"wish i (?:was|were) dead", r"better off dead", r"not safe",
    r"(?:don't|do not|dont) feel safe", r"not feeling safe",
    r"(?:don't|do not|dont) want to (?:live|be alive|be here)", r"no reason to live",
)
_CRISIS = re.compile(
    r"\b(?:" + "|".join(p.replace(" ", r"[\s-]+") for p in _CRISIS_PHRASES) + r")\b")
# A DM is read only up to this length: enough for any sentence, and a huge paste is not
# scanned word by word.
MAX_READ = 4000

_WORDS = {
    "help": Intent.HELP, "commands": Intent.HELP, "?": Intent.HELP,
    "resources": Intent.RESOURCES, "resource": Intent.RESOURCES,
    "team": Intent.TEAM,
    "checkins": Intent.CHECKINS, "checkin": Intent.CHECKINS, "check-ins": Intent.CHECKINS,
    "check-in": Intent.CHECKINS,
    "available": Intent.AVAILABLE,
    "away": Intent.AWAY,
}
# Intents that read the rest of the line; the others are only recognised on their own, so
# "help me, I can't cope" gets the full answer with the request button, not a command list.
_TAKES_WORDS = frozenset({Intent.RESOURCES, Intent.AWAY, Intent.TEAM})


def _plain(text: str) -> str:
    # Slack clients send typographic apostrophes and hyphens; compare them as plain ones.
    text = text[:MAX_READ].replace("\u2019", "'").replace("\u2018", "'")
    text = text.replace("\u2010", "-").replace("\u2011", "-").replace("\u2013", "-")
    return " ".join(text.lower().split())


def speaks_of_crisis(text: str) -> bool:
    """Whether a message speaks of suicide or self-harm (whole words or phrases, any case)."""
    return _CRISIS.search(_plain(text)) is not None


def classify(text: str) -> Reading:
    """What a DM asks for; crisis words win over every other word."""
    if speaks_of_crisis(text):
        return Reading(Intent.CRISIS)
    plain = _plain(text).removeprefix("/peersupport").strip()
    first, _, rest = plain.partition(" ")
    intent = _WORDS.get(first.strip(".!,:;"))
    if intent is None or (rest and intent not in _TAKES_WORDS):
        return Reading(Intent.OTHER)
    return Reading(intent, rest.strip() if intent in _TAKES_WORDS else "")
