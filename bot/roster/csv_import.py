"""The roster as CSV (`user_id,department,role`): checked line by line, imported as an upsert."""

from __future__ import annotations

import csv
import io
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from datetime import datetime

from sqlalchemy.orm import Session

from bot.roster import supporters as roster
from bot.roster.supporters import RosterError, SupporterSpec, Upsert

COLUMNS = ("user_id", "department", "role")


@dataclass(frozen=True)
class Problem:
    """Something wrong with one line of the file."""

    line: int
    message: str


@dataclass
class Parsed:
    """The supporters a file names, each with its line, and the problems found."""

    rows: list[tuple[int, SupporterSpec]] = field(default_factory=list)
    problems: list[Problem] = field(default_factory=list)


def parse(text: str) -> Parsed:
    """Read and check every line; a file with any problem must not be imported."""
    result = Parsed()
    reader = csv.reader(io.StringIO(text.lstrip("\ufeff")))
    header = next(reader, None)
    if header is None:
        result.problems.append(Problem(1, "the file is empty; the first line must be "
                                          f"{','.join(COLUMNS)}"))
        return result
    if tuple(h.strip().lower() for h in header) != COLUMNS:
        result.problems.append(Problem(1, f"the header must be {','.join(COLUMNS)}, "
                                          f"found {','.join(header)}"))
        return result
    seen: dict[str, int] = {}
    for row in reader:
        line = reader.line_num
        if not any(cell.strip() for cell in row):
            continue
        if len(row) != len(COLUMNS):
            result.problems.append(Problem(line, f"expected {len(COLUMNS)} columns, found "
                                                 f"{len(row)}"))
            continue
        user_id, department, role = (cell.strip() for cell in row)
        # Every problem of the line at once, so one round of fixes is enough.
        problems: list[str] = []
        if not roster.valid_user_id(user_id):
            problems.append(f"{user_id!r} is not a Slack user id (like U012ABCDEF)")
        elif user_id in seen:
            problems.append(f"{user_id} is already on line {seen[user_id]}")
        else:
            seen[user_id] = line  # claimed even if the line has other problems
        department = _checked(roster.normalise_department, department, problems)
        role = _checked(roster.normalise_role, role or "other", problems)
        result.problems.extend(Problem(line, message) for message in problems)
        if not problems:
            result.rows.append((line, SupporterSpec(user_id, department, role)))
    return result


def _checked(normalise: Callable[[str], str], value: str, problems: list[str]) -> str:
    try:
        return normalise(value)
    except RosterError as error:
        problems.append(str(error))
        return value


def look_up_time_zones(parsed: Parsed, user_info: Callable[[str], dict]) -> dict[str, str]:
    """Each supporter's Slack time zone; a person Slack does not know becomes a problem."""
    zones: dict[str, str] = {}
    for line, spec in parsed.rows:
        try:
            user = user_info(spec.user_id)
        except LookupError as error:
            parsed.problems.append(Problem(line, f"Slack does not know {spec.user_id} ({error})"))
            continue
        if user.get("deleted"):
            parsed.problems.append(Problem(line, f"{spec.user_id} is deactivated in Slack"))
        elif user.get("is_bot"):
            parsed.problems.append(Problem(line, f"{spec.user_id} is a bot, not a person"))
        else:
            zones[spec.user_id] = str(user.get("tz") or "UTC")
    return zones


def import_rows(session: Session, parsed: Parsed, zones: dict[str, str], *, now: datetime,
                default_case_cap: int, default_cooldown_hours: int) -> Upsert:
    """Upsert every parsed supporter; call only when `parsed` has no problems."""
    if parsed.problems:
        raise ValueError("refusing to import a file with problems")
    return roster.upsert(session, [spec for _, spec in parsed.rows], now=now, time_zones=zones,
                         default_case_cap=default_case_cap,
                         default_cooldown_hours=default_cooldown_hours)


def export(session: Session) -> str:
    """The roster as CSV, in the format `parse` reads, so export then import changes nothing."""
    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(COLUMNS)
    for supporter in roster.all_supporters(session):
        writer.writerow((supporter.user_id, supporter.department, supporter.role))
    return out.getvalue()


def format_problems(path: str, problems: Sequence[Problem]) -> str:
    """One line per problem, in line order, as `file:line: message`."""
    return "\n".join(f"{path}:{p.line}: {p.message}" for p in sorted(problems, key=lambda p: p.line))
