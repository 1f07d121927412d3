"""Acknowledgement under load: the real app and a bare Bolt app behind the same gunicorn server,
the same signed requests, 16 and 64 closed-loop clients."""

from __future__ import annotations

import os
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, insert

from bench import cpu, seeds
from bench.common import Report, percentile, scratch_database
from bench.load import LoadResult, Scenario, drive_elsewhere
from bench.seeds import NOW
from bench.servers import SIGNING_SECRET, server
from bot.infra.models import CheckIn, CheckInState, Offer, OfferState, RequestState, SupportRequest
from bot.sandbox.slack_api import FakeSlack

P99_TARGET_MS = 300.0
THROUGHPUT_TARGET = 0.7


@dataclass
class Settings:
    """How hard and how long to push."""

    clients: tuple[int, ...] = (16, 64)
    seconds: float = 5.0
    warmup: float = 1.0
    supporters: int = 200
    offers_per_request: int = 5
    seeds_per_run: int = 8000


def _seed(engine: Engine, fake: FakeSlack, settings: Settings, runs: int
          ) -> dict[str, list[list[tuple[object, ...]]]]:
    """Supporters, open requests with offers out, and sent check-ins: one fresh slice per run, so
    every run clicks offers and check-ins nobody has answered yet."""
    supporters = seeds.supporters(engine, fake, settings.supporters)
    slices: dict[str, list[list[tuple[object, ...]]]] = {"accept": [], "checkin": [], "command": []}
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
            "checkin": "check-in answer"}[kind]


def run(settings: Settings | None = None) -> Report:
    """Measure both apps under each load and report ours as a ratio to the bare one."""
    settings = settings or Settings()
    report = Report("ack")
    kinds = ("command", "accept", "checkin")
    fake = FakeSlack().start()
    try:
        with scratch_database("postgresql") as database:
            slices = _seed(database.engine, fake, settings, runs=len(settings.clients))
            env = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": fake.api_url,
                   "DATABASE_URL": database.url}
            respond_to = fake.base_url + "respond/1"
            problems: list[str] = []
            with server("bot", ["web"], env, problems) as ours, \
                    server("bench.bare_app", [], {"SLACK_API_URL": fake.api_url}) as bare:
                for index, clients in enumerate(settings.clients):
                    for kind in kinds:
                        scenario = Scenario(kind, slices[kind][index])
                        results: dict[str, LoadResult] = {}
                        cores: dict[str, dict[str, float]] = {}
                        for name, url in (("bare", bare), ("ours", ours)):
                            # Where the processors went during the measured part of the load.
                            window = cpu.Window(_groups(name), settings.warmup + 0.2,
                                                settings.seconds - 0.4)
                            results[name] = drive_elsewhere(url, SIGNING_SECRET, respond_to, scenario,
                                                            clients, settings.seconds,
                                                            settings.warmup)
                            cores[name] = window.cores()
                            # Work runs after each acknowledgement: let it finish before the next
                            # load, and say how long it took.
                            lag = _settle(fake)
                            if name == "ours":
                                report.add(f"{_case(kind)}, {clients} clients",
                                           "ours: work done after the load", lag, "s")
                        _record(report, f"{_case(kind)}, {clients} clients", results, clients)
                        _record_cpu(report, f"{_case(kind)}, {clients} clients", results, cores)
                        print(f"  ack: {_case(kind)}, {clients} clients: "
                              f"{results['ours'].per_second:.0f} vs "
                              f"{results['bare'].per_second:.0f} req/s", file=sys.stderr, flush=True)
                fake.calls.clear()
            report.add("all loads", "errors in our server's log", len(problems), "lines", target=1)
    finally:
        fake.stop()
    report.notes.append(
        f"Closed-loop clients in a separate process, {settings.seconds:g} s measured after "
        f"{settings.warmup:g} s warm-up per load; both apps served by gunicorn gthread "
        "(WEB_CONCURRENCY=2, PEERSUPPORT_WEB_THREADS=8) on PostgreSQL, Slack stand-in with no "
        "added latency. Each Accept and check-in click targets an offer or check-in nobody has "
        "answered yet; offers go out five to a request, so one click in five wins.")
    return report


def _groups(app: str) -> dict[str, Callable[[int, str], bool]]:
    """The processes that share the machine during a load, by what they are."""
    own = os.getpid()
    server = "-m bot web" if app == "ours" else "-m bench.bare_app"
    return {"server": lambda _pid, command: server in command,
            "PostgreSQL": lambda _pid, command: command.startswith("postgres"),
            "Slack stand-in": lambda pid, _command: pid == own,
            "load generator": lambda _pid, command: "-m bench.load" in command}


def _record_cpu(report: Report, case: str, results: dict[str, LoadResult],
                cores: dict[str, dict[str, float]]) -> None:
    for app, label in (("bare", "bare Bolt"), ("ours", "ours")):
        rate = results[app].per_second
        if not cores.get(app) or not rate:
            continue
        for group in ("server", "PostgreSQL", "Slack stand-in"):
            if group != "server" and app == "bare":
                continue  # the bare app touches neither
            report.add(case, f"{label}: {group} CPU per request",
                       cores[app].get(group, 0.0) / rate * 1000, "ms")
        report.add(case, f"{label}: processors busy (all)", sum(cores[app].values()), "CPUs")


def _record(report: Report, case: str, results: dict[str, LoadResult], clients: int) -> None:
    ours, bare = results["ours"], results["bare"]
    p99_target = P99_TARGET_MS if clients >= 64 else None
    report.add(case, "bare Bolt: requests/s", bare.per_second, "req/s")
    report.add(case, "bare Bolt: p50", percentile(bare.latencies, 0.5) * 1000, "ms")
    report.add(case, "bare Bolt: p99", percentile(bare.latencies, 0.99) * 1000, "ms")
    report.add(case, "ours: requests/s", ours.per_second, "req/s")
    report.add(case, "ours: p50", percentile(ours.latencies, 0.5) * 1000, "ms")
    report.add(case, "ours: p99", percentile(ours.latencies, 0.99) * 1000, "ms",
               target=p99_target)
    ratio = ours.per_second / bare.per_second if bare.per_second else 0.0
    report.add(case, "ours / bare throughput", ratio, "×", target=THROUGHPUT_TARGET, below=False)
    failed = ours.errors + sum(n for status, n in ours.statuses.items() if status != 200)
    report.add(case, "ours: failed or non-200", failed, "requests", target=1)
