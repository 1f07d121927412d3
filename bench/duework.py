"""The due-work engine at scale: 100,000 check-ins due at once, sent by a real clock process
(`python -m bot clock`) through a Slack stand-in that answers at once."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import func, insert, select

from bench.common import Report, scratch_database
from bench.servers import ROOT
from bot.checkins.service import CHECKIN
from bot.infra.models import (
    CheckIn,
    CheckInState,
    ContactHours,
    DueWork,
    RequestState,
    SupportRequest,
    WorkState,
)
from bot.sandbox.slack_api import FakeSlack

RATE_TARGET = 500.0
MEMORY_TARGET_MB = 200.0
CHUNK = 10_000


@dataclass
class Settings:
    """How many check-ins fall due, and on which databases."""

    checkins: int = 100_000
    backends: tuple[str, ...] = ("postgresql", "sqlite")
    per_person: int = 4  # 1, 3, 7 and 30 days: one request's whole plan


def _seed(engine, fake: FakeSlack, count: int, per_person: int) -> None:  # noqa: ANN001
    """People who were supported, each with check-ins that all fell due a minute ago."""
    now = datetime.now(UTC)
    due = now - timedelta(minutes=1)  # inside the grace period: sent, not spread out
    people = (count + per_person - 1) // per_person
    for start in range(0, people, CHUNK):
        ids = range(start + 1, min(people, start + CHUNK) + 1)
        requests, hours, checkins, work = [], [], [], []
        for n in ids:
            user = f"UPERSON{n:07d}"
            fake.add_user(user, tz="UTC")
            requests.append({"id": n, "requester_id": user, "urgency": "today",
                             "connection": "slack", "followups": True,
                             "state": RequestState.CLOSED, "created_at": now})
            # Contact hours all day, so each check-in is sent now rather than moved.
            hours.append({"user_id": user, "tz": "UTC", "start_minute": 0, "end_minute": 0,
                          "updated_at": now})
            for k in range(per_person):
                checkin_id = (n - 1) * per_person + k + 1
                if checkin_id > count:
                    break
                checkins.append({"id": checkin_id, "request_id": n, "user_id": user,
                                 "number": k + 1, "planned_for": due, "due_at": due,
                                 "version": 0, "state": CheckInState.SCHEDULED})
                work.append({"kind": CHECKIN, "key": f"{CHECKIN}:{checkin_id}:0",
                             "payload": {"checkin_id": checkin_id, "version": 0},
                             "due_at": due, "state": WorkState.PENDING, "attempts": 0,
                             "rescheduled": 0, "created_at": now})
        with engine.begin() as connection:
            connection.execute(insert(SupportRequest), requests)
            connection.execute(insert(ContactHours), hours)
            connection.execute(insert(CheckIn), checkins)
            connection.execute(insert(DueWork), work)


def _peak_rss_mb(pid: int) -> float:
    with open(f"/proc/{pid}/status") as status:
        for line in status:
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) / 1024
    return 0.0


def run(settings: Settings | None = None) -> Report:
    """Time a clock process sending every due check-in, on each database."""
    settings = settings or Settings()
    report = Report("duework")
    for backend in settings.backends:
        fake = FakeSlack().start()
        try:
            with scratch_database(backend) as database:
                _seed(database.engine, fake, settings.checkins, settings.per_person)
                env = {**os.environ, "PYTHONPATH": str(ROOT), "SLACK_BOT_TOKEN": "xoxb-bench",
                       "SLACK_API_URL": fake.api_url, "DATABASE_URL": database.url,
                       "PEERSUPPORT_TICK_SECONDS": "1", "LOG_LEVEL": "WARNING",
                       # All of them are on time: found later than the grace period, the
                       # engine would spread the rest out (its catch-up policy, for downtime).
                       "PEERSUPPORT_DUEWORK_GRACE_SECONDS": str(7 * 86400)}
                clock = subprocess.Popen([sys.executable, "-m", "bot", "clock"], env=env,
                                         cwd=ROOT, stdout=subprocess.DEVNULL,
                                         stderr=subprocess.DEVNULL)
                try:
                    elapsed = _wait_until_sent(database.engine, settings.checkins, clock)
                    peak = _peak_rss_mb(clock.pid)
                finally:
                    clock.terminate()
                    clock.wait(timeout=30)
        finally:
            fake.stop()
        case = f"{settings.checkins:,} due check-ins, {backend}"
        report.add(case, "sent per second", settings.checkins / elapsed, "items/s",
                   target=RATE_TARGET if backend == "postgresql" else None, below=False)
        report.add(case, "time to send them all", elapsed, "s")
        report.add(case, "clock process peak memory (RSS)", peak, "MB", target=MEMORY_TARGET_MB)
    report.notes.append(
        "Each check-in is one chat.postMessage to the person's id; a tick's batch of check-ins "
        "is claimed in one UPDATE, posted PEERSUPPORT_SLACK_PARALLEL (8) at a time and recorded "
        "in one transaction. Timed from the clock's first claim to the last check-in marked "
        "sent, so process start-up is not counted. Peak memory is the clock process's "
        "VmHWM. PEERSUPPORT_DUEWORK_BATCH=100 and a grace period of a week: the check-ins "
        "fell due a minute before the clock started, and none should count as found late (late ones "
        "are spread over half an hour by design, which would time the policy, not the engine).")
    return report


def _wait_until_sent(engine, total: int, clock: subprocess.Popen) -> float:  # noqa: ANN001
    """Seconds from the clock's first claim to the last check-in marked sent, so process start-up
    is not counted (polled every 50 ms)."""
    claimed = select(func.count()).select_from(DueWork).where(
        DueWork.state != WorkState.PENDING)
    sent = select(func.count()).select_from(CheckIn).where(CheckIn.state == CheckInState.SENT)
    first_at = None
    while True:
        if clock.poll() is not None:
            raise RuntimeError(f"the clock process exited with {clock.returncode}")
        with engine.connect() as connection:
            if first_at is None and connection.execute(claimed).scalar_one():
                first_at = time.monotonic()
            done = first_at is not None and connection.execute(sent).scalar_one() >= total
        if done:
            assert first_at is not None
            return max(time.monotonic() - first_at, 0.05)
        time.sleep(0.05)
