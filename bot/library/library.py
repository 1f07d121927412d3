"""The loaded library: lookup by moment, ranked search, and browsing by category and audience."""

from __future__ import annotations

import enum
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field

from bot.library.model import Entry
from bot.library.search import SearchIndex, normalise


class Moment(enum.StrEnum):
    """The moments at which the bot offers material without being asked."""

    REQUEST_WAITING = "request_waiting"  # a requester waits for a supporter
    SUPPORTER_ACCEPTED = "supporter_accepted"  # a supporter has just accepted
    CHECKIN_STRUGGLING = "checkin_struggling"  # a check-in was answered "struggling"
    LEADER_PROMPT = "leader_prompt"  # a leader posts a wellbeing prompt
    HOME = "home"  # the App Home


# Which kinds of entry a moment brings when an entry does not name its moments itself.
_DEFAULT_MOMENTS = {
    "crisis": frozenset({Moment.REQUEST_WAITING, Moment.SUPPORTER_ACCEPTED,
                         Moment.CHECKIN_STRUGGLING, Moment.HOME}),
    "tip": frozenset({Moment.SUPPORTER_ACCEPTED}),
    "guidance": frozenset({Moment.LEADER_PROMPT}),
}
# How many of each kind a moment shows at most: enough to help, few enough to read.
_MOMENT_LIMITS = {
    Moment.REQUEST_WAITING: {"resource": 2},
    Moment.SUPPORTER_ACCEPTED: {"resource": 1, "tip": 8},
    Moment.CHECKIN_STRUGGLING: {"resource": 2},
    Moment.LEADER_PROMPT: {"resource": 2, "guidance": 3},
    Moment.HOME: {"resource": 3},
}

# Browsing categories: the three resource types, then the other kinds people look for.
CATEGORIES = {
    "research": "Research", "story": "Stories", "tool": "Tools",
    "help": "Crisis and professional help", "guidance": "Guidance for leaders",
    "tips": "Tips for supporters",
}
_CATEGORY_KIND = {"help": "crisis", "guidance": "guidance", "tips": "tip"}
# Words that name a category, after plural stemming: "/peersupport resources stories" browses.
_CATEGORY_WORDS = {"research": "research", "story": "story", "tool": "tool", "help": "help",
                   "guidance": "guidance", "tip": "tips"}
PAGE_SIZE = 5


@dataclass(frozen=True)
class Surfacing:
    """What to show at one moment, grouped by kind."""

    resources: tuple[Entry, ...] = ()
    crisis: tuple[Entry, ...] = ()
    tips: tuple[Entry, ...] = ()
    guidance: tuple[Entry, ...] = ()


@dataclass(frozen=True)
class ResultsPage:
    """One page of a search or a browse, with what is needed to ask for the next one."""

    entries: tuple[Entry, ...]
    total: int
    offset: int
    limit: int = PAGE_SIZE
    query: str = ""
    category: str | None = None
    audience: str | None = None
    counts: dict[str, int] = field(default_factory=dict)

    @property
    def has_more(self) -> bool:
        return self.offset + len(self.entries) < self.total

    @property
    def has_previous(self) -> bool:
        return self.offset > 0


class Library:
    """Every entry that is shown, in file order, with a search index over them."""

    def __init__(self, entries: Iterable[Entry]):
        self.all_entries = tuple(entries)
        self.entries = tuple(e for e in self.all_entries if e.shown)
        self._by_id = {e.id: e for e in self.entries}
        self._searchable = tuple(e for e in self.entries if e.kind != "prompt")
        self._index = SearchIndex(self._searchable)

    def get(self, entry_id: str) -> Entry | None:
        """The shown entry with this id, or None."""
        return self._by_id.get(entry_id)

    def of_kind(self, kind: str, audience: str | None = None) -> tuple[Entry, ...]:
        """Shown entries of one kind, optionally only those meant for `audience`."""
        return tuple(e for e in self.entries if e.kind == kind
                     and (audience is None or audience in e.audience))

    def crisis_lines(self, audience: str | None = None) -> tuple[Entry, ...]:
        """Crisis and professional-help entries that are filled in and meant for `audience`."""
        return self.of_kind("crisis", audience)

    def prompts(self) -> tuple[Entry, ...]:
        """Preset wellbeing-prompt questions."""
        return self.of_kind("prompt")

    def for_moment(self, moment: Moment, *, audience: str | None = None,
                   topics: Sequence[str] = ()) -> Surfacing:
        """What to offer `audience` at `moment`; entries sharing `topics` come first."""
        limits = _MOMENT_LIMITS[moment]
        chosen: dict[str, list[Entry]] = {"resource": [], "crisis": [], "tip": [], "guidance": []}
        for entry in self.entries:
            if entry.kind not in chosen or not self._offered_at(entry, moment):
                continue
            # Crisis lines are for whoever might need them or pass them on: never filtered out.
            if entry.kind != "crisis" and audience is not None and audience not in entry.audience:
                continue
            chosen[entry.kind].append(entry)
        wanted = set(topics)
        for kind, items in chosen.items():
            # Entries sharing the wanted topics first, then the organisation's own; a stable
            # sort keeps file order among equals, so the content files set priority.
            items.sort(key=lambda e: (-len(wanted & set(e.topics)), not e.local))
            if kind in limits:
                del items[limits[kind]:]
        return Surfacing(resources=tuple(chosen["resource"]), crisis=tuple(chosen["crisis"]),
                         tips=tuple(chosen["tip"]), guidance=tuple(chosen["guidance"]))

    @staticmethod
    def _offered_at(entry: Entry, moment: Moment) -> bool:
        if entry.moments is not None:
            return moment in entry.moments
        return moment in _DEFAULT_MOMENTS.get(entry.kind, frozenset())

    def find(self, text: str = "", *, category: str | None = None, audience: str | None = None,
             offset: int = 0) -> ResultsPage:
        """What `/peersupport resources [words]` shows: a browse, a category, or a search."""
        words = normalise(text)
        if not words:
            return self.browse(category=category, audience=audience, offset=offset)
        if len(words) == 1 and words[0] in _CATEGORY_WORDS:
            return self.browse(category=_CATEGORY_WORDS[words[0]], audience=audience,
                               offset=offset)
        return self.search(text, offset=offset)

    def search(self, query: str, *, offset: int = 0, limit: int = PAGE_SIZE) -> ResultsPage:
        """Entries ranked by how well they match `query` (best first), one page of them."""
        ranked = self._index.search(query)
        return ResultsPage(entries=tuple(ranked[offset:offset + limit]), total=len(ranked),
                           offset=offset, limit=limit, query=query)

    def browse(self, *, category: str | None = None, audience: str | None = None,
               offset: int = 0, limit: int = PAGE_SIZE) -> ResultsPage:
        """Entries of one category (a resource type, or help, guidance, tips) for one audience."""
        if category is not None and category not in CATEGORIES:
            raise ValueError(f"unknown category {category!r}")
        matching = [e for e in self._searchable if self._in_category(e, category)
                    and (audience is None or audience in e.audience)]
        counts = {name: sum(1 for e in self._searchable if self._in_category(e, name)
                            and (audience is None or audience in e.audience))
                  for name in CATEGORIES}
        return ResultsPage(entries=tuple(matching[offset:offset + limit]), total=len(matching),
                           offset=offset, limit=limit, category=category, audience=audience,
                           counts=counts)

    @staticmethod
    def _in_category(entry: Entry, category: str | None) -> bool:
        if category is None:
            return entry.kind == "resource"
        if category in _CATEGORY_KIND:
            return entry.kind == _CATEGORY_KIND[category]
        return entry.kind == "resource" and category in entry.types
