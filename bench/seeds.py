"""Rows benchmarks start from, inserted in bulk (the app's own paths are what is measured)."""

from __future__ import annotations

from datetime import UTC, datetime

from sqlalchemy import Engine, insert

from bot.infra.models import DutyHours, Supporter
from bot.sandbox.slack_api import FakeSlack

NOW = datetime(2026, 3, 2, 14, 0, tzinfo=UTC)
DEPARTMENTS = ("ICU", "Emergency", "Surgery", "Pediatrics", "Oncology", "Maternity", "Medicine",
               "Pharmacy")
ROLES = ("nurse", "physician", "resident", "pharmacist", "other")


def supporters(engine: Engine, fake: FakeSlack | None, count: int, *, hours: bool = True
               ) -> list[str]:
    """`count` available supporters across departments and roles, each on duty around the clock
    on every weekday (seven windows each, so matching reads their hours as it would in use)."""
    ids = [f"USUP{n:06d}" for n in range(count)]
    if fake is not None:
        for user_id in ids:
            fake.add_user(user_id, tz="UTC")
    with engine.begin() as connection:
        connection.execute(insert(Supporter), [
            {"user_id": user_id, "department": DEPARTMENTS[n % len(DEPARTMENTS)],
             "role": ROLES[n % len(ROLES)], "tz": "UTC", "created_at": NOW, "updated_at": NOW}
            for n, user_id in enumerate(ids)])
        if hours:
            # A window whose end is not after its start runs overnight: 00:00-00:00 is all day.
            connection.execute(insert(DutyHours), [
                {"user_id": user_id, "weekday": day, "start_minute": 0, "end_minute": 0}
                for user_id in ids for day in range(7)])
    return ids
