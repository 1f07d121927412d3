"""The critical paths with Slack answering every call in 100 ms: a request form submitted to the
first offer posted, and an Accept clicked to the introduction posted. Each is measured against
its floor (the Slack round trips that must happen one after another, times the latency), with
messages sent by the web process itself and handed to a clock that PostgreSQL wakes."""

from __future__ import annotations

import json
import statistics
import time
from collections.abc import Callable
from dataclasses import dataclass

from sqlalchemy import Engine, select

from bench import seeds
from bench.common import Report, scratch_database
from bench.fanout import _form
from bench.servers import SIGNING_SECRET, clock, clock_listening, server
from bot.infra.models import Offer
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action, Callback

# Round trips one after another: the supporter's DM opened, then the offer posted in it; the
# group DM of the two opened, then the introduction posted in it.
FORM_TRIPS = 2
ACCEPT_TRIPS = 2
WITHIN = 1.5  # times the floor
MODES = {"sent by the web process": {"PEERSUPPORT_DELIVERY": "web"},
         "handed to the clock": {"PEERSUPPORT_DELIVERY": "auto"}}


@dataclass
class Settings:
    """Stand-in latency, roster, and how many requests each way of sending times."""

    latency: float = 0.1
    supporters: int = 40
    wave: int = 5
    requests: int = 15


def _first(fake: FakeSlack, since: float, match: Callable[[dict], bool],
           timeout: float = 30) -> float:
    """Seconds from `since` to the stand-in answering the first chat.postMessage `match`es."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = [c.at for c in fake.calls_to("chat.postMessage") if c.at >= since and match(c.args)]
        if found:
            return min(found) - since
        time.sleep(0.002)
    raise RuntimeError("the message was not posted within 30 s")


def _offer_for(engine: Engine, requester_number: int) -> tuple[int, str]:
    with engine.connect() as connection:
        return connection.execute(select(Offer.id, Offer.supporter_id).where(
            Offer.request_id == requester_number).order_by(Offer.id)).first()


def run(settings: Settings | None = None) -> Report:
    """Time both paths, one request at a time, for each way of sending."""
    settings = settings or Settings()
    report = Report("paths")
    fake = FakeSlack(latency=settings.latency).start()
    try:
        with scratch_database("postgresql") as database:
            seeds.supporters(database.engine, fake, settings.supporters)
            base = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": fake.api_url,
                    "DATABASE_URL": database.url, "PEERSUPPORT_WAVE_SIZE": str(settings.wave)}
            asked = 0
            for mode, extra in MODES.items():
                env = {**base, **extra}
                listens = extra["PEERSUPPORT_DELIVERY"] == "auto"
                forms, accepts = [], []
                with clock(env, ready=(lambda: clock_listening(database.engine)) if listens else None), \
                        server("bot", ["web"], env) as url:
                    driver = SlackDriver(url, SIGNING_SECRET, fake)
                    warm = False
                    for _ in range(settings.requests + 1):  # the first warms the server up
                        asked += 1
                        requester = f"UPATH{asked:05d}"
                        fake.add_user(requester)
                        started = time.monotonic()
                        driver.view_submission(requester, Callback.REQUEST, _form(),
                                               view_id=f"VPATH{asked:05d}")
                        form = _first(fake, started, lambda a: Action.ACCEPT_OFFER in
                                      json.dumps(a.get("blocks")))
                        time.sleep(settings.latency * 12)  # the rest of the wave and status
                        offer_id, supporter = _offer_for(database.engine, asked)
                        started = time.monotonic()
                        driver.block_action(supporter, Action.ACCEPT_OFFER, str(offer_id),
                                            block_id="offer")
                        accept = _first(fake, started, lambda a: str(a.get("channel", ""))
                                        .startswith("G"))
                        time.sleep(settings.latency * 12)  # the updates and notes after it
                        if warm:
                            forms.append(form)
                            accepts.append(accept)
                        warm = True
                _record(report, settings, mode, forms, accepts)
    finally:
        fake.stop()
    report.notes.append(
        f"{settings.requests} requests per way of sending, one at a time, each after one warm-up "
        f"request, through gunicorn on PostgreSQL with the Slack stand-in answering every call "
        f"in {settings.latency * 1000:.0f} ms; times run from sending the signed form or click "
        "to the stand-in answering the post. The floor counts the round trips that must follow "
        "one another: the app opens a DM (conversations.open) before posting in it, so it holds "
        "the channel to update the message later and to look for it before a retry; an offer "
        f"and an introduction are {FORM_TRIPS} each. 'Sent by the web process': "
        "PEERSUPPORT_DELIVERY=web, messages sent by the process that acknowledged, after its "
        "answer. 'Handed to the clock': a clock process listens, and PostgreSQL wakes it as the "
        "transaction commits.")
    return report


def _record(report: Report, settings: Settings, mode: str, forms: list[float],
            accepts: list[float]) -> None:
    for name, times, trips in (("form submitted to first offer posted", forms, FORM_TRIPS),
                               ("Accept clicked to introduction posted", accepts, ACCEPT_TRIPS)):
        case = f"{name}, {mode}"
        floor = trips * settings.latency
        report.add(case, "floor", floor * 1000, "ms")
        report.add(case, "median", statistics.median(times) * 1000, "ms")
        report.add(case, "slowest", max(times) * 1000, "ms")
        report.add(case, "median / floor", statistics.median(times) / floor, "×",
                   target=WITHIN)
        report.add(case, "slowest / floor", max(times) / floor, "×")
