"""Offer fan-out: 1,000 supporters, a Slack stand-in adding 50 ms to every call, waves of 50.
From the request form's submission to the first offer posted, and to the whole wave posted."""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import dataclass

from bench import seeds
from bench.common import Report, scratch_database
from bench.servers import SIGNING_SECRET, server
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack
from handlers.common.ids import Action, Block, Callback
from handlers.requests.blocks import WELCOME

FIRST_TARGET = 0.5
WAVE_TARGET = 2.0
ACK_TARGET = 0.3  # Slack allows 3 s; the commit before answering must stay far inside it


@dataclass
class Settings:
    """Roster size, wave size, stand-in latency and how many requests to time."""

    supporters: int = 1000
    wave: int = 50
    latency: float = 0.05
    requests: int = 5


def _form() -> dict:
    def choice(value: str) -> dict:
        return {Action.FIELD: {"type": "radio_buttons", "selected_option": {"value": value}}}

    return {Block.URGENCY: choice("now"), Block.CONNECTION: choice("slack"),
            Block.WHO: choice("anyone"), Block.ROLE_MATCH: choice("any"),
            Block.FOLLOWUPS: {Action.FIELD: {"type": "checkboxes",
                                             "selected_options": [{"value": WELCOME}]}}}


def _offer_times(fake: FakeSlack, since: float) -> list[float]:
    return sorted(call.at - since for call in fake.calls_to("chat.postMessage")
                  if call.at >= since and Action.ACCEPT_OFFER in json.dumps(call.args.get("blocks")))


def run(settings: Settings | None = None) -> Report:
    """Submit requests one after another and time each wave's offers reaching Slack."""
    settings = settings or Settings()
    report = Report("fanout")
    fake = FakeSlack(latency=settings.latency).start()
    firsts, waves, acks = [], [], []
    try:
        with scratch_database("postgresql") as database:
            seeds.supporters(database.engine, fake, settings.supporters)
            env = {"SLACK_BOT_TOKEN": "xoxb-bench", "SLACK_API_URL": fake.api_url,
                   "DATABASE_URL": database.url, "PEERSUPPORT_WAVE_SIZE": str(settings.wave)}
            with server("bot", ["web"], env) as url:
                driver = SlackDriver(url, SIGNING_SECRET, fake)
                for n in range(settings.requests):
                    requester = f"UASKER{n:04d}"
                    fake.add_user(requester)
                    started = time.monotonic()
                    reply = driver.view_submission(requester, Callback.REQUEST, _form(),
                                                   view_id=f"VBENCH{n:04d}")
                    if reply.status != 200:
                        raise RuntimeError(f"the request form was refused: {reply.status}")
                    acks.append(time.monotonic() - started)
                    deadline = started + 60
                    while len(_offer_times(fake, started)) < settings.wave:
                        if time.monotonic() > deadline:
                            raise RuntimeError("the wave was not posted within a minute")
                        time.sleep(0.005)
                    times = _offer_times(fake, started)
                    firsts.append(times[0])
                    waves.append(times[settings.wave - 1])
                    time.sleep(0.5)  # the requester's own status message goes out after
    finally:
        fake.stop()
    case = (f"{settings.supporters:,} supporters, waves of {settings.wave}, "
            f"{settings.latency * 1000:.0f} ms per Slack call")
    # The request, its first wave and every message they imply are committed before the 200.
    report.add(case, "form answered, request committed (median)", statistics.median(acks), "s",
               target=ACK_TARGET)
    report.add(case, "form answered, request committed (slowest)", max(acks), "s",
               target=ACK_TARGET)
    report.add(case, "first offer posted (median)", statistics.median(firsts), "s",
               target=FIRST_TARGET)
    report.add(case, "first offer posted (slowest)", max(firsts), "s", target=FIRST_TARGET)
    report.add(case, "whole wave posted (median)", statistics.median(waves), "s", target=WAVE_TARGET)
    report.add(case, "whole wave posted (slowest)", max(waves), "s", target=WAVE_TARGET)
    report.notes.append(
        f"{settings.requests} requests submitted one after another through the production server "
        "(gunicorn, PostgreSQL) with signed form submissions; times run from sending the "
        "submission to the stand-in receiving each chat.postMessage carrying an Accept button. "
        "Each offer is two calls (conversations.open, chat.postMessage), "
        "PEERSUPPORT_SLACK_PARALLEL=8 at a time. The form's answer is sent only once the request, "
        "its first wave of offers and the messages they imply are committed, so its time is "
        "what saving before answering costs.")
    return report
