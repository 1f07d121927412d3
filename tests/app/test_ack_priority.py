"""Acknowledging never waits for listeners busy with slow Web API calls (handlers.common.middleware)."""

from __future__ import annotations

import time
from collections.abc import Iterator

import pytest

from bot.app.runtime import build_runtime
from bot.infra.clock import ManualClock
from bot.infra.messaging import build_client
from bot.sandbox.slack_api import FakeSlack
from tests.conftest import AppServer, Database, eventually, make_settings

SLOW = 3.0  # seconds Slack takes to open the first form


@pytest.fixture
def one_slot_server(database: Database, fake_slack: FakeSlack, clock: ManualClock
                    ) -> Iterator[AppServer]:
    """The app with room for one listener at a time to work after acknowledging."""
    settings = make_settings(fake_slack, database.url, PEERSUPPORT_LISTENER_THREADS="1")
    runtime = build_runtime(settings, clock=clock, client=build_client(settings, timeout=10),
                            engine=database.engine, run_migrations=False)
    server = AppServer(runtime, fake_slack)
    try:
        yield server
    finally:
        server.stop()


def test_a_second_request_is_acknowledged_while_the_first_still_waits_on_slack(
        one_slot_server: AppServer) -> None:
    fake = one_slot_server.slack.fake
    fake.fail("views.open", delay=SLOW)  # Slack answers the first form late
    first = one_slot_server.slack.command("UFIRST0001")
    assert first.status == 200
    eventually(lambda: len(fake.calls_to("views.open")) == 1)
    started = fake.calls_to("views.open")[0].at

    second = one_slot_server.slack.command("USECOND001")

    answered = time.monotonic()
    assert second.status == 200
    # The only work slot is still busy with the first form, yet the second was answered.
    assert answered < started + SLOW
    # And its own work was not dropped: it opens its form once the slot is free.
    eventually(lambda: len(fake.calls_to("views.open")) == 2, timeout=SLOW + 5)
    opened_for = [call.args["trigger_id"] for call in fake.calls_to("views.open")]
    assert len(set(opened_for)) == 2
