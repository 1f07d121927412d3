"""The Bolt app factory: middleware, the error handler, and every listener from handlers/."""

from __future__ import annotations

import hashlib
import logging
import re
import threading
import uuid
from typing import Any

from slack_bolt import App, BoltRequest, BoltResponse

import handlers
from bot.app.runtime import Runtime
from bot.infra import metrics, outbox
from bot.infra.db import listen_once
from bot.infra.deliveries import delivery_key
from bot.infra.logs import ContextPool, correlated, traceback_without_messages
from handlers.common.middleware import DELIVERY, WORK_SLOTS, check_delivery

log = logging.getLogger(__name__)
# Listeners that may have acknowledged and be waiting for a work slot, per process.
ACK_BACKLOG = 256
_EVENT_ID = re.compile(r"Ev[A-Za-z0-9]{1,40}")


def correlation_id(body: dict[str, Any]) -> str:
    """The id every log line of one Slack delivery carries: Slack's event id for an event; for a
    click or a form, a digest of its delivery key (never the key itself), so a repeat of it
    shows the same id; otherwise a new one."""
    event_id = body.get("event_id")
    if isinstance(event_id, str) and _EVENT_ID.fullmatch(event_id):
        return event_id
    key = delivery_key(body)
    if key is not None:
        return "sl-" + hashlib.sha256(key.encode()).hexdigest()[:12]
    return "sl-" + uuid.uuid4().hex[:12]


class CorrelatedApp(App):
    """Bolt's App, each delivery handled under its correlation id (bot.infra.logs).

    Bolt's middlewares run one after another, not nested, so none of them can hold a value for
    the whole delivery; dispatch does. The listener pool copies it into the work after the
    acknowledgement."""

    def dispatch(self, req: BoltRequest) -> BoltResponse:
        body = req.body if isinstance(req.body, dict) else {}
        with correlated(correlation_id(body)):
            return super().dispatch(req)


def create_app(runtime: Runtime, *, verify_token: bool = True) -> App:
    """Build the Bolt app for HTTP or Socket Mode from a runtime."""
    settings = runtime.settings
    work_slots = threading.BoundedSemaphore(settings.listener_threads)
    app = CorrelatedApp(
        signing_secret=settings.slack_signing_secret or "",
        client=runtime.client,
        # Listeners start on this pool and acknowledge from it; it is larger than the number
        # that may work at once (work_slots, below), so an acknowledgement never queues behind
        # slow Web API calls: see handlers.common.middleware.
        # Its tasks keep the delivery's correlation id.
        listener_executor=ContextPool(
            max_workers=settings.listener_threads + ACK_BACKLOG, thread_name_prefix="listener"),
        request_verification_enabled=not settings.socket_mode,
        token_verification_enabled=verify_token,
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("peersupport.bolt"),
    )

    listen_once(runtime.sessions, "after_begin", check_delivery)

    @app.use
    def provide_runtime(context: dict[str, Any], body: dict[str, Any],
                        next: Any) -> None:  # noqa: A002 - Bolt's name
        metrics.count_delivery(body)
        context["services"] = runtime.services
        # A session connects only when first used; @transactional listeners commit and close it.
        # What a listener records in the outbox goes out once Slack has its answer.
        info: dict[str, Any] = {WORK_SLOTS: work_slots, outbox.DEFER: True}
        key = delivery_key(body)
        if key is not None:
            # Slack retries an event it thinks was lost, and a proxy may replay a click: the
            # first process to record the key handles it, every later copy is acknowledged and
            # dropped. Checked after the acknowledgement, when the work first uses the database
            # (handlers.common.middleware.check_delivery).
            info[DELIVERY] = (key, runtime.clock.now())
        context["db"] = runtime.sessions(info=info)
        next()

    @app.error
    def on_error(error: Exception, context: dict[str, Any], response: BoltResponse | None
                 ) -> BoltResponse | None:
        metrics.count_listener_error(error)
        # Type and traceback only: the request body (what someone typed) is never logged, and
        # neither are exception messages, which can quote it ("invalid literal for int(): ...").
        log.error("unhandled %s in a Slack listener\n%s", type(error).__name__,
                  traceback_without_messages(error))
        if isinstance(error, (KeyError, TypeError, ValueError, AttributeError)) and (
            response is None or response.status >= 500
        ):
            # A payload missing the fields Slack always sends is a bad request, not our failure.
            return BoltResponse(status=400, body="")
        return None

    handlers.register(app)
    return app

