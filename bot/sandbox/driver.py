"""Sends correctly signed Slack requests (commands, clicks, modal submissions, events) over HTTP."""

from __future__ import annotations

import http.client
import itertools
import json
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import urlencode, urlsplit

from slack_sdk.signature import SignatureVerifier

from bot.sandbox.slack_api import FakeSlack


@dataclass
class Reply:
    """The app's HTTP answer to one request."""

    status: int
    body: str

    def json(self) -> Any:
        return json.loads(self.body) if self.body else None


class SlackDriver:
    """Plays Slack's side of the Events and Interactivity APIs against the app's HTTP endpoint."""

    def __init__(self, app_url: str, signing_secret: str, fake: FakeSlack | None = None,
                 *, team_id: str = "T0PEERSUP", timeout: float = 10.0):
        self.app_url = app_url
        self.signing_secret = signing_secret
        self.fake = fake
        self.team_id = team_id
        self.timeout = timeout
        self.sent: list[str] = []  # every body sent, so tests can check what reached the logs
        self._ids = itertools.count(1)

    # -- what Slack sends --------------------------------------------------------------------

    def command(self, user_id: str, text: str = "", *, command: str = "/peersupport",
                channel_id: str = "C0GENERAL1") -> Reply:
        """A slash command typed by `user_id` in `channel_id`."""
        form = {
            "token": "legacy-verification-token", "team_id": self.team_id,
            "team_domain": "hospital", "channel_id": channel_id, "channel_name": "general",
            "user_id": user_id, "user_name": user_id.lower(), "command": command, "text": text,
            "api_app_id": "APEERSUP1", "is_enterprise_install": "false",
            "response_url": self._response_url(user_id), "trigger_id": self._trigger_id(user_id),
        }
        return self.post_form(form)

    def block_action(self, user_id: str, action_id: str, value: str = "", *,
                     block_id: str = "actions", channel_id: str = "D0000001",
                     message_ts: str = "1700000000.000100", view: dict | None = None) -> Reply:
        """A button click by `user_id` on a message (or inside `view`)."""
        payload: dict[str, Any] = {
            "type": "block_actions", "team": {"id": self.team_id, "domain": "hospital"},
            "user": {"id": user_id, "username": user_id.lower(), "team_id": self.team_id},
            "api_app_id": "APEERSUP1", "token": "legacy-verification-token",
            "trigger_id": self._trigger_id(user_id),
            "response_url": self._response_url(user_id, None if view else channel_id, message_ts),
            "actions": [{"type": "button", "action_id": action_id, "block_id": block_id,
                         "value": value, "action_ts": f"{time.time():.6f}"}],
        }
        if view is not None:
            payload["container"] = {"type": "view", "view_id": view.get("id", "V0")}
            payload["view"] = view
        else:
            payload["container"] = {"type": "message", "message_ts": message_ts,
                                    "channel_id": channel_id, "is_ephemeral": False}
            payload["channel"] = {"id": channel_id, "name": "directmessage"}
            payload["message"] = {"ts": message_ts, "text": "", "type": "message"}
        return self.post_payload(payload)

    def view_submission(self, user_id: str, callback_id: str, values: dict[str, Any], *,
                        private_metadata: str = "", view_id: str = "V0SUBMIT") -> Reply:
        """A modal submitted by `user_id`; `values` is Slack's state.values shape."""
        payload = {
            "type": "view_submission", "team": {"id": self.team_id, "domain": "hospital"},
            "user": {"id": user_id, "username": user_id.lower(), "team_id": self.team_id},
            "api_app_id": "APEERSUP1", "token": "legacy-verification-token",
            "trigger_id": self._trigger_id(user_id),
            "view": {"id": view_id, "type": "modal", "callback_id": callback_id,
                     "private_metadata": private_metadata, "state": {"values": values},
                     "team_id": self.team_id, "hash": "1700000000.abc"},
        }
        return self.post_payload(payload)

    def shortcut(self, user_id: str, callback_id: str) -> Reply:
        """A global shortcut chosen by `user_id`."""
        payload = {
            "type": "shortcut", "callback_id": callback_id, "trigger_id": self._trigger_id(user_id),
            "team": {"id": self.team_id, "domain": "hospital"}, "token": "legacy",
            "user": {"id": user_id, "username": user_id.lower(), "team_id": self.team_id},
            "action_ts": f"{time.time():.6f}",
        }
        return self.post_payload(payload)

    def event(self, event: dict[str, Any], *, event_id: str | None = None) -> Reply:
        """An Events API callback wrapping `event`."""
        body = {
            "token": "legacy-verification-token", "team_id": self.team_id,
            "api_app_id": "APEERSUP1", "type": "event_callback", "event": event,
            "event_id": event_id or f"Ev{next(self._ids):010d}",
            "event_time": int(time.time()), "authorizations": [
                {"team_id": self.team_id, "user_id": "UBOTPEER1", "is_bot": True}],
        }
        return self.post_json(body)

    # -- transport ---------------------------------------------------------------------------

    def post_form(self, form: dict[str, str]) -> Reply:
        return self.post_raw(urlencode(form), "application/x-www-form-urlencoded")

    def post_payload(self, payload: dict[str, Any]) -> Reply:
        return self.post_form({"payload": json.dumps(payload)})

    def post_json(self, body: dict[str, Any]) -> Reply:
        return self.post_raw(json.dumps(body), "application/json")

    def signature_headers(self, body: str, timestamp: int | None = None) -> dict[str, str]:
        """The X-Slack-Request-Timestamp and X-Slack-Signature headers Slack would send."""
        ts = str(int(time.time()) if timestamp is None else timestamp)
        signature = SignatureVerifier(self.signing_secret).generate_signature(
            timestamp=ts, body=body)
        return {"X-Slack-Request-Timestamp": ts, "X-Slack-Signature": signature}

    def post_raw(self, body: str, content_type: str, *, headers: dict[str, str] | None = None,
                 sign: bool = True) -> Reply:
        """POST `body` to the app; signed unless told otherwise, extra headers win."""
        self.sent.append(body)
        all_headers = {"Content-Type": content_type}
        if sign:
            all_headers.update(self.signature_headers(body))
        all_headers.update(headers or {})
        parts = urlsplit(self.app_url)
        connection = http.client.HTTPConnection(parts.hostname, parts.port, timeout=self.timeout)
        try:
            connection.request("POST", parts.path or "/", body=body.encode("utf-8"),
                               headers=all_headers)
            response = connection.getresponse()
            return Reply(response.status, response.read().decode("utf-8", "replace"))
        finally:
            connection.close()

    def _response_url(self, user_id: str, channel: str | None = None,
                      ts: str | None = None) -> str:
        if self.fake is not None:
            return self.fake.response_url(user_id, channel, ts)
        return "https://hooks.slack.com/commands/T0PEERSUP/1/abc"

    def _trigger_id(self, user_id: str) -> str:
        trigger_id = f"{next(self._ids)}.{int(time.time())}.trigger"
        if self.fake is not None:
            self.fake.note_trigger(trigger_id, user_id)
        return trigger_id
