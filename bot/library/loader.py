"""Reads content files (YAML), validates every entry, and applies an organisation's overrides."""

from __future__ import annotations

import re
from collections.abc import Iterable
from dataclasses import fields
from pathlib import Path
from typing import Any

import yaml

from bot.library.library import Library
from bot.library.model import (
    AUDIENCES,
    BASE_TOPICS,
    LIMITS,
    MOMENTS,
    PROMPT_TITLE_LIMIT,
    SECTIONS,
    TYPES,
    Entry,
)

BUILT_IN = Path(__file__).resolve().parents[2] / "content"
_ID = re.compile(r"^[a-z0-9][a-z0-9-]{1,62}$")
_URL = re.compile(r"^https://[A-Za-z0-9.-]+\.[A-Za-z]{2,}(/[^\s<>|]*)?$")
_FIELDS = {f.name for f in fields(Entry)} - {"kind", "origin", "types", "local"} | {"type"}
_LISTS = ("audience", "topics", "type", "moments", "labels", "options")


class ContentError(Exception):
    """A content file is invalid; the message names the file, the line and the entry."""


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line each mapping starts on."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


def load_library(override_dir: Path | None = None, *, built_in: Path = BUILT_IN) -> Library:
    """Load the shipped content, then the organisation's directory over it; raise ContentError."""
    raw_built_in, topics = _read_dir(built_in)
    raw_overrides: list[dict[str, Any]] = []
    if override_dir is not None:
        if not override_dir.is_dir():
            raise ContentError(f"{override_dir}: PEERSUPPORT_CONTENT_DIR is not a directory")
        raw_overrides, extra_topics = _read_dir(override_dir)
        topics |= extra_topics
    merged = _merge(raw_built_in, raw_overrides)
    entries = [_validate(raw, topics) for raw in merged]
    return Library(entries)


def _read_dir(directory: Path) -> tuple[list[dict[str, Any]], set[str]]:
    entries: list[dict[str, Any]] = []
    topics = set(BASE_TOPICS)
    for path in sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml")):
        file_entries, file_topics = _read_file(path)
        entries.extend(file_entries)
        topics |= file_topics
    _reject_duplicates(entries)
    return entries, topics


def _read_file(path: Path) -> tuple[list[dict[str, Any]], set[str]]:
    try:
        document = yaml.load(path.read_text(encoding="utf-8"), Loader=_LineLoader)  # noqa: S506
    except yaml.YAMLError as error:
        mark = getattr(error, "problem_mark", None)
        where = f" line {mark.line + 1}" if mark is not None else ""
        raise ContentError(f"{path}{where}: not valid YAML ({getattr(error, 'problem', error)})"
                           ) from None
    except (OSError, UnicodeDecodeError) as error:
        raise ContentError(f"{path}: cannot be read ({error})") from None
    if document is None:
        return [], set()
    if not isinstance(document, dict):
        raise ContentError(f"{path}: expected sections such as 'resources:' at the top level")
    document.pop("__line__", None)
    unknown = sorted(set(document) - set(SECTIONS) - {"topics"})
    if unknown:
        raise ContentError(f"{path}: unknown section {unknown[0]!r}; known sections are "
                           f"{', '.join(sorted(SECTIONS))} and topics")
    topics = document.get("topics") or []
    if not isinstance(topics, list) or not all(isinstance(t, str) and _ID.match(t) for t in topics):
        raise ContentError(f"{path}: 'topics' must be a list of lowercase-hyphenated words")
    entries = []
    for section, kind in SECTIONS.items():
        items = document.get(section) or []
        if not isinstance(items, list):
            raise ContentError(f"{path}: '{section}' must be a list of entries")
        for item in items:
            if not isinstance(item, dict):
                raise ContentError(f"{path}: every item under '{section}' must be a mapping")
            line = item.pop("__line__", "?")
            entries.append({**item, "__kind__": kind, "__origin__": f"{path} line {line}"})
    return entries, set(topics)


def _reject_duplicates(entries: Iterable[dict[str, Any]]) -> None:
    seen: dict[str, str] = {}
    for raw in entries:
        entry_id = raw.get("id")
        if isinstance(entry_id, str) and entry_id in seen:
            raise ContentError(f"{raw['__origin__']}, entry {entry_id!r}: the id is already used "
                               f"at {seen[entry_id]}")
        if isinstance(entry_id, str):
            seen[entry_id] = raw["__origin__"]


def _merge(built_in: list[dict[str, Any]], overrides: list[dict[str, Any]]
           ) -> list[dict[str, Any]]:
    """An override with a shipped id changes only the fields it gives; a new id is added."""
    by_id = {raw.get("id"): index for index, raw in enumerate(built_in)}
    merged = [dict(raw) for raw in built_in]
    for raw in overrides:
        index = by_id.get(raw.get("id"))
        if index is None:
            merged.append({**raw, "__local__": True})
            continue
        base = merged[index]
        if base["__kind__"] != raw["__kind__"]:
            raise ContentError(f"{raw['__origin__']}, entry {raw.get('id')!r}: overrides a "
                               f"{base['__kind__']} entry, so it belongs in that section")
        merged[index] = {**base, **raw}
    return merged


def _validate(raw: dict[str, Any], topics: set[str]) -> Entry:
    origin = raw.pop("__origin__")
    kind = raw.pop("__kind__")
    local = raw.pop("__local__", False)
    entry_id = raw.get("id")
    label = f"{origin}, entry {entry_id!r}" if isinstance(entry_id, str) else origin

    def fail(message: str) -> ContentError:
        return ContentError(f"{label}: {message}")

    unknown = sorted(set(raw) - _FIELDS)
    if unknown:
        raise fail(f"unknown field {unknown[0]!r}")
    if not isinstance(entry_id, str) or not _ID.match(entry_id):
        raise fail("'id' is required: lowercase letters, digits and hyphens, 2 to 63 characters")
    for name in ("title",) + (("summary",) if kind != "prompt" else ()):
        if not isinstance(raw.get(name), str) or not raw[name].strip():
            raise fail(f"'{name}' is required")
    values: dict[str, Any] = {"id": entry_id, "kind": kind, "origin": origin, "local": local}
    for name, value in raw.items():
        if name == "id":
            continue
        if name in _LISTS:
            value = [value] if isinstance(value, str) else value
            if not isinstance(value, list) or not all(isinstance(v, str) for v in value):
                raise fail(f"'{name}' must be a word or a list of words")
            value = tuple(v.strip() for v in value)
        elif name in ("site_only", "slot", "hidden"):
            if not isinstance(value, bool):
                raise fail(f"'{name}' must be true or false")
        elif value is not None:
            if isinstance(value, int | float):
                value = str(value)
            if not isinstance(value, str):
                raise fail(f"'{name}' must be text")
            value = " ".join(value.split())
            if len(value) > LIMITS.get(name, 600):
                raise fail(f"'{name}' is longer than {LIMITS.get(name, 600)} characters, "
                           "which Slack cannot show")
        values["types" if name == "type" else name] = value
    entry = Entry(**values)
    _check_vocabulary(entry, topics, fail)
    _check_kind(entry, fail)
    return entry


def _check_vocabulary(entry: Entry, topics: set[str], fail: Any) -> None:
    if not entry.audience:
        raise fail("'audience' is required: " + ", ".join(sorted(AUDIENCES)))
    for name, allowed, values in (("audience", AUDIENCES, entry.audience),
                                  ("topics", topics, entry.topics),
                                  ("type", TYPES, entry.types),
                                  ("moments", MOMENTS, entry.moments or ())):
        for value in values:
            if value not in allowed:
                raise fail(f"unknown {name} {value!r}; known: {', '.join(sorted(allowed))}"
                           + ("; add new topics with a top-level 'topics:' list"
                              if name == "topics" else ""))
    if entry.address is not None and not _URL.match(entry.address):
        raise fail(f"'address' must be a well-formed https:// address, got {entry.address!r}")


def _check_kind(entry: Entry, fail: Any) -> None:
    if entry.kind == "resource" and not entry.types:
        raise fail("'type' is required: " + ", ".join(sorted(TYPES)))
    if entry.kind != "resource" and entry.types:
        raise fail("'type' is only for resources")
    if entry.site_only and not entry.address:
        raise fail("'site_only' needs the site's 'address'")
    if entry.slot and entry.kind != "crisis":
        raise fail("'slot' is only for crisis and professional-help entries")
    if entry.kind == "prompt":
        if len(entry.title) > PROMPT_TITLE_LIMIT:
            raise fail(f"a prompt's question must be at most {PROMPT_TITLE_LIMIT} characters")
        if entry.scale not in (None, "five_point"):
            raise fail("'scale' must be five_point, or give 'options' instead")
        if entry.scale == "five_point" and len(entry.labels) != 5:
            raise fail("a five_point scale needs exactly 5 'labels'")
        if entry.scale is None and not 2 <= len(entry.options) <= 6:
            raise fail("a prompt needs a five_point scale or 2 to 6 'options'")
        if any(not answer or len(answer) > LIMITS["label"] for answer in entry.answers):
            raise fail(f"each answer must be 1 to {LIMITS['label']} characters")
    elif entry.scale or entry.labels or entry.options:
        raise fail("'scale', 'labels' and 'options' are only for prompts")
