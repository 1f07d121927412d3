"""Typo tolerance in library search: rapidfuzz gives exactly what the hand-written distance gave."""

from __future__ import annotations

import random
import string

from rapidfuzz.distance import OSA, DamerauLevenshtein

from bot.library import load_library
from bot.library.search import _Field, normalise, within_typo


def reference_distance(a: str, b: str, cap: int) -> int:
    """The restricted Damerau-Levenshtein distance search used before rapidfuzz, kept verbatim."""
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


def reference_within_typo(a: str, b: str) -> bool:
    if min(len(a), len(b)) < 4:
        return False
    allowed = 2 if min(len(a), len(b)) >= 8 else 1
    if abs(len(a) - len(b)) > allowed:
        return False
    return reference_distance(a, b, allowed) <= allowed


def mangled(rng: random.Random, word: str, alphabet: str) -> str:
    """`word` after a few random deletions, insertions, substitutions and swaps."""
    for _ in range(rng.choice([0, 1, 1, 2, 2, 3])):
        i = rng.randrange(len(word) + 1)
        edit = rng.choice("dist")
        if edit == "d" and i < len(word):
            word = word[:i] + word[i + 1:]
        elif edit == "i":
            word = word[:i] + rng.choice(alphabet) + word[i:]
        elif edit == "s" and i < len(word):
            word = word[:i] + rng.choice(alphabet) + word[i + 1:]
        elif edit == "t" and i + 1 < len(word):
            word = word[:i] + word[i + 1] + word[i] + word[i + 2:]
    return word


def word_pairs(count: int) -> list[tuple[str, str]]:
    """Pairs near each other (library words and their typos) and random ones on small alphabets."""
    rng = random.Random(20240611)
    vocabulary = sorted({w for e in load_library().entries
                         for w in normalise(f"{e.title} {e.summary}") if len(w) >= 3})
    pairs = []
    for _ in range(count):
        if rng.random() < 0.6:
            word = rng.choice(vocabulary)
            pairs.append((mangled(rng, word, string.ascii_lowercase), word))
        else:  # few letters make swaps and repeated letters, where the variants differ, common
            alphabet = rng.choice(["ab", "abc", "abcd"])
            word = "".join(rng.choice(alphabet) for _ in range(rng.randint(1, 12)))
            pairs.append((word, mangled(rng, word, alphabet)))
    return pairs


PAIRS = word_pairs(600)


def test_within_typo_agrees_with_the_reference_on_random_pairs() -> None:
    for a, b in PAIRS:
        assert within_typo(a, b) == reference_within_typo(a, b), (a, b)
        assert within_typo(b, a) == reference_within_typo(b, a), (b, a)


def test_the_capped_distance_agrees_with_the_reference() -> None:
    for a, b in PAIRS:
        assert OSA.distance(a, b) == reference_distance(a, b, 99), (a, b)
        for cap in (1, 2):
            assert OSA.distance(a, b, score_cutoff=cap) == min(reference_distance(a, b, cap),
                                                                cap + 1), (a, b, cap)


def test_the_pairs_exercise_typos_on_both_sides_of_the_limit() -> None:
    outcomes = [reference_within_typo(a, b) for a, b in PAIRS]
    assert 100 < sum(outcomes) < len(PAIRS) - 100


def test_true_damerau_levenshtein_would_accept_more_than_search_did() -> None:
    # A swap followed by an insertion between the swapped letters: two edits for the
    # unrestricted distance, three for optimal string alignment, which search has always used.
    assert DamerauLevenshtein.distance("abcdefca", "abcdefabc") == 2
    assert reference_within_typo("abcdefca", "abcdefabc") is False
    assert within_typo("abcdefca", "abcdefabc") is False


def test_a_field_finds_a_near_word_exactly_when_some_token_is_within_a_typo() -> None:
    rng = random.Random(7)
    words = [w for pair in PAIRS for w in pair]
    for _ in range(600):
        tokens = rng.sample(words, rng.randint(0, 8))
        field = _Field.of(1.0, " ".join(tokens))
        word = rng.choice(words)
        expected = any(reference_within_typo(word, token) for token in field.tokens)
        assert field.near(word) == expected, (word, sorted(field.tokens))
