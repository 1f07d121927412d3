"""What we call on Slack, checked against Slack's own published spec and our manifest."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest
import yaml
from slack_sdk import WebClient

from bot.infra.messaging import (
    FILE_METHODS,
    METHODS_USED,
    Messenger,
    SlackUnreachable,
    build_client,
)
from bot.sandbox.slack_api import FakeSlack
from bot.sandbox.spec import WebApiSpec
from handlers.common.ids import PEERSUPPORT_COMMAND
from tests.conftest import make_settings

ROOT = Path(__file__).resolve().parents[2]
MANIFEST = yaml.safe_load((ROOT / "manifest.yml").read_text())


@pytest.fixture
def spec(slack_spec: WebApiSpec | None) -> WebApiSpec:
    if slack_spec is None:
        pytest.skip("Slack's API specs are not beside this checkout (../shared/slack-api-specs)")
    return slack_spec


def test_every_method_we_call_exists_in_slacks_spec(spec: WebApiSpec) -> None:
    unknown = [method for method in METHODS_USED if method not in spec.methods]
    assert unknown == []


def test_manifest_scopes_cover_every_method_we_call(spec: WebApiSpec) -> None:
    granted = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    uncovered = {method: sorted(spec.methods[method].scopes) for method in METHODS_USED
                 if spec.methods[method].scopes and not spec.methods[method].scopes & granted}
    assert uncovered == {}, f"manifest.yml lacks a scope for: {uncovered}"


def _python_files(*folders: str) -> list[Path]:
    return [path for folder in folders for path in (ROOT / folder).rglob("*.py")]


def _slack_method_names(spec: WebApiSpec) -> set[str]:
    names = {name for name in dir(WebClient) if name.replace("_", ".") in spec.methods}
    return names | {"api_call", "files_upload_v2"}


def test_only_the_messaging_module_calls_slack(spec: WebApiSpec) -> None:
    slack_calls = _slack_method_names(spec)
    offenders = []
    for path in _python_files("bot", "handlers"):
        if path.name == "messaging.py" or "sandbox" in path.parts:
            continue
        for node in ast.walk(ast.parse(path.read_text())):
            if (isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
                    and node.func.attr in slack_calls and not _on_messenger(node.func)):
                offenders.append(f"{path.relative_to(ROOT)}:{node.lineno} {node.func.attr}")
    assert offenders == []


def _on_messenger(call: ast.Attribute) -> bool:
    """`messenger.auth_test()` or `services.messenger.user_info()`: the messaging module's own
    method of the same name as Slack's, not a call on Slack's client."""
    owner = call.value
    return (isinstance(owner, ast.Name) and owner.id == "messenger") or (
        isinstance(owner, ast.Attribute) and owner.attr == "messenger")


def test_a_direct_call_on_slacks_client_is_found(spec: WebApiSpec) -> None:
    """The check above is not blind: a handler calling Slack's client itself is caught, and the
    messenger's methods of the same name are not."""
    slack_calls = _slack_method_names(spec)
    tree = ast.parse("client.auth_test()\nmessenger.auth_test()\nservices.messenger.users_info()\n"
                     "app.client.users_info(user='U1')\n")
    found = [node.func.attr for node in ast.walk(tree) if isinstance(node, ast.Call)
             and isinstance(node.func, ast.Attribute) and node.func.attr in slack_calls
             and not _on_messenger(node.func)]
    assert sorted(found) == ["auth_test", "users_info"]


def test_methods_used_lists_exactly_what_messaging_calls() -> None:
    tree = ast.parse((ROOT / "bot" / "infra" / "messaging.py").read_text())
    called = {node.args[0].value for node in ast.walk(tree)
              if isinstance(node, ast.Call) and isinstance(node.func, ast.Attribute)
              and node.func.attr == "_call" and node.args
              and isinstance(node.args[0], ast.Constant)}
    assert called == set(METHODS_USED) - set(FILE_METHODS)


def test_manifest_declares_the_command_and_interactivity() -> None:
    commands = {c["command"]: c for c in MANIFEST["features"]["slash_commands"]}
    assert PEERSUPPORT_COMMAND in commands
    assert commands[PEERSUPPORT_COMMAND]["url"].endswith("/slack/events")
    assert MANIFEST["settings"]["interactivity"]["is_enabled"] is True
    assert MANIFEST["settings"]["interactivity"]["request_url"].endswith("/slack/events")


def test_stand_in_flags_unknown_methods_and_missing_arguments(spec: WebApiSpec) -> None:
    fake = FakeSlack(spec).start()
    try:
        client = WebClient(token="xoxb-test", base_url=fake.api_url)
        with pytest.raises(Exception, match="unknown_method"):
            client.api_call("chat.postMessagez", json={"channel": "C1", "text": "hi"})
        with pytest.raises(Exception, match="invalid_arguments"):
            client.api_call("chat.postMessage", json={"text": "no channel"})
        with pytest.raises(Exception, match="not_authed"):
            WebClient(base_url=fake.api_url).api_call("auth.test")
    finally:
        fake.stop()
    assert fake.violations == [
        "chat.postMessagez is not a Slack Web API method",
        "chat.postMessage is missing required argument 'channel'",
    ]


def test_messenger_talks_to_the_stand_in_as_to_slack(fake_slack: FakeSlack) -> None:
    fake_slack.add_user("UCLIN00001", tz="Europe/Berlin")
    messenger = Messenger(build_client(make_settings(fake_slack, "sqlite:///unused.sqlite3")))

    posted = messenger.post_dm("UCLIN00001", "hello", [{"type": "section", "text": {
        "type": "mrkdwn", "text": "hello"}}])
    assert posted.channel.startswith("D") and posted.ts
    assert messenger.open_conversation(["UCLIN00001"]) == posted.channel
    assert messenger.open_conversation(["UCLIN00001", "USUPP00001"]).startswith("G")
    assert messenger.user_info("UCLIN00001")["tz"] == "Europe/Berlin"
    assert messenger.auth_test()["user_id"] == fake_slack.bot_user_id
    with pytest.raises(SlackUnreachable) as gone:
        messenger.user_info("UNOBODY001")
    assert gone.value.error == "user_not_found"


def test_rate_limits_are_retried_after_retry_after(fake_slack: FakeSlack) -> None:
    messenger = Messenger(build_client(make_settings(fake_slack, "sqlite:///unused.sqlite3")))
    fake_slack.fail("chat.postMessage", status=429, retry_after=1)
    posted = messenger.post_message("C0GENERAL1", "hello")
    assert posted.ts
    attempts = fake_slack.calls_to("chat.postMessage")
    assert len(attempts) == 2
    assert attempts[1].at - attempts[0].at >= 0.9, "the retry waited for Retry-After"


def test_calling_a_method_not_declared_is_refused_before_slack(fake_slack: FakeSlack) -> None:
    messenger = Messenger(build_client(make_settings(fake_slack, "sqlite:///unused.sqlite3")))
    with pytest.raises(ValueError, match="METHODS_USED"):
        messenger._call("chat.delete", channel="C1", ts="1")
    assert fake_slack.calls == []


def test_manifest_declares_the_shortcut_events_and_group_dm_scope() -> None:
    from handlers.common.ids import Callback

    shortcuts = {s["callback_id"]: s for s in MANIFEST["features"]["shortcuts"]}
    assert shortcuts[Callback.REQUEST_SHORTCUT]["type"] == "global"
    assert MANIFEST["features"]["app_home"]["home_tab_enabled"] is True
    assert "app_home_opened" in MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    # The introduction opens a group DM (conversations.open with two users): mpim:write.
    assert "mpim:write" in MANIFEST["oauth_config"]["scopes"]["bot"]


# Events newer than the 2020 snapshot of the Events API spec; they exist, so they are listed here.
NEWER_EVENTS = {"app_home_opened": frozenset()}


def test_every_subscribed_event_is_published_and_its_scopes_are_granted() -> None:
    from bot.sandbox.spec import find_spec_dir

    directory = find_spec_dir()
    if directory is None:
        pytest.skip("Slack's API specs (../shared/slack-api-specs) are not on this machine")
    topics = json.loads((directory / "slack_events_api_async_v1.json").read_text())["topics"]
    granted = set(MANIFEST["oauth_config"]["scopes"]["bot"])
    subscribed = MANIFEST["settings"]["event_subscriptions"]["bot_events"]
    assert "user_change" in subscribed, "check-ins follow time zones and departures"
    for name in subscribed:
        if name in NEWER_EVENTS:
            needed = NEWER_EVENTS[name]
        else:
            topic = topics.get(name.replace("_", "."))
            assert topic is not None, f"{name} is not an event Slack publishes"
            needed = frozenset(topic["subscribe"]["x-scopes-required"])
        assert needed <= granted, f"{name} needs {sorted(needed - granted)}"


def test_the_specs_shipped_with_the_sandbox_are_slacks_own_unchanged() -> None:
    shipped = ROOT / "bot" / "sandbox" / "slack_api_specs"
    shared = ROOT.parent / "shared" / "slack-api-specs"
    if not shared.is_dir():
        pytest.skip("Slack's API specs (../shared/slack-api-specs) are not beside this checkout")
    for name in ("LICENSE", "slack_web_openapi_v2.json", "slack_events_api_async_v1.json",
                 "slack_common_event_wrapper_schema.json"):
        assert (shipped / name).read_bytes() == (shared / name).read_bytes(), name
