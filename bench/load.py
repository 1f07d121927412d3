"""A closed-loop load generator: N clients, each sending its next signed request as soon as the
last one is answered, run in a process of its own so it shares no interpreter lock with the app
or the Slack stand-in."""

from __future__ import annotations

import http.client
import itertools
import json
import subprocess
import sys
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlsplit

from bot.sandbox.driver import SlackDriver
from handlers.common.ids import Action

ACCEPT = Action.ACCEPT_OFFER
CHECKIN_ANSWER = f"{Action.CHECKIN_ANSWER}:better"


@dataclass
class Scenario:
    """What to send: `kind` is command, accept, checkin or prompt; `items` the ids each request
    uses."""

    kind: str
    items: list[tuple[Any, ...]]


@dataclass
class LoadResult:
    """Latencies (seconds) of the answered requests in the measured window, and the failures."""

    latencies: list[float]
    seconds: float
    errors: int
    statuses: dict[int, int]
    answered: int = 0  # every request answered, warm-up included

    @property
    def per_second(self) -> float:
        return len(self.latencies) / self.seconds if self.seconds else 0.0


class _Bodies(SlackDriver):
    """The sandbox driver's payloads, kept instead of sent, so the load uses exactly them."""

    def __init__(self, secret: str, respond_to: str):
        super().__init__("http://unused/", secret)
        self.respond_to = respond_to

    def post_raw(self, body: str, content_type: str, **_: Any) -> Any:  # type: ignore[override]
        return body, content_type

    def _response_url(self, *_: Any) -> str:
        return self.respond_to  # the app answers there after ack: the Slack stand-in


def body_maker(scenario: Scenario, secret: str, respond_to: str
               ) -> Callable[[int], tuple[str, str]]:
    """A function giving the n-th request's body and content type for a scenario."""
    bodies = _Bodies(secret, respond_to)
    items = scenario.items

    def make(n: int) -> tuple[str, str]:
        item = items[n % len(items)]
        if scenario.kind == "command":
            return bodies.command(item[0])
        if scenario.kind == "accept":
            return bodies.block_action(item[1], ACCEPT, str(item[0]), block_id="offer")
        if scenario.kind == "checkin":
            return bodies.block_action(item[1], CHECKIN_ANSWER, str(item[0]), block_id="checkin")
        if scenario.kind == "prompt":  # (run id, who answers, which answer)
            return bodies.block_action(item[1], f"{Action.PULSE_ANSWER}:{item[2]}", str(item[0]),
                                       block_id="pulse")
        raise ValueError(f"unknown scenario {scenario.kind!r}")

    return make


def drive(url: str, secret: str, respond_to: str, scenario: Scenario, clients: int,
          seconds: float, warmup: float) -> LoadResult:
    """Run `clients` closed-loop clients for `warmup` + `seconds`; measure only after warm-up."""
    make = body_maker(scenario, secret, respond_to)
    signer = _Bodies(secret, respond_to)
    parts = urlsplit(url)
    counter = itertools.count()
    start = time.monotonic()
    measure_from, stop_at = start + warmup, start + warmup + seconds
    latencies: list[float] = []
    statuses: dict[int, int] = {}
    errors = [0]
    answered = [0]
    lock = threading.Lock()

    def client() -> None:
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
        mine: list[float] = []
        while True:
            body, content_type = make(next(counter))
            headers = {"Content-Type": content_type, **signer.signature_headers(body)}
            sent = time.monotonic()
            if sent >= stop_at:
                break
            try:
                connection.request("POST", parts.path, body=body.encode(), headers=headers)
                response = connection.getresponse()
                response.read()
                status = response.status
            except (OSError, http.client.HTTPException):
                connection.close()
                connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=30)
                with lock:
                    errors[0] += 1
                continue
            done = time.monotonic()
            with lock:
                answered[0] += 1
            if sent >= measure_from and done <= stop_at:
                mine.append(done - sent)
                with lock:
                    statuses[status] = statuses.get(status, 0) + 1
        connection.close()
        with lock:
            latencies.extend(mine)

    failures: list[BaseException] = []

    def guarded() -> None:
        try:
            client()
        except BaseException as error:  # noqa: BLE001 - reported once every client stopped
            failures.append(error)

    threads = [threading.Thread(target=guarded, daemon=True) for _ in range(clients)]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    if failures:
        raise failures[0]
    return LoadResult(latencies, seconds, errors[0], statuses, answered[0])


def drive_elsewhere(url: str, secret: str, respond_to: str, scenario: Scenario, clients: int,
                    seconds: float, warmup: float = 1.0) -> LoadResult:
    """`drive` in a separate Python process (`python -m bench.load`, arguments on stdin)."""
    order = {"url": url, "secret": secret, "respond_to": respond_to, "kind": scenario.kind,
             "items": scenario.items, "clients": clients, "seconds": seconds, "warmup": warmup}
    done = subprocess.run([sys.executable, "-m", "bench.load"], input=json.dumps(order),
                          capture_output=True, text=True, timeout=seconds + warmup + 120,
                          cwd=Path(__file__).resolve().parent.parent, check=False)
    if done.returncode != 0:
        raise RuntimeError(f"the load generator failed: {done.stderr.strip()[-500:]}")
    result = json.loads(done.stdout)
    return LoadResult(result["latencies"], result["seconds"], result["errors"],
                      {int(status): n for status, n in result["statuses"].items()},
                      result["answered"])


def main() -> None:
    """Read an order from stdin, drive the load, print the result as JSON."""
    order = json.load(sys.stdin)
    result = drive(order["url"], order["secret"], order["respond_to"],
                   Scenario(order["kind"], [tuple(item) for item in order["items"]]),
                   order["clients"], order["seconds"], order["warmup"])
    json.dump({"latencies": result.latencies, "seconds": result.seconds, "errors": result.errors,
               "statuses": result.statuses, "answered": result.answered}, sys.stdout)


if __name__ == "__main__":
    main()
