"""Reads content files (YAML), validates every entry, and applies an organisation's overrides."""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass, replace
from functools import cache
from pathlib import Path
from typing import Any

import yaml
from pydantic import ValidationError
from pydantic_core import ErrorDetails

from bot.library.library import Library
from bot.library.model import BASE_TOPICS, SECTIONS, SHAPES, ContentFile, Entry, EntryShape

BUILT_IN = Path(__file__).resolve().parents[2] / "content"
_SECTION_FIELDS = list(ContentFile.model_fields)
# When an entry has several problems, the one reported is the first an author should fix:
# unknown fields, the id, missing texts, ill-typed or too long values (in the order they are
# written), then the audience, the vocabulary, the address, and the rules of the entry's kind.
_STAGES = {"unknown": 0, "id": 1, "required": 2, "value": 3, "no_audience": 4,
           "vocabulary": 5, "address": 6, "kind": 7}


class ContentError(Exception):
    """A content file is invalid; the message names the file, the line and the entry."""


class _LineLoader(yaml.SafeLoader):
    """A safe loader that remembers the line each mapping starts on."""

    def construct_mapping(self, node: yaml.MappingNode, deep: bool = False) -> dict[Any, Any]:
        mapping = super().construct_mapping(node, deep=deep)
        mapping["__line__"] = node.start_mark.line + 1
        return mapping


@dataclass(frozen=True)
class _Raw:
    """An entry's fields as written, before validation, with where they came from."""

    fields: dict[Any, Any]
    kind: str
    origin: str  # "FILE line N": the line its mapping starts on
    local: bool = False


def load_library(override_dir: Path | None = None, *, built_in: Path = BUILT_IN) -> Library:
    """Load the shipped content, then the organisation's directory over it; raise ContentError."""
    raw_built_in, topics = _read_dir(built_in)
    raw_overrides: list[_Raw] = []
    if override_dir is not None:
        if not override_dir.is_dir():
            raise ContentError(f"{override_dir}: PEERSUPPORT_CONTENT_DIR is not a directory")
        raw_overrides, extra_topics = _read_dir(override_dir)
        topics |= extra_topics
    merged = _merge(raw_built_in, raw_overrides)
    return Library(_validate(raw, topics) for raw in merged)


def _read_dir(directory: Path) -> tuple[list[_Raw], set[str]]:
    entries: list[_Raw] = []
    topics = set(BASE_TOPICS)
    for path in sorted(directory.glob("*.yml")) + sorted(directory.glob("*.yaml")):
        file_entries, file_topics = _read_file(path)
        entries.extend(file_entries)
        topics |= file_topics
    _reject_duplicates(entries)
    return entries, topics


def _read_file(path: Path) -> tuple[list[_Raw], set[str]]:
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
    if isinstance(document, dict):
        document.pop("__line__", None)
    try:
        content = ContentFile.model_validate(document)
    except ValidationError as error:
        raise ContentError(f"{path}: {min(map(_file_problem, error.errors()))[1]}") from None
    entries = []
    for section, kind in SECTIONS.items():
        for item in getattr(content, section):
            line = item.pop("__line__", "?")
            entries.append(_Raw(item, kind, f"{path} line {line}"))
    return entries, set(content.topics)


def _file_problem(error: ErrorDetails) -> tuple[tuple[int, int, Any], str]:
    """Where a file-level problem ranks, and how it reads."""
    loc = error["loc"]
    if not loc:
        return (0, 0, 0), "expected sections such as 'resources:' at the top level"
    name = loc[0]
    if name not in _SECTION_FIELDS:
        known = ", ".join(sorted(SECTIONS))
        return (1, 0, str(name)), f"unknown section {name!r}; known sections are {known} and topics"
    rank = (2, _SECTION_FIELDS.index(name), loc[1] if len(loc) > 1 else -1)
    if name == "topics":
        return rank, "'topics' must be a list of lowercase-hyphenated words"
    if len(loc) == 1:
        return rank, f"'{name}' must be a list of entries"
    return rank, f"every item under '{name}' must be a mapping"


def _reject_duplicates(entries: Iterable[_Raw]) -> None:
    seen: dict[str, str] = {}
    for raw in entries:
        entry_id = raw.fields.get("id")
        if isinstance(entry_id, str) and entry_id in seen:
            raise ContentError(f"{raw.origin}, entry {entry_id!r}: the id is already used "
                               f"at {seen[entry_id]}")
        if isinstance(entry_id, str):
            seen[entry_id] = raw.origin


def _merge(built_in: list[_Raw], overrides: list[_Raw]) -> list[_Raw]:
    """An override with a shipped id changes only the fields it gives; a new id is added."""
    by_id = {_id_of(raw): index for index, raw in enumerate(built_in)}
    merged = list(built_in)
    for raw in overrides:
        index = by_id.get(_id_of(raw))
        if index is None:
            merged.append(replace(raw, local=True))
            continue
        base = merged[index]
        if base.kind != raw.kind:
            raise ContentError(f"{raw.origin}, entry {raw.fields.get('id')!r}: overrides a "
                               f"{base.kind} entry, so it belongs in that section")
        merged[index] = replace(base, fields={**base.fields, **raw.fields}, origin=raw.origin)
    return merged


def _id_of(raw: _Raw) -> str | None:
    # An id that is not text (a list, say) matches nothing: its entry is then refused for it.
    entry_id = raw.fields.get("id")
    return entry_id if isinstance(entry_id, str) else None


def _validate(raw: _Raw, topics: set[str]) -> Entry:
    shape = SHAPES[raw.kind]
    try:
        valid = shape.model_validate(raw.fields, context={"topics": topics})
    except ValidationError as error:
        entry_id = raw.fields.get("id")
        label = f"{raw.origin}, entry {entry_id!r}" if isinstance(entry_id, str) else raw.origin
        problems = (_entry_problem(shape, list(raw.fields), e) for e in error.errors())
        raise ContentError(f"{label}: {min(problems)[1]}") from None
    return Entry(kind=raw.kind, origin=raw.origin, local=raw.local,
                 **valid.model_dump(exclude_unset=True))


def _entry_problem(shape: type[EntryShape], written: list[Any], error: ErrorDetails
                   ) -> tuple[tuple[int, int, str], str]:
    """Where pydantic's error ranks among the entry's problems, and how it reads to an author."""
    loc, kind = error["loc"], error["type"]
    name = loc[0] if loc else ""
    fields, required = _written_names(shape)
    if kind in ("extra_forbidden", "invalid_key"):
        return (_STAGES["unknown"], 0, str(name)), f"unknown field {name!r}"
    position = fields.index(name) if name in fields else len(fields)
    if name == "id":
        return ((_STAGES["id"], 0, ""),
                "'id' is required: lowercase letters, digits and hyphens, 2 to 63 characters")
    if kind in _STAGES:  # raised by the shape's own validators, already in an author's words
        return (_STAGES[kind], position, ""), error["msg"]
    if kind == "missing" or (kind == "string_type" and name in required):
        return (_STAGES["required"], position, ""), f"'{name}' is required"
    # A value of the wrong type or length: reported in the order the fields are written.
    rank = (_STAGES["value"], written.index(name) if name in written else position, "")
    if kind == "string_too_long":
        limit = error.get("ctx", {}).get("max_length")
        return rank, f"'{name}' is longer than {limit} characters, which Slack cannot show"
    if kind == "bool_type":
        return rank, f"'{name}' must be true or false"
    if kind == "tuple_type" or len(loc) > 1:
        return rank, f"'{name}' must be a word or a list of words"
    return rank, f"'{name}' must be text"


@cache
def _written_names(shape: type[EntryShape]) -> tuple[list[str], frozenset[str]]:
    """The shape's fields as content files name them, in order, and those that are required."""
    names = {name: field.alias or name for name, field in shape.model_fields.items()}
    return (list(names.values()),
            frozenset(names[name] for name, field in shape.model_fields.items() if field.is_required()))
