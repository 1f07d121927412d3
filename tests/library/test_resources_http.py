"""/peersupport resources end to end: signed requests, ephemeral pages, buttons that page."""

from __future__ import annotations

import json
import time

import pytest

from handlers.common.ids import Action
from tests.blockkit import assert_within_limits
from tests.conftest import AppServer


def sections(message: dict) -> list[str]:
    return [b["text"]["text"] for b in message["blocks"] if b["type"] == "section"]


def button(message: dict, action_id: str) -> dict:
    return next(e for b in message["blocks"] if b["type"] == "actions"
                for e in b["elements"] if e["action_id"] == action_id)


@pytest.mark.parametrize("channel", ["C0GENERAL1", "D0DIRECT01"])
def test_browse_shows_the_first_page_privately(app_server: AppServer, channel: str) -> None:
    reply = app_server.slack.command("UCLIN00001", "resources", channel_id=channel)
    body = reply.json()
    assert reply.status == 200 and body["response_type"] == "ephemeral"
    assert body["blocks"][0]["text"]["text"] == "Toolkit resources"
    assert len([s for s in sections(body) if s.startswith("*")]) == 5
    assert button(body, Action.LIBRARY_NEXT)["text"]["text"] == "More (6–10 of 10)"
    assert_within_limits(body["blocks"])


def test_search_puts_the_best_match_first(app_server: AppServer) -> None:
    body = app_server.slack.command("UCLIN00001", "resources second victims").json()
    assert "second victim" in sections(body)[0]
    assert "Not safe right now?" in json.dumps(body["blocks"])


def test_more_replaces_the_page_with_the_next_one(app_server: AppServer) -> None:
    first = app_server.slack.command("UCLIN00001", "resources").json()
    value = button(first, Action.LIBRARY_NEXT)["value"]
    reply = app_server.slack.block_action("UCLIN00001", Action.LIBRARY_NEXT, value,
                                          block_id="library_navigation")
    assert reply.status == 200
    second = app_server.slack.fake.wait_for_response()[0]
    assert second["replace_original"] is True and second["response_type"] == "ephemeral"
    assert not set(sections(first)[1:]) & set(sections(second))
    assert button(second, Action.LIBRARY_PREVIOUS)


def test_a_category_button_filters(app_server: AppServer) -> None:
    first = app_server.slack.command("UCLIN00001", "resources").json()
    action = f"{Action.LIBRARY_CATEGORY}:help"
    app_server.slack.block_action("UCLIN00001", action, button(first, action)["value"])
    page = app_server.slack.fake.wait_for_response()[0]
    assert page["blocks"][0]["text"]["text"] == "Crisis and professional help"
    assert "988" in json.dumps(page["blocks"])


@pytest.mark.parametrize("value", ["{bad", '{"q": 5}', '{"q":"","c":"nope","a":null,"o":0}',
                                   '{"q":"","c":null,"a":null,"o":-1}', "[]"])
def test_a_forged_button_value_changes_nothing(app_server: AppServer, value: str) -> None:
    reply = app_server.slack.block_action("UCLIN00001", Action.LIBRARY_NEXT, value)
    assert reply.status == 200
    time.sleep(0.3)
    assert app_server.slack.fake.responses == []


def test_help_lists_resources(app_server: AppServer) -> None:
    body = app_server.slack.command("UCLIN00001", "help").json()
    assert "/peersupport resources [words]" in json.dumps(body["blocks"])
