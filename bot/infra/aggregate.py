"""Figures that can never single anyone out: a minimum group size, and complementary suppression.

Every figure the bot shows leaders and coordinators goes through here. A group with fewer than
`minimum` people is hidden, never shown as zero. When some groups are hidden but a total is
shown, the hidden groups together must still hold at least `minimum` people; otherwise more
groups are hidden (smallest first), and if that is not enough the total is hidden too, so no
hidden group can be recovered by subtracting the ones shown from the total.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass

FLOOR = 5  # the smallest minimum group size the app accepts


@dataclass(frozen=True)
class Suppressed:
    """Group sizes after suppression: None where hidden; the total likewise."""

    groups: dict[str, int | None]
    total: int | None


def suppress(counts: Mapping[str, int], minimum: int, *, with_total: bool = True) -> Suppressed:
    """Hide small groups, and enough others that subtraction from the total reveals nothing."""
    if minimum < FLOOR:
        raise ValueError(f"the minimum group size is at least {FLOOR}")
    shown = {name: count for name, count in counts.items() if count >= minimum}
    hidden = {name: count for name, count in counts.items() if count < minimum}
    total: int | None = sum(counts.values()) if with_total else None
    if with_total and hidden and sum(hidden.values()) < minimum:
        for name in sorted(shown, key=lambda n: (shown[n], n)):
            hidden[name] = shown.pop(name)
            if sum(hidden.values()) >= minimum:
                break
        if sum(hidden.values()) < minimum:
            total = None
    if total is not None and total < minimum:
        total = None
    return Suppressed(groups={name: (shown.get(name) if name in shown else None)
                              for name in counts}, total=total)


def share(part: int, whole: int, minimum: int) -> float | None:
    """part/whole as a fraction, or None when the whole is too small to show."""
    if whole < minimum or whole == 0:
        return None
    return part / whole


def percentile(values: list[float], fraction: float, minimum: int) -> float | None:
    """The `fraction` percentile (nearest rank) of values, or None with too few of them."""
    if len(values) < minimum:
        return None
    ordered = sorted(values)
    return ordered[max(1, math.ceil(fraction * len(ordered))) - 1]
