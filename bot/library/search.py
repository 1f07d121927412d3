"""Ranked search over titles, topics, types and summaries, forgiving of plurals and small typos."""

from __future__ import annotations

import re
import unicodedata
from collections.abc import Sequence
from dataclasses import dataclass

from rapidfuzz import process
from rapidfuzz.distance import OSA

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
    # Optimal string alignment (a swap is one edit, but no edit touches a swapped pair again);
    # past the cutoff it answers cutoff + 1 without finishing the table.
    return OSA.distance(a, b, score_cutoff=allowed) <= allowed


@dataclass(frozen=True)
class _Field:
    """One field's words, with those long enough for typos grouped by how many they allow."""

    weight: float
    tokens: frozenset[str]
    medium: tuple[str, ...]  # 4 to 7 letters: one typo, whatever the word searched for
    long: tuple[str, ...]  # 8 letters or more: two typos when the word searched for is long too

    @classmethod
    def of(cls, weight: float, text: str) -> _Field:
        tokens = frozenset(normalise(text))
        return cls(weight, tokens, tuple(t for t in tokens if 4 <= len(t) < 8),
                   tuple(t for t in tokens if len(t) >= 8))

    def near(self, word: str) -> bool:
        """True when `within_typo(word, token)` holds for some token; rapidfuzz scans them."""
        if len(word) < 4:
            return False
        if len(word) < 8:
            return _any_within(word, self.medium + self.long, 1)
        return _any_within(word, self.long, 2) or _any_within(word, self.medium, 1)


def _any_within(word: str, tokens: tuple[str, ...], edits: int) -> bool:
    return process.extractOne(word, tokens, scorer=OSA.distance, score_cutoff=edits) is not None


class SearchIndex:
    """Entries tokenised once, at load, for repeated searches."""

    def __init__(self, entries: Sequence[Entry]):
        self._entries = tuple(entries)
        self._fields = [self._tokenise(entry) for entry in self._entries]
        self._titles = [" ".join(normalise(entry.title)) for entry in self._entries]

    @staticmethod
    def _tokenise(entry: Entry) -> list[_Field]:
        texts = {"title": entry.title, "topics": " ".join(entry.topics),
                 "types": " ".join(entry.types), "source": entry.source or "",
                 "summary": entry.summary}
        return [_Field.of(weight, texts[name]) for name, weight in _FIELD_WEIGHTS]

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
                best = max((field.weight * _quality(word, field) for field in fields),
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


def _quality(word: str, field: _Field) -> float:
    if word in field.tokens:
        return _EXACT
    if len(word) >= 3 and any(token.startswith(word) for token in field.tokens):
        return _PREFIX
    if field.near(word):
        return _FUZZY
    return 0.0
