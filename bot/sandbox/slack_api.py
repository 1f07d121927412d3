"""A Slack Web API stand-in on loopback: answers as Slack does and records every call.

Used by the test suite (and grown into the local sandbox): point SLACK_API_URL at `.api_url`.
Each call is checked against Slack's published spec when one is given; a call to a method that
does not exist or that lacks a required argument is answered as Slack would and kept in
`.violations`, which the tests fail on.
"""

from __future__ import annotations

import itertools
import json
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from http import HTTPStatus
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qsl, urlsplit

from bot.infra.health import SLACK_SCOPES
from bot.sandbox.spec import WebApiSpec

JsonDict = dict[str, Any]


@dataclass
class Call:
    """One Web API call as the stand-in received it."""

    method: str
    args: JsonDict
    token: str | None
    at: float = field(default_factory=time.monotonic)


@dataclass
class Fault:
    """A failure to answer with instead of success, for the next `times` calls of a method."""

    method: str
    error: str | None = None
    status: int = 200
    retry_after: int | None = None
    delay: float = 0.0
    times: int = 1


@dataclass
class SlackUser:
    """A workspace member as users.info describes them."""

    id: str
    name: str
    tz: str = "America/New_York"
    deleted: bool = False
    is_bot: bool = False

    def as_api(self) -> JsonDict:
        return {
            "id": self.id, "team_id": "T0PEERSUP", "name": self.name, "real_name": self.name,
            "deleted": self.deleted, "is_bot": self.is_bot, "tz": self.tz,
            "tz_label": self.tz, "tz_offset": 0,
            "profile": {"real_name": self.name, "display_name": self.name},
        }


class _Server(ThreadingHTTPServer):
    daemon_threads = True
    # The default backlog of 5 resets connections when many calls arrive at once (benchmarks).
    request_queue_size = 256


class FakeSlack:
    """The Web API stand-in; start() it, use .api_url, stop() it."""

    bot_user_id = "UBOTPEER1"
    team_id = "T0PEERSUP"

    def __init__(self, spec: WebApiSpec | None = None, *, latency: float = 0.0):
        self.spec = spec
        self.latency = latency
        self.calls: list[Call] = []
        self.responses: list[JsonDict] = []  # what the app sent to response_url
        self.violations: list[str] = []
        self.users: dict[str, SlackUser] = {}
        self.views: dict[str, JsonDict] = {}
        self.homes: dict[str, JsonDict] = {}
        self.messages: dict[str, list[JsonDict]] = {}
        # Thread replies, by (channel, parent ts): Slack keeps them out of the channel history.
        self.replies: dict[tuple[str, str], list[JsonDict]] = {}
        self._conversations: dict[frozenset[str], str] = {}
        self._faults: list[Fault] = []
        self.socket_url: str | None = None  # where apps.connections.open sends Socket Mode
        self.usergroups: dict[str, list[str]] = {}
        self.files: dict[str, JsonDict] = {}  # uploaded files by id: name, bytes, channel
        self.channels: dict[str, str] = {}  # public channels by id: their names
        self.channel_members: dict[str, list[str]] = {}  # members of channels, by channel id
        self.usergroup_names: dict[str, str] = {}  # user groups' handles, by group id
        self.modals: dict[str, list[str]] = {}  # each person's open modals (view ids), top last
        self.ephemeral: dict[str, list[JsonDict]] = {}  # what only one person saw, by user id
        self._triggers: dict[str, str] = {}  # trigger_id -> the user whose action made it
        self._respond_to: dict[str, tuple[str | None, str | None, str | None]] = {}
        self._ids = itertools.count(1)
        self._lock = threading.Condition()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None
        # The scopes auth.test says the token has (its x-oauth-scopes header): manifest.yml's.
        self.granted_scopes: set[str] = set(SLACK_SCOPES)

    # -- lifecycle ---------------------------------------------------------------------------

    def start(self) -> FakeSlack:
        """Listen on a free loopback port in a background thread."""
        handler = _make_handler(self)
        self._server = _Server(("127.0.0.1", 0), handler)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True, name="fake-slack")
        self._thread.start()
        return self

    def stop(self) -> None:
        """Stop listening."""
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    @property
    def base_url(self) -> str:
        assert self._server is not None, "start() the stand-in first"
        host, port = self._server.server_address[:2]
        return f"http://{host}:{port}/"

    @property
    def api_url(self) -> str:
        """The value for SLACK_API_URL."""
        return self.base_url + "api/"

    def response_url(self, user_id: str | None = None, channel: str | None = None,
                     ts: str | None = None) -> str:
        """A fresh response_url for a slash command or interaction by `user_id` (on the message
        `channel`/`ts`, when it was a click on one), so what the app posts there reaches them."""
        key = str(next(self._ids))
        with self._lock:
            self._respond_to[key] = (user_id, channel, ts)
        return f"{self.base_url}respond/{key}"

    def note_trigger(self, trigger_id: str, user_id: str) -> None:
        """Remember whose action made `trigger_id`, so a modal it opens is theirs."""
        with self._lock:
            self._triggers[trigger_id] = user_id

    # -- test-facing helpers -----------------------------------------------------------------

    def add_user(self, user_id: str, name: str | None = None, tz: str = "America/New_York",
                 deleted: bool = False) -> SlackUser:
        """Make a workspace member known to users.info."""
        user = SlackUser(user_id, name or user_id.lower(), tz=tz, deleted=deleted)
        self.users[user_id] = user
        return user

    def add_channel(self, channel_id: str, name: str) -> None:
        """Make a public channel known by its name."""
        self.channels[channel_id] = name

    def add_usergroup(self, group_id: str, handle: str, members: list[str]) -> None:
        """Make a user group known to usergroups.list and usergroups.users.list."""
        self.usergroups[group_id] = list(members)
        self.usergroup_names[group_id] = handle

    def set_members(self, channel_id: str, members: list[str]) -> None:
        """Who is in a channel, as conversations.members lists them."""
        self.channel_members[channel_id] = list(members)

    def dm_channel(self, user_ids: list[str] | tuple[str, ...]) -> str | None:
        """The id of the DM (one person) or group DM (several) the bot has with these people."""
        with self._lock:
            return self._conversations.get(frozenset(user_ids))

    def conversations_of(self, user_id: str) -> dict[str, frozenset[str]]:
        """Every DM and group DM the bot opened that includes `user_id`, by channel id."""
        with self._lock:
            return {channel: members for members, channel in self._conversations.items()
                    if user_id in members}

    def open_modal(self, user_id: str) -> JsonDict | None:
        """The modal on top of `user_id`'s screen, if any."""
        with self._lock:
            stack = self.modals.get(user_id) or []
            return self.views.get(stack[-1]) if stack else None

    def close_modal(self, user_id: str, *, everything: bool = False) -> None:
        """Take the top modal (or every modal) off `user_id`'s screen."""
        with self._lock:
            stack = self.modals.get(user_id) or []
            del stack[0 if everything else -1:]

    def replace_view(self, view_id: str, view: JsonDict) -> JsonDict:
        """Show `view` in place of an open view (a submission answered with response_action)."""
        return self._view(view, view_id)

    def show_ephemeral(self, user_id: str, message: JsonDict) -> None:
        """Show `user_id` a message only they see (a command's answer, a private note)."""
        with self._lock:
            self.ephemeral.setdefault(user_id, []).append({
                "ts": self._ts(), "text": message.get("text", ""),
                "blocks": message.get("blocks"), "channel": message.get("channel")})
            self._lock.notify_all()

    def fail(self, method: str, error: str | None = None, *, status: int = 200,
             retry_after: int | None = None, delay: float = 0.0, times: int = 1) -> None:
        """Make the next `times` calls of `method` fail with a Slack error or HTTP status."""
        with self._lock:
            self._faults.append(Fault(method, error, status, retry_after, delay, times))

    def recover(self) -> None:
        """Forget every failure still to come: Slack works normally again."""
        with self._lock:
            self._faults.clear()

    def calls_to(self, method: str) -> list[Call]:
        """Every recorded call of one method, oldest first."""
        with self._lock:
            return [call for call in self.calls if call.method == method]

    def wait_for(self, method: str, predicate: Callable[[Call], bool] | None = None,
                 *, count: int = 1, timeout: float = 5.0) -> list[Call]:
        """Wait until `count` calls of `method` (matching `predicate`) arrived; return them."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while True:
                found = [c for c in self.calls if c.method == method
                         and (predicate is None or predicate(c))]
                if len(found) >= count:
                    return found
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    seen = sorted({c.method for c in self.calls})
                    raise AssertionError(
                        f"expected {count} call(s) to {method}, got {len(found)}; saw {seen}")
                self._lock.wait(remaining)

    def wait_for_response(self, *, count: int = 1, timeout: float = 5.0) -> list[JsonDict]:
        """Wait until the app has posted `count` bodies to response_url addresses."""
        deadline = time.monotonic() + timeout
        with self._lock:
            while len(self.responses) < count:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise AssertionError(f"expected {count} response_url post(s), got "
                                         f"{len(self.responses)}")
                self._lock.wait(remaining)
            return list(self.responses)

    # -- request handling --------------------------------------------------------------------

    def handle(self, method: str, args: JsonDict, token: str | None) -> tuple[int, JsonDict, dict]:
        """Answer one Web API call: (HTTP status, JSON body, extra headers)."""
        if self.latency:
            time.sleep(self.latency)
        with self._lock:
            self.calls.append(Call(method, args, token))
            self._lock.notify_all()
            fault = self._take_fault(method)
        if fault is not None and fault.error is None and fault.status == 200:
            # A slow answer: Slack does the work at once, and its answer arrives late.
            answer = self._answer(method, args) if token else (
                200, {"ok": False, "error": "not_authed"}, {})
            time.sleep(fault.delay)
            return answer
        if fault is not None:
            if fault.delay:
                time.sleep(fault.delay)
            headers = {"Retry-After": str(fault.retry_after)} if fault.retry_after else {}
            if fault.status != 200:
                return fault.status, {"ok": False, "error": fault.error or "ratelimited"}, headers
            if fault.error is not None:
                body: JsonDict = {"ok": False, "error": fault.error}
                if fault.error == "missing_scope":
                    body.update(needed="chat:write", provided="commands")
                return 200, body, headers
        if not token:
            return 200, {"ok": False, "error": "not_authed"}, {}
        return self._answer(method, args)

    def _answer(self, method: str, args: JsonDict) -> tuple[int, JsonDict, dict]:
        if self.spec is not None:
            problems = self.spec.problems(method, args)
            if problems:
                with self._lock:
                    self.violations.extend(problems)
                error = "unknown_method" if method not in self.spec.methods else "invalid_arguments"
                return 200, {"ok": False, "error": error}, {}
        answer = getattr(self, "_api_" + method.replace(".", "_"), None)
        if answer is None:
            return 200, {"ok": True}, {}
        # Slack names the token's scopes in a header; the doctor compares them with the manifest's.
        headers = ({"x-oauth-scopes": ",".join(sorted(self.granted_scopes))}
                   if method == "auth.test" else {})
        return 200, answer(args), headers

    def record_response(self, body: JsonDict, key: str = "") -> None:
        """Keep what the app posted to a response_url, and show it as Slack would: in place of
        the clicked message when it says replace_original, otherwise to that person alone."""
        with self._lock:
            self.responses.append(body)
            self._lock.notify_all()
            user_id, channel, ts = self._respond_to.get(key, (None, None, None))
            if body.get("replace_original") or body.get("delete_original"):
                places = [self.messages.get(channel or "", []), self.ephemeral.get(user_id or "", [])]
                for messages in places:
                    for message in list(messages):
                        if message["ts"] == ts:
                            if body.get("delete_original"):
                                messages.remove(message)
                            else:
                                message.update(text=body.get("text", ""), blocks=body.get("blocks"))
                            return
        if user_id is not None and not body.get("delete_original"):
            self.show_ephemeral(user_id, {**body, "channel": channel})

    def _take_fault(self, method: str) -> Fault | None:
        for fault in self._faults:
            if fault.method == method:
                fault.times -= 1
                if fault.times <= 0:
                    self._faults.remove(fault)
                return fault
        return None

    def _ts(self) -> str:
        return f"{time.time():.0f}.{next(self._ids):06d}"

    # -- the methods the stand-in answers with data ------------------------------------------

    def _api_auth_test(self, args: JsonDict) -> JsonDict:
        return {"ok": True, "url": "https://peersupport.example.slack.com/", "team": "Hospital",
                "user": "peersupport", "team_id": self.team_id, "user_id": self.bot_user_id,
                "bot_id": "BPEERSUP1"}

    def _api_apps_connections_open(self, args: JsonDict) -> JsonDict:
        if self.socket_url is None:
            return {"ok": False, "error": "socket_mode_not_enabled"}
        return {"ok": True, "url": self.socket_url}

    def _api_usergroups_users_list(self, args: JsonDict) -> JsonDict:
        group = str(args.get("usergroup"))
        if group not in self.usergroups:
            return {"ok": False, "error": "no_such_subteam"}
        return {"ok": True, "users": list(self.usergroups[group])}

    def _api_usergroups_list(self, args: JsonDict) -> JsonDict:
        groups = [{"id": group, "team_id": self.team_id, "is_usergroup": True,
                   "name": handle, "handle": handle, "description": "",
                   "user_count": len(self.usergroups.get(group, []))}
                  for group, handle in self.usergroup_names.items()]
        return {"ok": True, "usergroups": groups}

    def _api_conversations_members(self, args: JsonDict) -> JsonDict:
        channel = str(args.get("channel"))
        if channel not in self.channel_members:
            return {"ok": False, "error": "channel_not_found"}
        members = self.channel_members[channel]
        # Pages as Slack's do: `limit` per page (at most 1,000), an opaque cursor to the next.
        limit = min(int(args.get("limit") or 100), 1000)
        start = int(str(args.get("cursor") or "0").removeprefix("members:") or 0)
        page = members[start:start + limit]
        following = f"members:{start + limit}" if start + limit < len(members) else ""
        return {"ok": True, "members": page, "response_metadata": {"next_cursor": following}}

    def _api_files_getUploadURLExternal(self, args: JsonDict) -> JsonDict:  # noqa: N802
        file_id = f"F{next(self._ids):08d}"
        with self._lock:
            self.files[file_id] = {"filename": args.get("filename"), "content": b"",
                                   "length": int(args.get("length") or 0), "channel": None}
        return {"ok": True, "upload_url": f"{self.base_url}upload/{file_id}", "file_id": file_id}

    def _api_files_completeUploadExternal(self, args: JsonDict) -> JsonDict:  # noqa: N802
        listed = args.get("files")
        listed = json.loads(listed) if isinstance(listed, str) else listed or []
        done = []
        with self._lock:
            for item in listed:
                stored = self.files.get(item.get("id"))
                if stored is None:
                    return {"ok": False, "error": "file_not_found"}
                stored.update(title=item.get("title"), channel=args.get("channel_id"),
                              comment=args.get("initial_comment"))
                done.append({"id": item["id"], "title": item.get("title")})
        return {"ok": True, "files": done}

    def record_upload(self, file_id: str, content: bytes) -> bool:
        with self._lock:
            if file_id not in self.files:
                return False
            self.files[file_id]["content"] = content
            self._lock.notify_all()
            return True

    def _api_users_info(self, args: JsonDict) -> JsonDict:
        user = self.users.get(str(args.get("user")))
        if user is None:
            return {"ok": False, "error": "user_not_found"}
        return {"ok": True, "user": user.as_api()}

    def _conversation_with(self, users: list[str]) -> str:
        """The DM (one person) or group DM with these people, opened the first time."""
        with self._lock:
            key = frozenset(users)
            if key not in self._conversations:
                prefix = "D" if len(users) == 1 else "G"
                self._conversations[key] = f"{prefix}{next(self._ids):08d}"
            return self._conversations[key]

    def _api_conversations_open(self, args: JsonDict) -> JsonDict:
        users = [u for u in str(args.get("users", "")).split(",") if u]
        if not users and args.get("channel"):
            return {"ok": True, "channel": {"id": args["channel"]}}
        for user_id in users:
            user = self.users.get(user_id)
            if user is not None and user.deleted:
                return {"ok": False, "error": "user_disabled"}
        channel = self._conversation_with(users)
        return {"ok": True, "channel": {"id": channel, "is_im": len(users) == 1,
                                        "is_mpim": len(users) > 1}}

    def _api_chat_postMessage(self, args: JsonDict) -> JsonDict:
        channel = str(args["channel"])
        if channel[:1] in ("U", "W"):
            # A user id posts to the app's DM with that person, as Slack does (even to someone
            # deactivated: Slack accepts it).
            channel = self._conversation_with([channel])
        message = {"ts": self._ts(), "text": args.get("text", ""), "blocks": args.get("blocks"),
                   "user": self.bot_user_id, "metadata": args.get("metadata")}
        thread = args.get("thread_ts")
        with self._lock:
            if thread:
                # A reply lives in its thread, not in the channel's history, as in Slack.
                message["thread_ts"] = str(thread)
                self.replies.setdefault((channel, str(thread)), []).append(message)
            else:
                self.messages.setdefault(channel, []).append(message)
        return {"ok": True, "channel": channel, "ts": message["ts"], "message": message}

    def _api_conversations_history(self, args: JsonDict) -> JsonDict:
        channel = str(args["channel"])
        with self._lock:
            messages = list(reversed(self.messages.get(channel, [])))  # newest first, as Slack
        limit = int(args.get("limit") or 100)
        keep_metadata = str(args.get("include_all_metadata")).lower() in ("true", "1")
        shown = [{**m, "type": "message"} if keep_metadata else
                 {k: v for k, v in m.items() if k != "metadata"} | {"type": "message"}
                 for m in messages[:limit]]
        return {"ok": True, "messages": shown, "has_more": len(messages) > limit}

    def _api_conversations_replies(self, args: JsonDict) -> JsonDict:
        channel, ts = str(args["channel"]), str(args["ts"])
        with self._lock:
            parent = [m for m in self.messages.get(channel, []) if m["ts"] == ts]
            thread = parent + list(self.replies.get((channel, ts), []))  # oldest first
        keep_metadata = str(args.get("include_all_metadata")).lower() in ("true", "1")
        shown = [{**m, "type": "message"} if keep_metadata else
                 {k: v for k, v in m.items() if k != "metadata"} | {"type": "message"}
                 for m in thread]
        return {"ok": True, "messages": shown, "has_more": False}

    def _api_chat_postEphemeral(self, args: JsonDict) -> JsonDict:
        blocks = args.get("blocks")
        self.show_ephemeral(str(args.get("user")), {
            "text": args.get("text", ""), "channel": args.get("channel"),
            "blocks": json.loads(blocks) if isinstance(blocks, str) else blocks})
        return {"ok": True, "message_ts": self._ts()}

    def _api_chat_update(self, args: JsonDict) -> JsonDict:
        channel, ts = str(args["channel"]), str(args["ts"])
        with self._lock:
            for message in self.messages.get(channel, []):
                if message["ts"] == ts:
                    message.update(text=args.get("text", ""), blocks=args.get("blocks"))
                    return {"ok": True, "channel": channel, "ts": ts}
        return {"ok": False, "error": "message_not_found"}

    def _view(self, view: Any, view_id: str | None = None) -> JsonDict:
        if isinstance(view, str):
            view = json.loads(view)
        view_id = view_id or f"V{next(self._ids):08d}"
        stored = {**view, "id": view_id, "team_id": self.team_id, "hash": self._ts()}
        with self._lock:
            self.views[view_id] = stored
        return stored

    def _api_views_open(self, args: JsonDict) -> JsonDict:
        view = self._view(args["view"])
        user_id = self._triggers.get(str(args.get("trigger_id")))
        if user_id is not None:
            with self._lock:
                self.modals.setdefault(user_id, []).append(view["id"])
        return {"ok": True, "view": view}

    def _api_views_update(self, args: JsonDict) -> JsonDict:
        view_id = str(args.get("view_id") or "")
        if view_id not in self.views:
            return {"ok": False, "error": "not_found"}
        return {"ok": True, "view": self._view(args["view"], view_id)}

    def _api_views_publish(self, args: JsonDict) -> JsonDict:
        view = self._view(args["view"])
        with self._lock:
            self.homes[str(args["user_id"])] = view
        return {"ok": True, "view": view}


def _make_handler(fake: FakeSlack) -> type[BaseHTTPRequestHandler]:
    class Handler(BaseHTTPRequestHandler):
        protocol_version = "HTTP/1.1"

        def log_message(self, format: str, *args: Any) -> None:  # noqa: A002 - stdlib signature
            return  # keep test output quiet

        def do_GET(self) -> None:  # noqa: N802 - stdlib naming
            self._dispatch()

        def do_POST(self) -> None:  # noqa: N802 - stdlib naming
            self._dispatch()

        def _dispatch(self) -> None:
            parts = urlsplit(self.path)
            length = int(self.headers.get("Content-Length") or 0)
            raw = self.rfile.read(length) if length else b""
            if parts.path.startswith("/upload/"):
                found = fake.record_upload(parts.path[len("/upload/"):], raw)
                self._send(200 if found else 404, {"ok": found}, {})
                return
            if parts.path.startswith("/respond/"):
                fake.record_response(json.loads(raw or b"{}"), parts.path[len("/respond/"):])
                self._send(200, {"ok": True}, {})
                return
            if not parts.path.startswith("/api/"):
                self._send(404, {"ok": False, "error": "not_found"}, {})
                return
            method = parts.path[len("/api/"):]
            args: JsonDict = dict(parse_qsl(parts.query))
            content_type = self.headers.get("Content-Type", "")
            if raw and "json" in content_type:
                args.update(json.loads(raw))
            elif raw:
                args.update(dict(parse_qsl(raw.decode("utf-8"))))
            token = args.pop("token", None)
            auth = self.headers.get("Authorization", "")
            if auth.startswith("Bearer "):
                token = auth[len("Bearer "):]
            status, body, headers = fake.handle(method, args, token)
            self._send(status, body, headers)

        def _send(self, status: int, body: JsonDict, headers: dict) -> None:
            data = json.dumps(body).encode("utf-8")
            self.send_response(status, HTTPStatus(status).phrase if status in
                               HTTPStatus._value2member_map_ else None)
            self.send_header("Content-Type", "application/json; charset=utf-8")
            self.send_header("Content-Length", str(len(data)))
            for name, value in headers.items():
                self.send_header(name, value)
            self.end_headers()
            self.wfile.write(data)

    return Handler
