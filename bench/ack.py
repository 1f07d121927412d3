"""Acknowledgement under load: the real app and a bare Bolt app behind the same gunicorn server,
the same signed requests, 16 and 64 closed-loop clients. The real app runs twice side by side:
sending the messages a click leads to itself, and handing them to a clock process that
PostgreSQL wakes as each click commits (what the outbox's hand-over adds to an Accept, and
what it takes off the acknowledging process)."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta

from sqlalchemy import Engine, func, insert, select

from bench import cpu, seeds
from bench.common import Report, percentile, scratch_database, stand_in_uncollected
from bench.load import LoadResult, Scenario, drive_elsewhere
from bench.seeds import NOW
from bench.servers import SIGNING_SECRET, clock, clock_listening, server, server_pids
from bot.infra.models import (
    CheckIn,
    CheckInState,
    DueWork,
    Offer,
    OfferState,
    Pulse,
    PulseRun,
    RequestState,
    SupportRequest,
)
from bot.sandbox.slack_api import FakeSlack

P99_TARGET_MS = 300.0
PULSE_SECRET = "bench-pulse-secret-" + "x" * 24
KINDS = ("command", "accept", "checkin", "prompt")
# The apps each load drives, by label: the bare one, and ours sending its own messages or
# handing them to the clock (production's shape on PostgreSQL).
APPS = {"bare": "bare Bolt", "web": "ours, web sends", "clock": "ours, clock sends"}


@dataclass
class Settings:
    """How hard and how long to push."""

    clients: tuple[int, ...] = (16, 64)
    seconds: float = 5.0
    warmup: float = 1.0
    supporters: int = 1000  # enough that no run of Accepts meets their case caps
    offers_per_request: int = 5
    seeds_per_run: int = 8000


def _seed(engine: Engine, fake: FakeSlack, settings: Settings, runs: int
          ) -> dict[str, list[list[tuple[object, ...]]]]:
    """Supporters, open requests with offers out, and sent check-ins: one fresh slice per run, so
    every run clicks offers and check-ins nobody has answered yet."""
    supporters = seeds.supporters(engine, fake, settings.supporters)
    slices: dict[str, list[list[tuple[object, ...]]]] = {kind: [] for kind in KINDS}
    now = datetime.now(UTC)  # the app answers prompts by its own clock: open now, for a day
    with engine.begin() as connection:
        pulse_id = connection.execute(insert(Pulse).values(
            leader_id="ULEAD00001", question="How are you holding up this week?",
            scale="five_point", options=["1", "2", "3", "4", "5"], channel_id="C0ALLSTAFF",
            recurrence="once", open_hours=24, active=True, created_at=now)
            .returning(Pulse.id)).scalar_one()
        run_id = connection.execute(insert(PulseRun).values(
            pulse_id=pulse_id, state="open", opened_at=now, closes_at=now + timedelta(days=1))
            .returning(PulseRun.id)).scalar_one()
    request_id = offer_id = checkin_id = 0
    for run in range(runs):
        requests, offers, checkins, accepts, answers = [], [], [], [], []
        for _ in range(settings.seeds_per_run // settings.offers_per_request):
            request_id += 1
            requester = f"UREQ{request_id:07d}"
            requests.append({"id": request_id, "requester_id": requester, "urgency": "today",
                             "connection": "slack", "state": RequestState.OPEN, "wave": 1,
                             "created_at": NOW})
            for k in range(settings.offers_per_request):
                offer_id += 1
                supporter = supporters[(request_id * settings.offers_per_request + k)
                                       % len(supporters)]
                offers.append({"id": offer_id, "request_id": request_id,
                               "supporter_id": supporter, "wave": 1,
                               "state": OfferState.PENDING, "created_at": NOW})
                accepts.append((offer_id, supporter))
            # The same people, supported earlier, have a check-in waiting for an answer.
            for _ in range(settings.offers_per_request):
                checkin_id += 1
                checkins.append({"id": checkin_id, "request_id": request_id,
                                 "user_id": requester, "number": 1, "planned_for": NOW,
                                 "due_at": NOW, "state": CheckInState.SENT, "sent_at": NOW})
                answers.append((checkin_id, requester))
        with engine.begin() as connection:
            connection.execute(insert(SupportRequest), requests)
            connection.execute(insert(Offer), offers)
            connection.execute(insert(CheckIn), checkins)
        slices["accept"].append(accepts)
        slices["checkin"].append(answers)
        slices["command"].append([(f"UASK{run:02d}{n:05d}",) for n in range(2000)])
        slices["prompt"].append([(run_id, f"USTAFF{run:02d}{n:05d}", n % 5) for n in range(4000)])
    return slices


def _settle(fake: FakeSlack, quiet: float = 1.0) -> float:
    """Seconds until the app's Web API calls stop (none for `quiet` seconds)."""
    started = time.monotonic()
    seen, last_change = -1, started
    while True:
        count = len(fake.calls) + len(fake.responses)
        now = time.monotonic()
        if count != seen:
            seen, last_change = count, now
        elif now - last_change >= quiet:
            return last_change - started
        time.sleep(0.05)


def _case(kind: str) -> str:
    return {"command": "/peersupport (opens the form)", "accept": "Accept click",
            "checkin": "check-in answer", "prompt": "wellbeing prompt answer"}[kind]


def run(settings: Settings | None = None) -> Report:
    """Measure the three apps under each load and report ours beside the bare one."""
    settings = settings or Settings()
    report = Report("ack")
    fake = FakeSlack().start()
    try:
        with scratch_database("postgresql") as database:
            slices = _seed(database.engine, fake, settings, runs=len(settings.clients) * 2)
            env = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": fake.api_url,
                   "DATABASE_URL": database.url, "PEERSUPPORT_PULSE_SECRET": PULSE_SECRET}
            respond_to = fake.base_url + "respond/1"
            problems: list[str] = []
            with clock(env, problems, ready=lambda: clock_listening(database.engine)), \
                    server("bot", ["web"], {**env, "PEERSUPPORT_DELIVERY": "web"},
                           problems) as web, \
                    server("bot", ["web"], env, problems) as handing_over, \
                    server("bench.bare_app", [], {"SLACK_API_URL": fake.api_url}) as bare:
                urls = {"bare": bare, "web": web, "clock": handing_over}
                for index, clients in enumerate(settings.clients):
                    for kind in KINDS:
                        case = f"{_case(kind)}, {clients} clients"
                        results: dict[str, LoadResult] = {}
                        cores: dict[str, dict[str, float]] = {}
                        rows: dict[str, float] = {}
                        for app, url in urls.items():
                            own = index * 2 + (1 if app == "clock" else 0)
                            scenario = Scenario(kind, slices[kind][own])
                            # Where the processors went during the measured part of the load.
                            window = cpu.Window(_groups(url), settings.warmup + 0.2,
                                                settings.seconds - 0.4)
                            before = _effects(database.engine)
                            with stand_in_uncollected():
                                results[app] = drive_elsewhere(
                                    url, SIGNING_SECRET, respond_to, scenario, clients,
                                    settings.seconds, settings.warmup)
                                cores[app] = window.cores()
                                # Work runs after each acknowledgement: let it finish before
                                # the next load, and say how long it took.
                                lag = _settle(fake)
                            if app != "bare":
                                report.add(case, f"{APPS[app]}: work done after the load", lag,
                                           "s")
                                sent = _effects(database.engine) - before
                                answered = results[app].answered
                                rows[app] = sent / answered if answered else 0.0
                        _record(report, case, results, clients)
                        _record_cpu(report, case, results, cores)
                        if kind == "accept":
                            for app in ("web", "clock"):
                                report.add(case, f"{APPS[app]}: outbox messages per request",
                                           rows.get(app, 0.0), "messages")
                        print(f"  ack: {case}: " + ", ".join(
                            f"{APPS[app]} {results[app].per_second:.0f} req/s" for app in urls),
                            file=sys.stderr, flush=True)
                fake.calls.clear()
            report.add("all loads", "errors in our servers' and clock's logs", len(problems),
                       "lines", target=1)
    finally:
        fake.stop()
    report.notes.append(
        f"Closed-loop clients in a separate process, {settings.seconds:g} s measured after "
        f"{settings.warmup:g} s warm-up per load; every app served by gunicorn gthread "
        "(WEB_CONCURRENCY=2, PEERSUPPORT_WEB_THREADS=8) on PostgreSQL, Slack stand-in with no "
        "added latency, one load at a time. 'Ours, web sends' sends the messages a click leads "
        "to from the process that acknowledged it, after its answer (PEERSUPPORT_DELIVERY=web); "
        "'ours, clock sends' hands them to a clock process that PostgreSQL's LISTEN/NOTIFY wakes "
        "as the click commits (the default on PostgreSQL): the form's messages, and the Accept, "
        "check-in and prompt clicks themselves, which the web records and commits before "
        "answering and the clock applies, so its server CPU is recording and answering and the "
        "clock's is the rest; the clock runs at its default lower priority "
        "(PEERSUPPORT_CLOCK_NICE=10). "
        "Each Accept and check-in click "
        "targets an offer or check-in nobody has answered yet; offers go out five to a request, "
        "so one click in five wins, and 'outbox messages per request' counts the messages the "
        "outbox recorded for it. Prompt answers come from different people to one open prompt. "
        "Every message a change implies is recorded in its transaction before it is sent, by "
        "design, so there is no Accept without the outbox to compare: the two ways of sending "
        "show what recording costs the acknowledging process and what sending costs. The "
        "benchmark process, where the Slack stand-in runs and keeps every call, collects no "
        "garbage during a load.")
    return report


def _effects(engine: Engine) -> int:
    """Outbox messages recorded so far."""
    with engine.connect() as connection:
        return connection.scalar(select(func.count()).select_from(DueWork).where(
            DueWork.kind.like("effect.%"))) or 0


def _groups(url: str) -> dict[str, Callable[[int, str], bool]]:
    """The processes that share the machine during a load, by what they are: the server being
    driven is the one serving `url` (its gunicorn master and workers)."""
    own = os.getpid()
    serving = server_pids(url)()  # its workers are up by now, and stay for the load
    return {"server": lambda pid, _command: pid in serving,
            "clock": lambda _pid, command: "-m bot clock" in command,
            "PostgreSQL": lambda _pid, command: command.startswith("postgres"),
            "Slack stand-in": lambda pid, _command: pid == own,
            "load generator": lambda _pid, command: "-m bench.load" in command}


def _record_cpu(report: Report, case: str, results: dict[str, LoadResult],
                cores: dict[str, dict[str, float]]) -> None:
    for app, label in APPS.items():
        rate = results[app].per_second
        if not cores.get(app) or not rate:
            continue
        groups = ("server",) if app == "bare" else (
            "server", "clock", "PostgreSQL", "Slack stand-in")
        for group in groups:
            report.add(case, f"{label}: {group} CPU per request",
                       cores[app].get(group, 0.0) / rate * 1000, "ms")
        report.add(case, f"{label}: processors busy (all)", sum(cores[app].values()), "CPUs")


def _record(report: Report, case: str, results: dict[str, LoadResult], clients: int) -> None:
    p99_target = P99_TARGET_MS if clients >= 64 else None
    for app, label in APPS.items():
        result = results[app]
        report.add(case, f"{label}: requests/s", result.per_second, "req/s")
        report.add(case, f"{label}: p50", percentile(result.latencies, 0.5) * 1000, "ms")
        report.add(case, f"{label}: p99", percentile(result.latencies, 0.99) * 1000, "ms",
                   target=p99_target if app == "clock" else None)
        if app != "bare":
            failed = result.errors + sum(n for status, n in result.statuses.items()
                                         if status != 200)
            report.add(case, f"{label}: failed or non-200", failed, "requests", target=1)
