"""The supporter roster: who is on it, and each supporter's own availability settings."""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, timedelta

from sqlalchemy import select
from sqlalchemy.orm import Session

from bot.infra.models import DutyHours, Supporter, SupporterStatus

# Role categories a requester may ask to match: broad enough never to identify anyone.
ROLES = ("nurse", "physician", "advanced_practice", "pharmacist", "therapist", "social_worker",
         "chaplain", "technician", "other")
ROLE_LABELS = {"nurse": "Nurse", "physician": "Physician",
               "advanced_practice": "Advanced practice provider", "pharmacist": "Pharmacist",
               "therapist": "Therapist", "social_worker": "Social worker", "chaplain": "Chaplain",
               "technician": "Technician", "other": "Other"}
MAX_DEPARTMENT = 80
CASE_CAP_RANGE = (1, 10)
COOLDOWN_CHOICES = (0, 2, 4, 8, 12, 24, 48, 72)
MAX_AWAY = timedelta(days=180)
_USER_ID = re.compile(r"^[UW][A-Z0-9]{2,31}$")


class RosterError(ValueError):
    """A roster change that cannot be made; the message is for the person who asked."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        self.field = field  # which setting was wrong, so a form can point at it


def valid_user_id(user_id: str) -> bool:
    """True for a Slack user id such as U012ABCDEF."""
    return bool(_USER_ID.match(user_id))


def normalise_role(role: str) -> str:
    """A role category from free-form input ('Social worker' -> social_worker), or RosterError."""
    key = re.sub(r"[\s-]+", "_", role.strip().lower())
    if key not in ROLES:
        raise RosterError(f"unknown role {role!r}; use one of: {', '.join(ROLES)}")
    return key


def normalise_department(department: str) -> str:
    """A department name, trimmed; RosterError if too long."""
    department = " ".join(department.split())
    if len(department) > MAX_DEPARTMENT:
        raise RosterError(f"a department name is at most {MAX_DEPARTMENT} characters")
    return department


@dataclass(frozen=True)
class SupporterSpec:
    """What a roster line says about one supporter."""

    user_id: str
    department: str = ""
    role: str = "other"


@dataclass
class Upsert:
    """What an upsert did: which ids were added, changed, and left as they were."""

    added: list[str] = field(default_factory=list)
    changed: list[str] = field(default_factory=list)
    unchanged: list[str] = field(default_factory=list)


def get(session: Session, user_id: str) -> Supporter | None:
    """The supporter with this Slack id, or None if they are not on the roster."""
    return session.get(Supporter, user_id)


def all_supporters(session: Session) -> list[Supporter]:
    """The whole roster, by department then id."""
    return list(session.scalars(select(Supporter).order_by(Supporter.department,
                                                           Supporter.user_id)))


def upsert(session: Session, specs: Sequence[SupporterSpec], *, now: datetime,
           time_zones: Mapping[str, str], default_case_cap: int, default_cooldown_hours: int
           ) -> Upsert:
    """Add new supporters (available at once) and update department and role of existing ones."""
    result = Upsert()
    existing = {s.user_id: s for s in session.scalars(
        select(Supporter).where(Supporter.user_id.in_([spec.user_id for spec in specs])))}
    for spec in specs:
        supporter = existing.get(spec.user_id)
        if supporter is None:
            supporter = Supporter(
                user_id=spec.user_id, department=spec.department, role=spec.role,
                status=SupporterStatus.AVAILABLE, tz=time_zones.get(spec.user_id, "UTC"),
                case_cap=default_case_cap, cooldown_hours=default_cooldown_hours,
                created_at=now, updated_at=now)
            session.add(supporter)
            existing[spec.user_id] = supporter
            result.added.append(spec.user_id)
            continue
        if spec.user_id in time_zones:
            supporter.tz = time_zones[spec.user_id]
        if (supporter.department, supporter.role) == (spec.department, spec.role):
            result.unchanged.append(spec.user_id)
            continue
        supporter.department, supporter.role, supporter.updated_at = \
            spec.department, spec.role, now
        result.changed.append(spec.user_id)
    return result


def remove(session: Session, user_ids: Iterable[str]) -> tuple[list[str], list[str]]:
    """Take supporters off the roster; returns (removed, not on the roster)."""
    removed, missing = [], []
    for user_id in user_ids:
        supporter = session.get(Supporter, user_id)
        if supporter is None:
            missing.append(user_id)
        else:
            session.delete(supporter)
            removed.append(user_id)
    return removed, missing


def require(session: Session, user_id: str) -> Supporter:
    """The supporter with this id, or RosterError saying they are not on the roster."""
    supporter = session.get(Supporter, user_id)
    if supporter is None:
        raise RosterError("you are not on the peer supporter roster; a program coordinator "
                          "can add you")
    return supporter


def set_available(session: Session, user_id: str, *, now: datetime) -> Supporter:
    """Mark a supporter available from now."""
    supporter = require(session, user_id)
    supporter.status, supporter.away_until, supporter.updated_at = \
        SupporterStatus.AVAILABLE, None, now
    return supporter


def set_away(session: Session, user_id: str, *, now: datetime,
             until: datetime | None = None) -> Supporter:
    """Mark a supporter away, until a moment (at most 180 days ahead) or until they return."""
    supporter = require(session, user_id)
    if until is not None and not now < until <= now + MAX_AWAY:
        raise RosterError("'away until' must be in the future and within 180 days")
    supporter.status, supporter.away_until, supporter.updated_at = \
        SupporterStatus.AWAY, until, now
    return supporter


def set_preferences(session: Session, user_id: str, *, now: datetime,
                    hours: Mapping[int, tuple[int, int]], case_cap: int,
                    cooldown_hours: int) -> Supporter:
    """Replace a supporter's weekly hours (weekday -> start, end minutes), cap and cool-down."""
    supporter = require(session, user_id)
    low, high = CASE_CAP_RANGE
    if not low <= case_cap <= high:
        raise RosterError(f"the case limit must be between {low} and {high}", "case_cap")
    if cooldown_hours not in COOLDOWN_CHOICES:
        raise RosterError("choose a cool-down from the list", "cooldown")
    for weekday, (start, end) in hours.items():
        if not 0 <= weekday <= 6 or not 0 <= start < 1440 or not 0 <= end < 1440:
            raise RosterError("hours must be whole times of day", "hours")
        if start == end:
            raise RosterError("a shift needs different start and end times", "hours")
    supporter.hours.clear()
    session.flush()  # the old rows go before new ones with the same keys arrive
    supporter.hours.extend(DutyHours(weekday=weekday, start_minute=start, end_minute=end)
                           for weekday, (start, end) in sorted(hours.items()))
    supporter.case_cap, supporter.cooldown_hours, supporter.updated_at = \
        case_cap, cooldown_hours, now
    return supporter
