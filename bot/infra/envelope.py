"""The shape Slack's requests always have, checked before Bolt sees them.

Bolt assumes well-formed envelopes: a signed but malformed body (a bug in a proxy, a replayed
fragment, a fuzzer) can make its parsing or even its error handler raise. Checking the few fields
routing depends on lets such a body get a 400 instead of a 500, and nothing is stored.

Two checks go further than Bolt's needs, because the database is behind them: no text may hold a
NUL (PostgreSQL refuses it) or half of a surrogate pair (it cannot be encoded), and every id Slack
makes must have the shape Slack gives it, so an id never overflows the column it is stored in.
"""

from __future__ import annotations

import re
from collections.abc import Iterator
from typing import Any
from urllib.parse import parse_qsl

# Slack's deepest payloads (a modal's blocks, inside its view, inside the interaction) nest about a
# dozen levels. Python's JSON parser recurses once per level, as would every walk over the body.
MAX_DEPTH = 64

# Interactive payload types and the fields Bolt reads while routing them.
_NEEDS: dict[str, tuple[tuple[str, type], ...]] = {
    "block_actions": (("user", dict), ("actions", list), ("trigger_id", str)),
    "view_submission": (("user", dict), ("view", dict), ("trigger_id", str)),
    "view_closed": (("user", dict), ("view", dict)),
    "shortcut": (("user", dict), ("callback_id", str), ("trigger_id", str)),
    "message_action": (("user", dict), ("callback_id", str), ("trigger_id", str)),
    "block_suggestion": (("user", dict), ("action_id", str)),
    "event_callback": (("event", dict),),
    "url_verification": (("challenge", str),),
    "app_rate_limited": (),
}
_STRING_FIELDS = ("team_id", "api_app_id", "user_id", "channel_id", "trigger_id", "text",
                  "command", "response_url", "callback_id", "type", "token", "event_id")
# Parts of a request that, when present, Slack always sends as objects (Bolt calls .get on them).
_OBJECT_FIELDS = ("container", "view", "message", "channel", "team", "user", "state", "event")

# Ids of users, channels, teams, views, apps and bots: capitals and digits (U0123ABCD), about ten
# long today. Thirty-two is the width of the columns they are stored in. Some (a view's previous
# view, say) may be empty; the person acting never is.
_SLACK_ID = re.compile(r"[A-Z0-9]{0,32}")
_USER_ID = re.compile(r"[A-Z0-9]{1,32}")
_EVENT_ID = re.compile(r"Ev[A-Z0-9]{1,30}")
# A trigger id is "<digits>.<digits>.<hex>"; its delivery key must fit seen_deliveries.key.
_TRIGGER_ID = re.compile(r"[A-Za-z0-9._-]{1,100}")
# Ids the app chose (action, block and callback ids) or Slack made up for it: up to 255 characters,
# Slack's limit, and no control characters.
_CHOSEN_ID = re.compile(r"[^\x00-\x1f\x7f]{0,255}")
# Where Bolt sends respond(): it refuses anything but a web address.
_URL = re.compile(r"https?://\S+")
# A slash command's name, at most 32 characters; Bolt logs the name of one it has no listener for.
_COMMAND = re.compile(r"/[\w.-]{1,31}")
_ID_SHAPES: dict[str, re.Pattern[str]] = {
    "user_id": _USER_ID,
    **dict.fromkeys(("team_id", "channel_id", "enterprise_id", "api_app_id", "app_id",
                     "bot_id", "view_id", "root_view_id", "previous_view_id",
                     "app_installed_team_id", "selected_user", "selected_users",
                     "selected_conversation", "selected_conversations", "selected_channel",
                     "selected_channels"), _SLACK_ID),
    "event_id": _EVENT_ID,
    "trigger_id": _TRIGGER_ID,
    **dict.fromkeys(("action_id", "block_id", "callback_id"), _CHOSEN_ID),
    "response_url": _URL,
    "command": _COMMAND,
    # An object's "id" takes its name ("user": {"id": ...}); some are sent as the bare id instead.
    "user": _USER_ID,
    **dict.fromkeys(("channel", "team", "view", "enterprise"), _SLACK_ID),
}
_ID_OWNERS = frozenset({"user", "channel", "team", "view", "enterprise"})
# Text PostgreSQL cannot store (NUL) or that cannot be encoded at all (a lone surrogate half).
_UNSTORABLE = re.compile(r"[\x00\ud800-\udfff]")
# A JSON string, possibly unterminated; possessive, so scanning it never backtracks.
_JSON_STRING = re.compile(r'"(?:[^"\\]+|\\.)*+"?', re.DOTALL)
_NOT_BRACKET = re.compile(r"[^\[\]{}]+")


def too_deep(body: str) -> bool:
    """Whether the JSON in a raw body (the body, or its `payload` field) nests beyond MAX_DEPTH."""
    return any(_deeper_than(text, MAX_DEPTH) for text in _json_texts(body))


def _json_texts(body: str) -> Iterator[str]:
    # What Bolt may parse as JSON: the body itself, or the payload field of a form. A form's own
    # fields are never parsed, and its brackets are percent-encoded, so scanning it costs nothing.
    yield body
    if "payload" in body:
        yield from (value for name, value in parse_qsl(body, keep_blank_values=True)
                    if name == "payload")


def _deeper_than(text: str, limit: int) -> bool:
    brackets = _NOT_BRACKET.sub("", _JSON_STRING.sub("", text))
    depth = 0
    for bracket in brackets:
        depth += 1 if bracket in "[{" else -1
        if depth > limit:
            return True
    return False


def malformed(body: Any) -> str | None:
    """Why `body` (as Bolt parsed it) cannot be a Slack request, or None when it can."""
    if not isinstance(body, dict) or not body:
        return "not an object"
    return _wrong_types(body) or _bad_strings(body) or _wrong_routing(body)


def _wrong_types(body: dict[str, Any]) -> str | None:
    for name in _STRING_FIELDS:
        if name in body and not isinstance(body[name], str):
            return f"{name} is not a string"
    for name in _OBJECT_FIELDS:
        if name in body and not isinstance(body[name], dict):
            return f"{name} is not an object"
    return None


def _bad_strings(body: dict[str, Any]) -> str | None:
    # Refused wherever they are: every id and every typed text may end up in the database.
    for owner, key, value in _entries(body):
        if _UNSTORABLE.search(key) or isinstance(value, str) and _UNSTORABLE.search(value):
            return "text with a NUL or a lone surrogate"
        if isinstance(value, str) and not _id_shaped(owner, key, value):
            return f"{key} is not shaped like Slack's"
    return None


def _id_shaped(owner: str, key: str, value: str) -> bool:
    shape = _ID_SHAPES.get(owner if key == "id" and owner in _ID_OWNERS else key)
    return shape is None or shape.fullmatch(value) is not None


def _entries(node: Any, key: str = "", owner: str = "") -> Iterator[tuple[str, str, Any]]:
    """(owner's key, key, value) for every value under `node`; a list's items take its key."""
    if isinstance(node, dict):
        for name, value in node.items():
            yield key, name, value
            yield from _entries(value, name, key)
    elif isinstance(node, list):
        for item in node:
            yield owner, key, item
            yield from _entries(item, key, owner)


def _wrong_routing(body: dict[str, Any]) -> str | None:
    if body.get("ssl_check") == "1":
        return None  # Slack's certificate check for a slash command URL
    if "command" in body:
        return None if isinstance(body.get("user_id"), str) else "command without user_id"
    kind = body.get("type")
    if kind not in _NEEDS:
        return "unknown request type"
    for name, expected in _NEEDS[kind]:
        if not isinstance(body.get(name), expected):
            return f"{kind} without a valid {name}"
    if kind == "block_actions" and not (body["actions"] and all(map(_action, body["actions"]))):
        return "block_actions with a malformed action"
    if kind == "block_actions" and "response_url" not in body and \
            body.get("container", {}).get("type") != "view":
        # Slack sends one with every click outside a view; respond() would raise without it.
        return "a click on a message without a response_url"
    if kind in ("view_submission", "view_closed"):
        problem = _wrong_view(body["view"])
        if problem is not None:
            return problem
    if kind == "event_callback" and not isinstance(body["event"].get("type"), str):
        return "event without a type"
    if "user" in body and not isinstance(body["user"].get("id"), str):
        return "user without an id"
    return None


def _action(action: Any) -> bool:
    return isinstance(action, dict) and isinstance(action.get("action_id"), str) \
        and isinstance(action.get("value", ""), str) \
        and isinstance(action.get("block_id", ""), str) and _element(action)


def _wrong_view(view: dict[str, Any]) -> str | None:
    # Bolt reads view.type on every submission (to tell a legacy workflow step, which this app
    # does not have and whose `workflow_step` Bolt would then read, from a modal).
    if not isinstance(view.get("type"), str) or view["type"] == "workflow_step":
        return "view without a modal's type"
    if not isinstance(view.get("callback_id"), str) or not isinstance(view.get("id"), str):
        return "view without an id or a callback_id"
    state = view.get("state")
    if not isinstance(state, dict) or not isinstance(state.get("values"), dict):
        return "view without a state"
    if not all(isinstance(block, dict) and all(map(_element, block.values()))
               for block in state["values"].values()):
        return "view with malformed values"
    if not isinstance(view.get("private_metadata", ""), str):
        return "view with malformed metadata"
    return None


def _element(element: Any) -> bool:
    """Whether an input's state has Slack's shape: text is a string, options carry strings."""
    if not isinstance(element, dict):
        return False
    if element.get("value") is not None and not isinstance(element["value"], str):
        return False
    selected = element.get("selected_option")
    options = element.get("selected_options")
    return (selected is None or _option(selected)) and (
        options is None or isinstance(options, list) and all(map(_option, options)))


def _option(option: Any) -> bool:
    return isinstance(option, dict) and isinstance(option.get("value", ""), str)
