"""Clicks applied by the process that sends the messages.

A web process that hands its messages to a listening clock (bot.infra.wakeup) hands over the
busiest clicks too: it acknowledges, records the click as one outbox item in the request's
transaction, and answers; the clock applies it the moment PostgreSQL wakes it, in its own
transaction, with the same listener code, and sends what follows. The acknowledging process
then only answers and records (an Accept costs it a third of the processor time it did).
Where nobody listens (SQLite, no clock, PEERSUPPORT_DELIVERY=web) the listener runs in the web
process as before. A click recorded and then left by a clock that died is swept up by a web
process within seconds, like any message.

Only what applying the click needs is kept: who clicked, the action, where the clicked message
is, and the response_url to answer in (valid for 30 minutes); never a message's text.
"""

from __future__ import annotations

import functools
import uuid
from collections.abc import Callable
from typing import Any, TypeVar

from slack_bolt import Ack, Respond
from sqlalchemy.orm import Session

from bot.infra import outbox
from bot.infra.duework import JobContext, JobKind, JobRegistry
from handlers.common.services import Services

Listener = TypeVar("Listener", bound=Callable[..., Any])
# The listeners a click may be handed to, by name: the clock looks the handed click's up here.
_LISTENERS: dict[str, Callable[..., Any]] = {}
_ACTION_FIELDS = ("type", "action_id", "block_id", "value", "action_ts", "selected_option")


def to_the_clock(listener: Listener) -> Listener:
    """Let a block-action listener be applied by the listening clock (see the module's
    docstring); put it under @transactional, whose transaction records the click. The click is
    acknowledged first, so asking whether a clock listens (a database read, once a second)
    never delays the answer; the listener's own ack() then does nothing."""
    name = f"{listener.__module__}.{listener.__name__}"
    _LISTENERS[name] = listener

    @functools.wraps(listener)
    def run(ack: Ack, body: dict[str, Any], action: dict[str, Any], respond: Respond,
            context: dict[str, Any], db: Session) -> Any:
        ack()
        services: Services = context["services"]
        if not services.hands_over():
            return listener(ack=_acked, body=body, action=action, respond=respond,
                            context=context, db=db)
        click = _kept(body, action)
        outbox.record(db, outbox.Effect.CLICK, {"listener": name, "body": click},
                      key=f"click:{uuid.uuid4().hex}", now=services.clock.now())
        return None

    return run  # type: ignore[return-value]


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
    """The listener's ack(), and respond() for a click without a response_url: the click was
    already acknowledged (by to_the_clock), and there is nowhere to answer."""


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
