"""The shape Slack's requests always have, checked before Bolt sees them.

Bolt assumes well-formed envelopes: a signed but malformed body (a bug in a proxy, a replayed
fragment, a fuzzer) can make its parsing or even its error handler raise. Checking the few fields
routing depends on lets such a body get a 400 instead of a 500, and nothing is stored.
"""

from __future__ import annotations

from typing import Any

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
                  "command", "response_url", "callback_id", "type", "token")
# Parts of an interaction that, when present, Slack always sends as objects.
_OBJECT_FIELDS = ("container", "view", "message", "channel", "team", "user", "state")


def malformed(body: Any) -> str | None:
    """Why `body` (as Bolt parsed it) cannot be a Slack request, or None when it can."""
    if not isinstance(body, dict) or not body:
        return "not an object"
    for name in _STRING_FIELDS:
        if name in body and not isinstance(body[name], str):
            return f"{name} is not a string"
    for name in _OBJECT_FIELDS:
        if name in body and not isinstance(body[name], dict):
            return f"{name} is not an object"
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
    if kind == "block_actions" and (not body["actions"] or not all(
        isinstance(a, dict) and isinstance(a.get("action_id"), str)
        and isinstance(a.get("value", ""), str) and isinstance(a.get("block_id", ""), str)
        for a in body["actions"]
    )):
        return "block_actions with a malformed action"
    if kind in ("view_submission", "view_closed"):
        view = body["view"]
        if not isinstance(view.get("callback_id"), str):
            return "view without a callback_id"
        state = view.get("state", {})
        if not isinstance(state, dict) or not isinstance(state.get("values", {}), dict):
            return "view with a malformed state"
        if not all(isinstance(block, dict) and all(isinstance(e, dict) for e in block.values())
                   for block in state.get("values", {}).values()):
            return "view with malformed values"
        if not isinstance(view.get("private_metadata", ""), str) or \
                not isinstance(view.get("id", ""), str):
            return "view with malformed metadata"
    if kind == "event_callback" and not isinstance(body["event"].get("type"), str):
        return "event without a type"
    if "user" in body and not isinstance(body["user"].get("id"), str):
        return "user without an id"
    return None
