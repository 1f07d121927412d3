"""Anonymous wellbeing prompts: posting, answering without identities, and their results."""

from __future__ import annotations

import hashlib
import hmac
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from bot.infra import duework
from bot.infra.aggregate import suppress
from bot.infra.clock import zone
from bot.infra.db import insert_for
from bot.infra.models import Pulse, PulseAnswer, PulseRun
from bot.pulses.timers import PULSE_CLOSE, PULSE_OPEN, close_key, open_key

RECURRENCES = {"once": "Once, now", "weekly": "Every week", "biweekly": "Every two weeks",
               "monthly": "Every month"}
OPEN_FOR = {4: "4 hours", 24: "1 day", 72: "3 days", 168: "1 week"}
FIVE_POINT = ("1", "2", "3", "4", "5")
MAX_QUESTION = 150
TREND_RUNS = 8


class PulseError(ValueError):
    """A prompt that cannot be posted or answered; the message is for the person."""

    def __init__(self, message: str, field: str | None = None):
        super().__init__(message)
        # Which of the prompt's fields the message is about, so a form can show it there.
        self.field = field


@dataclass(frozen=True)
class PulseSpec:
    """What the leader chose in the prompt modal."""

    question: str
    scale: str  # five_point or options
    options: tuple[str, ...]
    channel_id: str
    department: str
    recurrence: str
    weekday: int
    minute: int
    tz: str
    open_hours: int

    def check(self) -> None:
        """Refuse a prompt the modal could not have sent, or that cannot be shown."""
        if not self.question.strip() or len(self.question) > MAX_QUESTION:
            raise PulseError(f"Write a question of at most {MAX_QUESTION} characters.",
                             "question")
        if self.scale == "five_point":
            if len(self.options) != 5:
                raise PulseError("A 1 to 5 scale needs five labels.", "scale")
        elif self.scale == "options":
            if not 2 <= len(self.options) <= 6 or any(not o or len(o) > 75 for o in self.options):
                raise PulseError("Give 2 to 6 named answers, each at most 75 characters.",
                                 "options")
        else:
            raise PulseError("Choose a 1 to 5 scale or named answers.", "scale")
        if not self.channel_id:
            raise PulseError("Choose the channel to post in.", "channel")
        if self.recurrence not in RECURRENCES:
            raise PulseError("Choose how often to post it.", "recurrence")
        if self.open_hours not in OPEN_FOR:
            raise PulseError("Choose for how long answers are open.", "open_for")
        if not 0 <= self.weekday <= 6:
            raise PulseError("Choose a day.", "weekday")
        if not 0 <= self.minute < 1440:
            raise PulseError("Choose a time.", "time")
        if len(self.department) > 80:
            raise PulseError("A department label is at most 80 characters.", "department")


def responder_key(secret: str, run_id: int, user_id: str) -> str:
    """The stand-in for a person in one run: a keyed hash nobody can reverse without the key."""
    return hmac.new(secret.encode(), f"{run_id}:{user_id}".encode(), hashlib.sha256).hexdigest()


def next_occurrence(pulse: Pulse, after: datetime) -> datetime:
    """The next scheduled posting of a recurring prompt, in the leader's zone."""
    tz = zone(pulse.tz)
    local = after.astimezone(tz)
    at = time(pulse.minute // 60, pulse.minute % 60)
    if pulse.recurrence == "monthly":
        # The first given weekday of the next month whose date is after `after`.
        year, month = local.year, local.month
        for _ in range(3):
            first = local.replace(year=year, month=month, day=1)
            day = first + timedelta(days=(pulse.weekday - first.weekday()) % 7)
            moment = datetime.combine(day.date(), at, tzinfo=tz)
            if moment > local:
                return moment
            year, month = (year + 1, 1) if month == 12 else (year, month + 1)
    ahead = (pulse.weekday - local.weekday()) % 7
    moment = datetime.combine(local.date() + timedelta(days=ahead), at, tzinfo=tz)
    if moment <= local:
        moment = datetime.combine(local.date() + timedelta(days=ahead + 7), at, tzinfo=tz)
    return moment


def create(session: Session, leader_id: str, spec: PulseSpec, *, now: datetime) -> Pulse:
    """Save a prompt; a one-off opens now, a recurring one at its first scheduled time."""
    spec.check()
    pulse = Pulse(leader_id=leader_id, question=spec.question.strip(), scale=spec.scale,
                  options=list(spec.options), channel_id=spec.channel_id,
                  department=spec.department.strip(), recurrence=spec.recurrence,
                  weekday=spec.weekday, minute=spec.minute, tz=spec.tz,
                  open_hours=spec.open_hours, active=True, created_at=now)
    session.add(pulse)
    session.flush()
    first = now if spec.recurrence == "once" else next_occurrence(pulse, now)
    duework.schedule(session, PULSE_OPEN, first, now=now, payload={"pulse_id": pulse.id},
                     key=open_key(pulse.id, first))
    return pulse


def open_run(session: Session, pulse: Pulse, *, now: datetime) -> PulseRun:
    """Open a new run of a prompt, with its closing timer and the next posting scheduled."""
    run = PulseRun(pulse_id=pulse.id, state="open", opened_at=now,
                   closes_at=now + timedelta(hours=pulse.open_hours))
    session.add(run)
    session.flush()
    duework.schedule(session, PULSE_CLOSE, run.closes_at, now=now, payload={"run_id": run.id},
                     key=close_key(run.id))
    if pulse.recurrence != "once" and pulse.active:
        gap = timedelta(days=7) if pulse.recurrence == "biweekly" else timedelta(0)
        following = next_occurrence(pulse, now + gap + timedelta(minutes=1))
        duework.schedule(session, PULSE_OPEN, following, now=now, payload={"pulse_id": pulse.id},
                         key=open_key(pulse.id, following))
    return run


def answer(session: Session, run_id: int, user_id: str, choice: int, *, secret: str,
           now: datetime) -> PulseRun:
    """Record (or replace) one person's answer while the run is open; no identity is stored."""
    run = session.get(PulseRun, run_id)
    if run is None or run.state != "open" or now >= run.closes_at:
        raise PulseError("This prompt has closed. Thank you.")
    pulse = session.get(Pulse, run.pulse_id)
    if not 0 <= choice < len(pulse.options):
        raise PulseError("That is not one of the answers.")
    values = {"run_id": run_id, "responder": responder_key(secret, run_id, user_id),
              "choice": choice, "day": now.date()}
    session.execute(insert_for(session, PulseAnswer).values(**values).on_conflict_do_update(
        index_elements=["run_id", "responder"], set_={"choice": choice, "day": now.date()}))
    return run


def close_run(session: Session, run_id: int) -> PulseRun | None:
    """Close a run for answers; None if it was not open."""
    run = session.get(PulseRun, run_id)
    if run is None or run.state != "open":
        return None
    run.state = "closed"
    return run


@dataclass(frozen=True)
class RunResult:
    """One closed run's answers, or None where fewer than the minimum answered."""

    run_id: int
    opened_at: datetime
    respondents: int | None
    counts: tuple[int, ...] | None
    mean: float | None


@dataclass
class PulseResults:
    """Results for one prompt: its runs over time, and the departments asked the same question."""

    pulse: Pulse
    runs: list[RunResult] = field(default_factory=list)
    departments: dict[str, int | None] = field(default_factory=dict)
    department_total: int | None = None


def _run_result(pulse: Pulse, run: PulseRun, tally: Mapping[int, int], minimum: int
                ) -> RunResult:
    answered = sum(tally.values())
    if answered < minimum:
        return RunResult(run.id, run.opened_at, None, None, None)
    counts = tuple(tally.get(i, 0) for i in range(len(pulse.options)))
    mean = sum((choice + 1) * n for choice, n in tally.items()) / answered \
        if pulse.scale == "five_point" else None
    return RunResult(run.id, run.opened_at, answered, counts, mean)


def results(session: Session, pulse: Pulse, *, minimum: int) -> PulseResults:
    """Closed runs of a prompt (latest last), each hidden below the minimum group size, and the
    latest closed run of every prompt the same leader posted with the same question, by
    department, with complementary suppression."""
    closed = list(session.scalars(select(PulseRun).where(
        PulseRun.pulse_id == pulse.id, PulseRun.state == "closed")
        .order_by(PulseRun.opened_at.desc()).limit(TREND_RUNS)))[::-1]
    outcome = PulseResults(pulse)
    # Counted by the database, one grouped query for all the runs shown.
    tallies: dict[int, dict[int, int]] = {run.id: {} for run in closed}
    if closed:
        for run_id, choice, n in session.execute(
                select(PulseAnswer.run_id, PulseAnswer.choice, func.count())
                .where(PulseAnswer.run_id.in_(list(tallies)))
                .group_by(PulseAnswer.run_id, PulseAnswer.choice)):
            tallies[run_id][choice] = n
    for run in closed:
        outcome.runs.append(_run_result(pulse, run, tallies[run.id], minimum))
    siblings = session.scalars(select(Pulse).where(
        Pulse.leader_id == pulse.leader_id, Pulse.question == pulse.question))
    sizes: dict[str, int] = {}
    for sibling in siblings:
        latest = session.scalars(select(PulseRun.id).where(
            PulseRun.pulse_id == sibling.id, PulseRun.state == "closed")
            .order_by(PulseRun.opened_at.desc())).first()
        if latest is None:
            continue
        label = sibling.department or "No department"
        count = session.scalar(select(func.count()).select_from(PulseAnswer).where(
            PulseAnswer.run_id == latest)) or 0
        sizes[label] = sizes.get(label, 0) + count
    if len(sizes) > 1:
        cut = suppress(sizes, minimum)
        # Each department's own runs are shown elsewhere, so a total beside a hidden department
        # would give it away by subtraction: then there is no total at all.
        hidden = any(size is None for size in cut.groups.values())
        outcome.departments = cut.groups
        outcome.department_total = None if hidden else cut.total
    return outcome


def stop(session: Session, pulse_id: int, leader_id: str, *, now: datetime) -> Pulse:
    """Stop a recurring prompt: no more runs (an open run still closes and reports)."""
    pulse = session.get(Pulse, pulse_id)
    if pulse is None or pulse.leader_id != leader_id:
        raise PulseError("That prompt is not yours.")
    pulse.active = False
    duework.cancel(session, now=now, kind=PULSE_OPEN, payload_match={"pulse_id": pulse.id})
    return pulse


def leader_pulses(session: Session, leader_id: str) -> list[Pulse]:
    """A leader's prompts, newest first."""
    return list(session.scalars(select(Pulse).where(Pulse.leader_id == leader_id)
                                .order_by(Pulse.created_at.desc(), Pulse.id.desc())))


def trend_series(result: PulseResults) -> tuple[list[str], list[float | None], str]:
    """Chart data for a prompt: the average (1 to 5) or the number of answers per run; a hidden
    run is None, so the chart leaves a gap rather than a zero."""
    labels = [f"{run.opened_at:%d %b}" for run in result.runs]
    if result.pulse.scale == "five_point":
        return labels, [run.mean for run in result.runs], "Average (1 to 5)"
    return labels, [float(run.respondents) if run.respondents is not None else None
                    for run in result.runs], "Answers"


def results_csv(all_results: Sequence[PulseResults]) -> str:
    """Aggregates only, the same suppression as everywhere: one row per closed run."""
    import csv
    import io

    out = io.StringIO()
    writer = csv.writer(out, lineterminator="\n")
    writer.writerow(["question", "department", "opened", "answers", "average", "counts"])
    for result in all_results:
        pulse = result.pulse
        for run in result.runs:
            if run.respondents is None:
                writer.writerow([pulse.question, pulse.department, f"{run.opened_at:%Y-%m-%d}",
                                 "hidden", "", ""])
                continue
            counts = "; ".join(f"{label}={count}" for label, count in
                               zip(pulse.options, run.counts or (), strict=False))
            average = f"{run.mean:.2f}" if run.mean is not None else ""
            writer.writerow([pulse.question, pulse.department, f"{run.opened_at:%Y-%m-%d}",
                             run.respondents, average, counts])
    return out.getvalue()
