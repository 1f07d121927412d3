"""Ranked search over titles, topics, types and summaries, forgiving of plurals and small typos."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence

from bot.library.model import Entry

_WORD = re.compile(r"[a-z0-9]+")
_STOPWORDS = frozenset(
    "a an and are about after as at be by can do for from how i if in is it me my of on or "
    "our the to we what when with you your".split())
# A word found in the title counts most; one found only in the summary least.
_FIELD_WEIGHTS = (("title", 3.0), ("topics", 2.5), ("types", 2.0), ("source", 1.0),
                  ("summary", 1.0))
_EXACT, _PREFIX, _FUZZY = 1.0, 0.7, 0.6


def normalise(text: str) -> list[str]:
    """Lowercase words without accents or punctuation, plurals reduced to their singular."""
    plain = unicodedata.normalize("NFKD", text).encode("ascii", "ignore").decode("ascii")
    return [stem(word) for word in _WORD.findall(plain.lower())]


def stem(word: str) -> str:
    """A light English plural stemmer: stories -> story, boxes -> box, leaders -> leader."""
    if len(word) > 4 and word.endswith("ies"):
        return word[:-3] + "y"
    if len(word) > 4 and word.endswith(("sses", "ches", "shes", "xes", "zes")):
        return word[:-2]
    if len(word) > 3 and word.endswith("s") and not word.endswith(("ss", "us", "is")):
        return word[:-1]
    return word


def within_typo(a: str, b: str) -> bool:
    """True when `a` and `b` differ by at most one edit (two for long words), swaps included."""
    if min(len(a), len(b)) < 4:
        return False
    allowed = 2 if min(len(a), len(b)) >= 8 else 1
    if abs(len(a) - len(b)) > allowed:
        return False
    return _damerau_levenshtein(a, b, allowed) <= allowed


def _damerau_levenshtein(a: str, b: str, cap: int) -> int:
    previous2: list[int] = []
    previous = list(range(len(b) + 1))
    for i, ca in enumerate(a, 1):
        current = [i] + [0] * len(b)
        for j, cb in enumerate(b, 1):
            cost = 0 if ca == cb else 1
            current[j] = min(previous[j] + 1, current[j - 1] + 1, previous[j - 1] + cost)
            if i > 1 and j > 1 and ca == b[j - 2] and a[i - 2] == cb:
                current[j] = min(current[j], previous2[j - 2] + 1)
        if min(current) > cap:
            return cap + 1
        previous2, previous = previous, current
    return previous[-1]


class SearchIndex:
    """Entries tokenised once, at load, for repeated searches."""

    def __init__(self, entries: Sequence[Entry]):
        self._entries = tuple(entries)
        self._fields = [self._tokenise(entry) for entry in self._entries]
        self._titles = [" ".join(normalise(entry.title)) for entry in self._entries]

    @staticmethod
    def _tokenise(entry: Entry) -> list[tuple[float, frozenset[str]]]:
        texts = {"title": entry.title, "topics": " ".join(entry.topics),
                 "types": " ".join(entry.types), "source": entry.source or "",
                 "summary": entry.summary}
        return [(weight, frozenset(normalise(texts[name]))) for name, weight in _FIELD_WEIGHTS]

    def search(self, query: str) -> list[Entry]:
        """Entries matching any word of `query`, those matching most words and best first."""
        words = [w for w in normalise(query) if w not in _STOPWORDS]
        if not words:
            return []
        phrase = " ".join(words)
        scored = []
        for position, fields in enumerate(self._fields):
            matched, score = 0, 0.0
            for word in words:
                best = max((weight * _quality(word, tokens) for weight, tokens in fields),
                           default=0.0)
                if best > 0:
                    matched += 1
                    score += best
            if matched == 0:
                continue
            if len(words) > 1 and phrase in self._titles[position]:
                score += 3.0
            scored.append((-matched, -score, position))
        scored.sort()
        return [self._entries[position] for _, _, position in scored]


def _quality(word: str, tokens: frozenset[str]) -> float:
    if word in tokens:
        return _EXACT
    if len(word) >= 3 and any(token.startswith(word) for token in tokens):
        return _PREFIX
    if any(within_typo(word, token) for token in tokens):
        return _FUZZY
    return 0.0
