"""Clicks applied by the process that sends the messages.

A web process that hands its messages to a listening clock (bot.infra.wakeup) hands over the
busiest clicks too. A Bolt listener middleware, in the thread that received the click, records
it as one outbox item with one statement that also checks the delivery and wakes the clock
(bot.infra.handoff), then answers Slack; the listener itself does not run there, so neither the
listener pool nor Bolt's wait for an acknowledgement is involved, and the click is safe in the
database before Slack hears back. The clock applies it in its own transaction with the same
listener code and sends what follows. These listeners are registered before all others: Bolt
tries listeners in order, and the clicks that come by the thousand should not pay for the rest.
Where nobody listens (SQLite, no clock, PEERSUPPORT_DELIVERY=web) the middleware lets the
listener run in the web process as before. A click recorded and then left by a clock that died
is swept up by a web process within seconds, like any message.

Only what applying the click needs is kept: who clicked, the action, where the clicked message
is, and the response_url to answer in (valid for 30 minutes); never a message's text.
"""

from __future__ import annotations

import logging
import re
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from slack_bolt import App, BoltResponse
from sqlalchemy.orm import Session

from bot.infra import handoff, outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry
from handlers.common.middleware import DELIVERY
from handlers.common.services import Services

log = logging.getLogger(__name__)
# The listeners a click may be handed to, by name: the clock looks the handed click's up here.
_LISTENERS: dict[str, Callable[..., Any]] = {}
_ACTION_FIELDS = ("type", "action_id", "block_id", "value", "action_ts", "selected_option")
Middleware = Callable[..., BoltResponse | None]
Listener = TypeVar("Listener", bound=Callable[..., Any])
# Each @to_the_clock listener, in the order they were defined: what it matches, itself, and
# its hand-over middleware.
_CLICKS: list[tuple[str | re.Pattern[str], Callable[..., Any], Middleware]] = []


def to_the_clock(matcher: str | re.Pattern[str]) -> Callable[[Listener], Listener]:
    """Listen for the clicks whose action_id `matcher` matches, handing them to the listening
    clock (see the module's docstring): put it above @transactional, so the listener is known
    by name in every process, including the clock, which builds no Bolt app. `register` adds
    it to the app. The listener acknowledges as usual; where the clock applies it, its ack()
    does nothing."""

    def decorate(listener: Listener) -> Listener:
        # The clock runs the listener in its due item's transaction: not @transactional's own.
        bare = listener.__wrapped__ if getattr(listener, "__transactional__", False) else listener
        name = f"{bare.__module__}.{bare.__name__}"
        _LISTENERS[name] = bare
        _CLICKS.append((matcher, listener, _middleware(name)))
        return listener

    return decorate


def _middleware(name: str) -> Middleware:
    def hand_over(body: dict[str, Any], action: dict[str, Any], context: dict[str, Any],
                  next: Callable[[], None]) -> BoltResponse | None:  # noqa: A002 - Bolt's name
        services: Services = context["services"]
        if not services.hands_over():
            next()
            return None
        db: Session = context["db"]
        pending = db.info.pop(DELIVERY, None)  # checked by the recording statement instead
        recorded = handoff.hand_over(
            db.get_bind(), outbox.Effect.CLICK, {"listener": name, "body": _kept(body, action)},
            key=f"click:{uuid.uuid4().hex}", now=services.clock.now(),
            delivery=pending[0] if pending else None)
        if not recorded:
            log.info("dropped a repeated Slack delivery")
        # A repeat gets the same empty answer as the first copy.
        return BoltResponse(status=200, body="")

    hand_over.__name__ = f"hand_over_{name.rsplit('.', 1)[-1]}"
    return hand_over


def register(app: App) -> None:
    """Add every @to_the_clock listener to `app`, each behind its hand-over middleware."""
    for matcher, listener, middleware in _CLICKS:
        app.action(matcher, middleware=[middleware])(listener)


def _kept(body: dict[str, Any], action: dict[str, Any]) -> dict[str, Any]:
    """The part of a click's payload applying it needs (the listeners read nothing else)."""
    container = body.get("container") if isinstance(body.get("container"), dict) else {}
    channel = body.get("channel") if isinstance(body.get("channel"), dict) else {}
    user = body.get("user") if isinstance(body.get("user"), dict) else {}
    return {
        "type": body.get("type"),
        "user": {"id": user.get("id")},
        "actions": [{k: action[k] for k in _ACTION_FIELDS if k in action}],
        "container": {k: container[k] for k in ("type", "message_ts", "channel_id")
                      if k in container},
        "channel": {"id": channel.get("id")} if channel.get("id") else {},
        "response_url": body.get("response_url"),
    }


def _acked(*_args: Any, **_kwargs: Any) -> None:
    """The listener's ack(), and respond() for a click without a response_url, in the clock:
    the web process already answered Slack, and there is nowhere to answer."""


def register_jobs(jobs: JobRegistry, services: Services) -> None:
    """The clock's side: apply a handed-over click in its due item's transaction."""

    def apply(ctx: JobContext) -> None:
        listener = _LISTENERS.get(str(ctx.payload.get("listener")))
        if listener is None:
            raise LookupError("a click handed over to a listener this version does not have")
        body = dict(ctx.payload["body"])
        url = body.get("response_url")
        respond = services.messenger.responder(url) if isinstance(url, str) else _acked
        listener(ack=_acked, body=body, action=body["actions"][0], respond=respond,
                 context={"services": services, "db": ctx.session}, db=ctx.session)

    # A person is waiting on it however late it is found; run twice, the guarded transitions
    # make the second a refusal, as a second click is.
    jobs.register(JobKind(outbox.Effect.CLICK.value, apply, always_run=True, max_attempts=3))
