"""Every outgoing Slack Web API call goes through here.

One place means one set of retry rules, one list of the methods (and so the scopes) the app
uses, and one place where Slack's errors become outcomes the rest of the code understands.
"""

from __future__ import annotations

import functools
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, TypeVar

from slack_sdk import WebClient
from slack_sdk.errors import SlackApiError
from slack_sdk.http_retry.builtin_handlers import (
    ConnectionErrorRetryHandler,
    RateLimitErrorRetryHandler,
    ServerErrorRetryHandler,
)
from slack_sdk.web import SlackResponse
from slack_sdk.webhook import WebhookClient, WebhookResponse

from bot.infra import metrics
from bot.infra.duework import JobContext, RetryLater
from bot.infra.logs import ContextPool
from bot.infra.settings import Settings

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")

# The Web API methods this module calls; tests check them against Slack's spec and the manifest.
METHODS_USED = (
    "auth.test",
    "chat.postMessage",
    "chat.postEphemeral",
    "chat.update",
    "conversations.open",
    "conversations.history",
    "conversations.replies",
    "users.info",
    "usergroups.users.list",
    "usergroups.list",
    "conversations.members",
    "views.open",
    "views.update",
    "views.publish",
    "files.getUploadURLExternal",
    "files.completeUploadExternal",
)
# files_upload_v2 makes the two file calls above (and uploads to the URL the first returns).
FILE_METHODS = ("files.getUploadURLExternal", "files.completeUploadExternal")
# How the metrics name that upload (both calls, and the upload between them).
UPLOAD = "files.upload_v2"

# Errors after which trying the same call again cannot help: the person or channel is gone.
UNREACHABLE = frozenset(
    {"user_not_found", "channel_not_found", "is_archived", "cannot_dm_bot", "user_disabled",
     "not_in_channel", "users_not_found"}
)
# Errors about the app itself (its token or its scopes): nothing works until an operator acts,
# so they are logged as errors and the work is retried later, never skipped.
APP_PROBLEMS = frozenset(
    {"invalid_auth", "not_authed", "account_inactive", "token_revoked", "token_expired",
     "missing_scope", "no_permission", "team_access_not_granted"}
)


def build_client(settings: Settings, *, timeout: int = 10) -> WebClient:
    """A WebClient that honours SLACK_API_URL and retries 429s and dropped connections."""
    return WebClient(
        token=settings.slack_bot_token,
        base_url=settings.slack_api_url,
        timeout=timeout,
        retry_handlers=[
            RateLimitErrorRetryHandler(max_retry_count=2),
            ConnectionErrorRetryHandler(max_retry_count=2),
            ServerErrorRetryHandler(max_retry_count=1),
        ],
    )


def retry_after(error: SlackApiError) -> float:
    """The seconds a 429's Retry-After header asks for (1 when it is missing or odd)."""
    headers = error.response.headers or {}
    try:
        return max(1.0, float(headers.get("Retry-After") or headers.get("retry-after") or 1))
    except (TypeError, ValueError):
        return 1.0


class SlackAppProblem(RuntimeError):
    """Slack refused the app itself (token revoked, scope missing): an operator must act."""

    def __init__(self, error: str, needed: str | None = None):
        super().__init__(error)
        self.error = error
        self.needed = needed


class TriggerExpired(RuntimeError):
    """A modal could not open because Slack's trigger_id expired (3 seconds): ask to retry."""


class SlackUnreachable(LookupError):
    """The recipient cannot be reached (deleted, deactivated, channel gone); carry on without them."""

    def __init__(self, error: str):
        super().__init__(error)
        self.error = error


@dataclass(frozen=True)
class Posted:
    """Where a message went, so it can be updated later."""

    channel: str
    ts: str


class Messenger:
    """Thin, typed wrappers over the Web API calls the app makes."""

    def __init__(self, client: WebClient, *, parallel: int = 8):
        self.client = client
        self.parallel = parallel
        self._pool: ContextPool | None = None
        self._pool_lock = threading.Lock()
        self._slowed_until = 0.0  # time.monotonic() before which Slack asked us to wait

    def post_each(self, messages: Sequence[tuple[str, dict[str, Any]]]
                  ) -> list[Posted | Exception]:
        """Post each (channel, message) pair, `parallel` at a time, in order; where a post
        failed, its exception in its place. A user id as the channel posts to the app's DM
        with that person, in one call (no conversations.open first).

        Once Slack answers 429 (after slack_sdk's own retries), the posts not yet made are not
        attempted: each gets that same error, so the caller retries them after Retry-After and
        a long batch does not keep Slack's limit busy (or outlive its claim) for nothing.
        """
        slowed: list[SlackApiError] = []

        def post(pair: tuple[str, dict[str, Any]]) -> Posted | Exception:
            if slowed:
                return slowed[0]
            try:
                return self.post_message(pair[0], **pair[1])
            except SlackApiError as error:
                if error.response.get("error") == "ratelimited":
                    slowed.append(error)
                return error
            except Exception as error:  # noqa: BLE001 - one failed post must not stop the rest
                return error

        return self.in_parallel(post, messages)

    def slowed_for(self) -> float:
        """Seconds left of the last Retry-After Slack gave (0 when it did not ask to wait):
        work that can wait holds back instead of meeting the same limit again."""
        return max(0.0, self._slowed_until - time.monotonic())

    def _slow_down(self, seconds: float) -> None:
        self._slowed_until = max(self._slowed_until, time.monotonic() + seconds)

    def in_parallel(self, call: Callable[[T], R], items: Sequence[T]) -> list[R]:
        """`call` on each item, `parallel` at a time, results in order (for Slack calls)."""
        if len(items) <= 1:
            return [call(item) for item in items]
        with self._pool_lock:
            if self._pool is None:  # made on first use: after a server's fork, never before
                # Each post keeps the correlation id of the delivery or due item it is for.
                self._pool = ContextPool(self.parallel, thread_name_prefix="slack-post")
        return list(self._pool.map(call, items))

    def _call(self, method: str, **kwargs: Any) -> dict[str, Any]:
        response = self._respond(method, **kwargs)
        return dict(response.data) if isinstance(response.data, dict) else {}

    def _respond(self, method: str, **kwargs: Any) -> SlackResponse:
        """One Web API call, counted, with Slack's failures turned into the app's exceptions;
        the whole response (its headers too)."""
        if method not in METHODS_USED:
            raise ValueError(f"{method} is not in METHODS_USED; add it there and to manifest.yml")
        # slack_sdk's named methods know which HTTP verb and encoding each method wants.
        call = getattr(self.client, method.replace(".", "_"))
        try:
            response = call(**kwargs)
        except SlackApiError as error:
            code = str(error.response.get("error", "unknown_error"))
            metrics.count_slack_call(method, code)
            # Only the method and Slack's error code are logged, never the arguments.
            log.warning("slack %s failed: %s", method, code)
            if code == "ratelimited":
                self._slow_down(retry_after(error))
            if code in UNREACHABLE:
                raise SlackUnreachable(code) from None
            if code in APP_PROBLEMS:
                needed = error.response.get("needed")
                log.error("Slack refused the app on %s: %s%s; fix the app's token or scopes "
                          "(manifest.yml)", method, code, f" (needs {needed})" if needed else "")
                raise SlackAppProblem(code, needed) from None
            if code == "expired_trigger_id":
                raise TriggerExpired(code) from None
            raise
        except Exception:
            metrics.count_slack_call(method, "transport_error")  # timed out, connection lost
            raise
        metrics.count_slack_call(method, "ok")
        return response

    def responder(self, response_url: str) -> Callable[..., WebhookResponse]:
        """Answer a click through its response_url, as Bolt's `respond` does, from wherever the
        click is applied (a clock it was handed to, after its listener returned)."""
        webhook = WebhookClient(response_url, timeout=self.client.timeout,
                                retry_handlers=self.client.retry_handlers)
        return webhook.send

    def auth_test(self) -> dict[str, Any]:
        """Check the bot token and learn the bot's own ids."""
        return self._call("auth.test")

    def post_message(self, channel: str, text: str, blocks: Sequence[dict] | None = None,
                     metadata: dict[str, Any] | None = None, thread_ts: str | None = None
                     ) -> Posted:
        """Post a message to a channel or DM (or as a reply in a thread) and return where it
        landed.

        `metadata` ({"event_type": ..., "event_payload": {...}}) marks the message so it can
        be found again (find_marked); it holds ids only.
        """
        extra: dict[str, Any] = {}
        if blocks:
            extra["blocks"] = list(blocks)
        if metadata:
            extra["metadata"] = metadata
        if thread_ts:
            extra["thread_ts"] = thread_ts
        data = self._call("chat.postMessage", channel=channel, text=text, **extra)
        return Posted(channel=data.get("channel", channel), ts=data.get("ts", ""))

    def find_marked(self, channel: str, event_type: str, key: str, value: object,
                    *, limit: int = 50, thread_ts: str | None = None) -> Posted | None:
        """The bot's recent message in `channel` (or in one thread of it) whose metadata
        payload has key == value."""
        if thread_ts:
            data = self._call("conversations.replies", channel=channel, ts=thread_ts,
                              limit=limit, include_all_metadata=True)
        else:
            data = self._call("conversations.history", channel=channel, limit=limit,
                              include_all_metadata=True)
        for message in data.get("messages", []):
            meta = message.get("metadata") or {}
            if meta.get("event_type") == event_type and \
                    (meta.get("event_payload") or {}).get(key) == value:
                return Posted(channel=channel, ts=str(message.get("ts", "")))
        return None

    def post_dm(self, user_id: str, text: str, blocks: Sequence[dict] | None = None,
                metadata: dict[str, Any] | None = None) -> Posted:
        """Open (or reuse) the DM with one person and post there."""
        channel = self.open_conversation([user_id])
        return self.post_message(channel, text, blocks, metadata)

    def post_ephemeral(self, channel: str, user_id: str, text: str,
                       blocks: Sequence[dict] | None = None) -> None:
        """Post a message only `user_id` can see."""
        self._call("chat.postEphemeral", channel=channel, user=user_id, text=text,
                   **({"blocks": list(blocks)} if blocks else {}))

    def update_message(self, channel: str, ts: str, text: str,
                       blocks: Sequence[dict] | None = None) -> None:
        """Replace a message the bot posted earlier."""
        self._call("chat.update", channel=channel, ts=ts, text=text,
                   blocks=list(blocks) if blocks else [])

    def open_conversation(self, user_ids: Sequence[str]) -> str:
        """Open a DM (one user) or group DM (several) with the bot; returns the channel id."""
        data = self._call("conversations.open", users=",".join(user_ids))
        return str(data["channel"]["id"])

    def user_info(self, user_id: str) -> dict[str, Any]:
        """The Slack profile of one user (time zone, deleted flag)."""
        return dict(self._call("users.info", user=user_id)["user"])

    def usergroup_members(self, group_id: str) -> list[str]:
        """The user ids in a Slack user group."""
        return [str(u) for u in self._call("usergroups.users.list", usergroup=group_id)["users"]]

    def usergroups(self) -> list[tuple[str, str]]:
        """The workspace's user groups as (id, handle), for people to choose their team's."""
        data = self._call("usergroups.list")
        return [(str(g["id"]), str(g.get("handle") or g.get("name") or g["id"]))
                for g in data.get("usergroups", []) if g.get("id")]

    def channel_members(self, channel_id: str) -> list[str]:
        """Every member of a channel, following Slack's pages (a large channel takes several)."""
        members: list[str] = []
        cursor = ""
        while True:
            data = self._call("conversations.members", channel=channel_id, limit=1000,
                              **({"cursor": cursor} if cursor else {}))
            members.extend(str(m) for m in data.get("members", []))
            cursor = str((data.get("response_metadata") or {}).get("next_cursor") or "")
            if not cursor:
                return members

    def open_view(self, trigger_id: str, view: dict) -> dict[str, Any]:
        """Open a modal in answer to a click or command. TriggerExpired when it cannot open now:
        its trigger expired, or Slack limited us past the trigger's three seconds."""
        try:
            return self._call("views.open", trigger_id=trigger_id, view=view)
        except SlackApiError as error:
            if error.response.get("error") == "ratelimited":
                raise TriggerExpired("ratelimited") from None
            raise

    def update_view(self, view_id: str, view: dict) -> dict[str, Any]:
        """Replace an open modal."""
        return self._call("views.update", view_id=view_id, view=view)

    def upload_file(self, channel: str, filename: str, content: bytes, title: str,
                    comment: str | None = None, *, alt_text: str | None = None) -> str:
        """Share a file (a chart or a CSV of aggregates) in a channel or DM; returns its id."""
        # An image's alt text is what a screen reader says instead of the picture.
        extra = {"initial_comment": comment} if comment else {}
        if alt_text:
            extra["alt_txt"] = alt_text
        try:
            response = self.client.files_upload_v2(
                channel=channel, filename=filename, content=content, title=title, **extra)
        except SlackApiError as error:
            code = str(error.response.get("error", "unknown_error"))
            metrics.count_slack_call(UPLOAD, code)
            log.warning("slack files.upload_v2 failed: %s", code)
            if code in UNREACHABLE:
                raise SlackUnreachable(code) from None
            raise
        except Exception:
            metrics.count_slack_call(UPLOAD, "transport_error")
            raise
        metrics.count_slack_call(UPLOAD, "ok")
        files = response.get("files") or [response.get("file") or {}]
        return str(files[0].get("id", ""))

    def publish_home(self, user_id: str, view: dict) -> None:
        """Publish a person's App Home tab."""
        self._call("views.publish", user_id=user_id, view=view)

    def granted_scopes(self) -> set[str]:
        """The scopes Slack granted the bot token: auth.test's x-oauth-scopes header."""
        response = self._respond("auth.test")
        headers = {str(name).lower(): value for name, value in (response.headers or {}).items()}
        value = headers.get("x-oauth-scopes") or ""
        text = ",".join(value) if isinstance(value, list) else str(value)
        return {scope.strip() for scope in text.split(",") if scope.strip()}


APP_PROBLEM_RETRY = 300  # seconds: an operator has to fix the token or scopes first
SLACK_ERROR_RETRY = 60


def as_retry(error: Exception) -> Exception:
    """Slack refusing the app, or failing after its own retries, means try the job later."""
    if isinstance(error, SlackAppProblem):
        return RetryLater(APP_PROBLEM_RETRY, f"slack: {error.error}")
    if isinstance(error, SlackApiError):
        return RetryLater(SLACK_ERROR_RETRY, "slack: " + str(
            error.response.get("error", "error"))[:60])
    return error


def retry_on_slack_trouble(run: Callable[[JobContext], None]) -> Callable[[JobContext], None]:
    """A job whose Slack trouble becomes a later retry (see as_retry)."""

    @functools.wraps(run)
    def guarded(ctx: JobContext) -> None:
        try:
            run(ctx)
        except (SlackAppProblem, SlackApiError) as error:
            raise as_retry(error) from None

    return guarded
