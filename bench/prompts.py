"""A wellbeing prompt's burst: a leader's prompt in an all-staff channel of 10,000 members,
answered by 5,000 people within a minute, some clicking twice. Open-loop: each click is sent at
its own random time however the earlier ones are doing, from a process of its own."""

from __future__ import annotations

import http.client
import json
import os
import random
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from sqlalchemy import Engine, select

from bench import cpu
from bench.ack import _settle
from bench.common import Report, percentile, scratch_database, stand_in_uncollected
from bench.load import Scenario, body_maker
from bench.servers import ROOT, SIGNING_SECRET, clock, server
from bot.infra.models import PulseAnswer
from bot.pulses.service import FIVE_POINT, responder_key
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action, Block, Callback
from handlers.pulses.blocks import OWN

P99_TARGET_MS = 1000.0
LEADER = "ULEAD00001"
CHANNEL = "C0ALLSTAFF"
PULSE_SECRET = "bench-pulse-secret-" + "x" * 24  # the app refuses one under 32 characters
THREADS = 256
# Seconds between the load generator being ready and its first click: room for the CPU
# snapshot to be taken first.
LEAD = 0.5


@dataclass(frozen=True)
class Settings:
    """The channel, who answers, over how long, and how many click more than once."""

    members: int = 10_000
    answers: int = 5_000  # distinct people answering
    seconds: float = 60.0
    double_click_share: float = 0.02  # of those answering, who click a second time
    changed_share: float = 0.5  # of those, who pick another answer rather than double-click
    double_click_gap: tuple[float, float] = (0.05, 0.4)  # seconds: the same button twice
    change_gap: tuple[float, float] = (2.0, 10.0)  # seconds: a second thought
    seed: int = 20260302


TINY = Settings(members=200, answers=100, seconds=2.0, double_click_share=0.1,
                change_gap=(0.5, 1.5))


@dataclass
class Burst:
    """The clicks to send: (run id, who, which answer) at offsets (seconds) from the start."""

    items: list[tuple[int, str, int]] = field(default_factory=list)
    offsets: list[float] = field(default_factory=list)

    def final(self) -> dict[str, int]:
        """Each person's answer as they last sent it."""
        last: dict[str, tuple[float, int]] = {}
        for (_run, user, choice), at in zip(self.items, self.offsets, strict=True):
            if user not in last or at >= last[user][0]:
                last[user] = (at, choice)
        return {user: choice for user, (_at, choice) in last.items()}


def plan(settings: Settings, run_id: int, members: list[str]) -> Burst:
    """Who answers when: arrivals at uniform random times over the period (a Poisson process
    given its count), a share clicking a second time, all from a seeded generator."""
    rng = random.Random(settings.seed)
    people = rng.sample(members, min(settings.answers, len(members)))
    clicks: list[tuple[float, tuple[int, str, int]]] = []
    for user in people:
        at, choice = rng.uniform(0, settings.seconds), rng.randrange(len(FIVE_POINT))
        clicks.append((at, (run_id, user, choice)))
        if rng.random() < settings.double_click_share:
            if rng.random() < settings.changed_share:
                other = rng.choice([c for c in range(len(FIVE_POINT)) if c != choice])
                clicks.append((at + rng.uniform(*settings.change_gap), (run_id, user, other)))
            else:
                clicks.append((at + rng.uniform(*settings.double_click_gap),
                               (run_id, user, choice)))
    clicks.sort(key=lambda click: click[0])
    return Burst([item for _at, item in clicks], [at for at, _item in clicks])


def _form() -> dict[str, Any]:
    """The prompt modal as a leader fills it in: their own 1-to-5 question, once, in the
    all-staff channel, open for a day."""

    def radio(value: str) -> dict[str, Any]:
        return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}

    return {
        Block.PRESET: {Action.FIELD: {"type": "static_select",
                                      "selected_option": {"value": OWN}}},
        Block.QUESTION: {Action.FIELD: {"type": "plain_text_input",
                                        "value": "How are you holding up this week?"}},
        Block.SCALE: radio("five_point"),
        Block.CHANNEL: {Action.FIELD: {"type": "conversations_select",
                                       "selected_conversation": CHANNEL}},
        Block.PULSE_DEPARTMENT: {Action.FIELD: {"type": "plain_text_input", "value": ""}},
        Block.RECURRENCE: radio("once"),
        Block.OPEN_FOR: radio("24"),
    }


def _posted_run(fake: FakeSlack, timeout: float = 60.0) -> int:
    """The run id the prompt's answer buttons carry, once the clock has posted it."""
    def in_channel(call: Any) -> bool:
        return call.args.get("channel") == CHANNEL and Action.PULSE_ANSWER in json.dumps(
            call.args.get("blocks"))

    call = fake.wait_for("chat.postMessage", in_channel, timeout=timeout)[0]
    blocks = call.args["blocks"]
    blocks = json.loads(blocks) if isinstance(blocks, str) else blocks
    for block in blocks:
        for element in block.get("elements", []):
            if str(element.get("action_id", "")).startswith(Action.PULSE_ANSWER):
                return int(element["value"])
    raise RuntimeError("the posted prompt has no answer buttons")


def _stored(engine: Engine, run_id: int) -> dict[str, int]:
    """The run's stored answers: responder key to choice."""
    with engine.connect() as connection:
        return dict(connection.execute(select(PulseAnswer.responder, PulseAnswer.choice)
                                       .where(PulseAnswer.run_id == run_id)).all())


def run(settings: Settings | None = None) -> Report:
    """Post a prompt as a leader, then send the burst of answers and check every one counted."""
    settings = settings or Settings()
    report = Report("prompts")
    fake = FakeSlack().start()
    problems: list[str] = []
    try:
        members = [f"UMEMBER{n:05d}" for n in range(settings.members)]
        for user_id in [LEADER, *members]:
            fake.add_user(user_id, tz="UTC")
        fake.add_channel(CHANNEL, "all-staff")
        fake.set_members(CHANNEL, [LEADER, *members])
        with scratch_database("postgresql") as database:
            env = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": fake.api_url,
                   "DATABASE_URL": database.url, "PEERSUPPORT_PULSE_SECRET": PULSE_SECRET,
                   "PEERSUPPORT_LEADERS": LEADER, "PEERSUPPORT_TICK_SECONDS": "1"}
            with server("bot", ["web"], env, problems) as url, clock(env, problems):
                submitted = time.time()
                reply = SlackDriver(url, SIGNING_SECRET, fake).view_submission(
                    LEADER, Callback.PULSE, _form(), private_metadata="UTC")
                if reply.status != 200 or reply.body:
                    raise RuntimeError(f"the prompt form was refused: {reply.status} {reply.body}")
                run_id = _posted_run(fake)
                _settle(fake, quiet=0.5)  # the leader's guidance DM, the clock's start-up work
                # Slack's trigger ids stand for deliveries; the load generator numbers its own
                # from 1 with the current second, so it must not share the leader's second.
                time.sleep(max(0.0, int(submitted) + 1 - time.time()))
                burst = plan(settings, run_id, members)
                confirmed_before = len(fake.responses)
                with stand_in_uncollected():
                    result, used = _send(url, fake.base_url + "respond/1", burst, settings)
                    settling = time.time()
                    # From the last click's answer to the app's last Slack call (the private
                    # confirmations go out after each acknowledgement).
                    tail = max(settling + _settle(fake) - result["last_answer_at"], 0.0)
                after = cpu.snapshot(_groups())
                confirmations = sum("recorded anonymously" in str(body.get("text"))
                                    for body in fake.responses[confirmed_before:])
            stored = _stored(database.engine, run_id)
    finally:
        fake.stop()
    _record(report, settings, burst, result, stored, confirmations, tail,
            cpu.spent(used.before, after) if used.before else {}, used.cores())
    report.add(_case(settings), "errors in the server's and clock's logs", len(problems),
               "lines", target=1)
    report.notes.append(_notes(settings))
    return report


def _notes(settings: Settings) -> str:
    """What the burst is, in words, for BENCHMARKS.md."""
    return (
        "A leader posts a 1-to-5 prompt through the prompt form (a signed view submission); the "
        "clock process (`python -m bot clock`, ticking every second, left running as in "
        f"production) posts it in a channel of {settings.members:,} members. Then "
        f"{settings.answers:,} of them answer at uniform random times over {settings.seconds:g} s "
        "(a Poisson process given its count, seeded). "
        f"{settings.double_click_share:.0%} click a second time: "
        f"{1 - settings.changed_share:.0%} of those the same button "
        f"{settings.double_click_gap[0]:g}-{settings.double_click_gap[1]:g} s later (a double "
        f"click), {settings.changed_share:.0%} another answer "
        f"{settings.change_gap[0]:g}-{settings.change_gap[1]:g} s later, so the clicks run on "
        f"past {settings.seconds:g} s by up to {settings.change_gap[1]:g} s. Open-loop: a "
        f"separate process sends each click at its scheduled time on up to {THREADS} threads "
        "with keep-alive connections, and latency runs from the scheduled time to the answer, "
        "so a slow server cannot slow the arrivals down. An even spread is kinder than a real "
        "channel, where most answers come in the first seconds after the post. Served by "
        "gunicorn gthread (WEB_CONCURRENCY=2, PEERSUPPORT_WEB_THREADS=8) on PostgreSQL; the "
        "Slack stand-in answers at once and takes each click's private confirmation at its "
        "response_url, in the benchmark's process, which collects no garbage during the "
        "burst. Counted wrongly: people whose answer is missing from the database plus "
        "stored answers that are nobody's, compared by each person's responder key for the run "
        "(the app keeps one row a person, so a double click must not add one); 'not the last "
        "one sent' counts people whose stored choice is not their later click. CPU is per "
        "click, from the start of the burst until the app's Slack calls settle, over every "
        "process of each group (PostgreSQL includes any other client on the machine).")


def _groups() -> dict[str, Callable[[int, str], bool]]:
    """The processes that share the machine during the burst, by what they are."""
    own = os.getpid()
    return {"server": lambda _pid, command: "-m bot web" in command,
            "clock": lambda _pid, command: "-m bot clock" in command,
            "PostgreSQL": lambda _pid, command: command.startswith("postgres"),
            "Slack stand-in": lambda pid, _command: pid == own,
            "load generator": lambda _pid, command: "-m bench.prompts" in command}


def _send(url: str, respond_to: str, burst: Burst, settings: Settings
          ) -> tuple[dict[str, Any], cpu.Window]:
    """Run the open-loop generator (`python -m bench.prompts`), with a CPU window over the
    burst from its first scheduled click."""
    order = {"url": url, "secret": SIGNING_SECRET, "respond_to": respond_to,
             "items": burst.items, "offsets": burst.offsets}
    errors = tempfile.TemporaryFile()
    process = subprocess.Popen([sys.executable, "-m", "bench.prompts"], cwd=ROOT,
                               stdin=subprocess.PIPE, stdout=subprocess.PIPE, stderr=errors,
                               text=True)
    # Stopped if it runs far past its schedule, rather than waiting for ever.
    guard = threading.Timer(settings.seconds + 300, process.kill)
    guard.start()
    try:
        assert process.stdin is not None and process.stdout is not None
        process.stdin.write(json.dumps(order))
        process.stdin.close()
        ready = process.stdout.readline()  # its start time, once its bodies are built
        window = cpu.Window(_groups(), max(json.loads(ready)["start_at"] - time.time(), 0.0)
                            if ready else 0.0, settings.seconds)
        output = process.stdout.read()
        process.wait()
    finally:
        guard.cancel()
    if process.returncode != 0 or not ready:
        errors.seek(0)
        raise RuntimeError(f"the load generator failed: {errors.read().decode()[-500:]}")
    errors.close()
    return json.loads(output), window


def _case(settings: Settings) -> str:
    return (f"prompt to {settings.members:,} members, {settings.answers:,} answering "
            f"in {settings.seconds:g} s")


def _record(report: Report, settings: Settings, burst: Burst, result: dict[str, Any],
            stored: dict[str, int], confirmations: int, tail: float,
            spent: dict[str, float], cores: dict[str, float]) -> None:
    case = _case(settings)
    run_id = burst.items[0][0] if burst.items else 0
    final = {responder_key(PULSE_SECRET, run_id, user): choice
             for user, choice in burst.final().items()}
    missing = sum(1 for key in final if key not in stored)
    strangers = sum(1 for key in stored if key not in final)
    clicks = len(burst.items)
    latencies = [value * 1000 for value in result["latencies"]]
    failed = result["errors"] + sum(n for status, n in result["statuses"].items()
                                    if status != "200")
    took = result["took"]
    report.add(case, "answer clicks sent", clicks, "clicks")
    report.add(case, "distinct people who answered", len(final), "people")
    report.add(case, "answers stored", len(stored), "answers")
    report.add(case, "answers counted wrongly", missing + strangers, "answers", target=1)
    report.add(case, "stored answer not the last one sent", sum(
        1 for key, choice in final.items() if key in stored and stored[key] != choice), "answers")
    report.add(case, "clicks without a private confirmation", max(clicks - confirmations, 0),
               "clicks")
    report.add(case, "ack p50", percentile(latencies, 0.5), "ms")
    report.add(case, "ack p99", percentile(latencies, 0.99), "ms", target=P99_TARGET_MS)
    report.add(case, "answers per second offered", clicks / settings.seconds, "answers/s")
    report.add(case, "answers per second achieved", len(latencies) / took if took else 0.0,
               "answers/s")
    report.add(case, "burst took (first click to last answer)", took, "s")
    report.add(case, "failed or non-200", failed, "clicks", target=1)
    report.add(case, "app's Slack calls settled after the last answer", tail, "s")
    report.add(case, "load generator: sent late (p99)",
               percentile([value * 1000 for value in result["delays"]], 0.99), "ms")
    report.add(case, "load generator: reconnects", result["reconnects"], "connections")
    for group in ("server", "clock", "PostgreSQL", "Slack stand-in"):
        report.add(case, f"{group} CPU per click", spent.get(group, 0.0) / clicks * 1000
                   if clicks else 0.0, "ms")
    busy = sum(value for group, value in cores.items() if group != "load generator")
    report.add(case, "processors busy during the burst (app, database, Slack)", busy, "CPUs")


# -- the open-loop load generator, in its own process ----------------------------------------


class _Connections:
    """Keep-alive connections, the most recently used first, so an idle one that the server
    may have closed is picked last."""

    def __init__(self, url: str):
        parts = urlsplit(url)
        self.host, self.port, self.path = parts.hostname, parts.port, parts.path
        self.idle: list[http.client.HTTPConnection] = []
        self.lock = threading.Lock()

    def take(self) -> tuple[http.client.HTTPConnection, bool]:
        """A connection, and whether it was used before."""
        with self.lock:
            if self.idle:
                return self.idle.pop(), True
        return http.client.HTTPConnection(self.host, self.port, timeout=30), False

    def give(self, connection: http.client.HTTPConnection) -> None:
        with self.lock:
            self.idle.append(connection)


def drive(order: dict[str, Any], ready: Callable[[float], None]) -> dict[str, Any]:
    """Send each click at its offset from the start (calling `ready` with the start's wall time
    first); latency runs from the scheduled moment to the answer."""
    items = [tuple(item) for item in order["items"]]
    offsets: list[float] = order["offsets"]
    make = body_maker(Scenario("prompt", items), order["secret"], order["respond_to"])
    signer = SlackDriver("http://unused/", order["secret"])
    # Built (and signed) before the start, so sending is all the burst does.
    requests = []
    for n in range(len(items)):
        body, content_type = make(n)
        requests.append((body.encode(), {"Content-Type": content_type,
                                          **signer.signature_headers(body)}))
    pool = _Connections(order["url"])
    latencies = [0.0] * len(items)
    delays = [0.0] * len(items)
    done_at = [0.0] * len(items)
    statuses: dict[str, int] = {}
    counts = {"errors": 0, "reconnects": 0}
    lock = threading.Lock()
    start = time.monotonic() + LEAD
    ready(time.time() + LEAD)

    def post(connection: http.client.HTTPConnection, n: int) -> int:
        body, headers = requests[n]
        connection.request("POST", pool.path, body=body, headers=headers)
        response = connection.getresponse()
        response.read()
        return response.status

    def send(n: int) -> None:
        scheduled = start + offsets[n]
        delays[n] = time.monotonic() - scheduled
        connection, reused = pool.take()
        try:
            status = post(connection, n)
        except (OSError, http.client.HTTPException):
            connection.close()
            if not reused:
                with lock:
                    counts["errors"] += 1
                return
            # The server closes keep-alive connections left idle: send again on a new one.
            # Should the first copy have arrived after all, the app drops the repeated delivery.
            connection = http.client.HTTPConnection(pool.host, pool.port, timeout=30)
            with lock:
                counts["reconnects"] += 1
            try:
                status = post(connection, n)
            except (OSError, http.client.HTTPException):
                connection.close()
                with lock:
                    counts["errors"] += 1
                return
        done = time.monotonic()
        pool.give(connection)
        latencies[n], done_at[n] = done - scheduled, done
        with lock:
            statuses[str(status)] = statuses.get(str(status), 0) + 1

    with ThreadPoolExecutor(max_workers=THREADS) as executor:
        for n, offset in enumerate(offsets):
            pause = start + offset - time.monotonic()
            if pause > 0:
                time.sleep(pause)
            executor.submit(send, n)
    for connection in pool.idle:
        connection.close()
    answered = [n for n in range(len(items)) if done_at[n]]
    return {"latencies": [latencies[n] for n in answered], "delays": delays,
            "statuses": statuses, "errors": counts["errors"],
            "reconnects": counts["reconnects"],
            # From the first click's scheduled moment to the last answer.
            "took": max((done_at[n] for n in answered), default=start) - start - offsets[0]
            if offsets else 0.0,
            "last_answer_at": time.time() - (time.monotonic() - max(done_at, default=0.0))}


def main() -> None:
    """Read an order from stdin; print the start time, then the result, as JSON lines."""
    order = json.load(sys.stdin)

    def ready(start_at: float) -> None:
        print(json.dumps({"start_at": start_at}), flush=True)

    print(json.dumps(drive(order, ready)), flush=True)


if __name__ == "__main__":
    main()
