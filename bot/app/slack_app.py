"""The Bolt app factory: middleware, the error handler, and every listener from handlers/."""

from __future__ import annotations

import logging
import threading
import traceback
from concurrent.futures import ThreadPoolExecutor
from typing import Any

from slack_bolt import App, BoltResponse
from sqlalchemy import event

import handlers
from bot.app.runtime import Runtime
from bot.infra import outbox
from bot.infra.deliveries import delivery_key
from handlers.common.middleware import DELIVERY, WORK_SLOTS, check_delivery

log = logging.getLogger(__name__)
# Listeners that may have acknowledged and be waiting for a work slot, per process.
ACK_BACKLOG = 256


def create_app(runtime: Runtime, *, verify_token: bool = True) -> App:
    """Build the Bolt app for HTTP or Socket Mode from a runtime."""
    settings = runtime.settings
    work_slots = threading.BoundedSemaphore(settings.listener_threads)
    app = App(
        signing_secret=settings.slack_signing_secret or "",
        client=runtime.client,
        # Listeners start on this pool and acknowledge from it; it is larger than the number
        # that may work at once (work_slots, below), so an acknowledgement never queues behind
        # slow Web API calls: see handlers.common.middleware.
        listener_executor=ThreadPoolExecutor(
            max_workers=settings.listener_threads + ACK_BACKLOG, thread_name_prefix="listener"),
        request_verification_enabled=not settings.socket_mode,
        token_verification_enabled=verify_token,
        raise_error_for_unhandled_request=False,
        logger=logging.getLogger("peersupport.bolt"),
    )

    if not event.contains(runtime.sessions, "after_begin", check_delivery):
        event.listen(runtime.sessions, "after_begin", check_delivery)

    @app.use
    def provide_runtime(context: dict[str, Any], body: dict[str, Any],
                        next: Any) -> None:  # noqa: A002 - Bolt's name
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


def traceback_without_messages(error: BaseException) -> str:
    """Where `error` and the errors it was raised from happened: types and frames, no messages."""
    parts: list[str] = []
    current: BaseException | None = error
    while current is not None and len(parts) < 10:  # a chain can loop back on itself
        frames = "".join(traceback.format_list(traceback.extract_tb(current.__traceback__)))
        parts.append(f"{type(current).__name__}, raised at:\n{frames}")
        current = current.__cause__ or current.__context__
    return "which led to ".join(reversed(parts)).rstrip()
