"""HTTP transport: Bolt behind Flask, served by gunicorn (threads), as Bolt's Heroku example does."""

from __future__ import annotations

import contextvars
import functools
import logging
import re
from collections.abc import Callable, Mapping
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication
from slack_bolt import App, BoltRequest, BoltResponse
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy.exc import SQLAlchemyError

from bot.app.runtime import SWEEP_SECONDS, Runtime, freeze_startup_heap
from bot.app.scheduler import Watch
from bot.infra import health, metrics
from bot.infra.envelope import malformed, too_deep
from bot.infra.logs import gunicorn_logger, traceback_without_messages
from handlers.common.middleware import AFTER_ANSWER

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"
# Slack's largest requests (a modal's submission with its blocks) are a few hundred KB; a longer
# body is refused with 413 before it is read.
MAX_BODY_BYTES = 1024 * 1024
# slack_sdk calls int() on the timestamp and compares signatures as text: a timestamp that is not
# a number, or a signature with non-ASCII characters, would make it raise instead of refuse.
_TIMESTAMP = re.compile(r"[0-9]{1,12}")
_SIGNATURE = re.compile(r"v0=[0-9a-f]{64}")


def create_wsgi_app(runtime: Runtime, bolt: App) -> Flask:
    """The WSGI app: POST /slack/events for Slack; GET /healthz (liveness: the process answers)
    and GET /readyz (readiness: the database answers and a clock ticks) for the platform; GET
    /metrics for Prometheus, behind its token."""
    verifier = SignatureVerifier(runtime.settings.slack_signing_secret or "")
    flask = Flask("peersupport")
    flask.config["MAX_CONTENT_LENGTH"] = MAX_BODY_BYTES

    @flask.post(EVENTS_PATH)
    def slack_events() -> Response:
        body = request.get_data(as_text=True)  # 413 when longer than MAX_BODY_BYTES
        # Verify before parsing, so nothing from an unsigned or stale request is even decoded.
        if not signed_by_slack(verifier, body, request.headers):
            return Response("invalid signature", status=401)
        if too_deep(body):
            return Response("malformed body", status=400)
        try:
            bolt_request = to_bolt_request(request)
        except (ValueError, TypeError, AttributeError, KeyError, RecursionError):
            # Bolt parses the whole envelope here; a body of the wrong shape is the sender's fault.
            return Response("malformed body", status=400)
        if malformed(bolt_request.body) is not None:
            return Response("malformed body", status=400)
        after: list[tuple[contextvars.Context, Callable[[], Any]]] = []
        # Work a listener leaves for after the answer runs when the server closes the response,
        # once it has been written, in this thread and under the delivery's correlation id.
        bolt_request.context[AFTER_ANSWER] = lambda work: after.append(
            (contextvars.copy_context(), work))
        response = to_flask_response(dispatch(bolt, bolt_request))
        for context, work in after:
            response.call_on_close(functools.partial(context.run, run_after_answer, work))
        return response

    @flask.get("/healthz")
    def healthz() -> Response:
        # Liveness only: restarting this process would not bring a database or a clock back.
        return Response("ok", status=200, mimetype="text/plain")

    @flask.get("/readyz")
    def readyz() -> Response:
        reason = not_ready(runtime)
        if reason is not None:
            return Response(f"not ready: {reason}", status=503, mimetype="text/plain")
        return Response("ready", status=200, mimetype="text/plain")

    @flask.get("/metrics")
    def metrics_endpoint() -> Response:
        # Prometheus, with PEERSUPPORT_METRICS_TOKEN as a bearer token: 404 until it is set.
        status, body, content_type = metrics.answer(
            runtime.settings, request.headers.get("Authorization"), runtime.sessions,
            runtime.clock)
        return Response(body, status=status, content_type=content_type)

    return flask


def not_ready(runtime: Runtime) -> str | None:
    """Why this deployment cannot keep its promises right now, in one line (no secrets), or None:
    the database does not answer, or no clock has ticked for too long."""
    limit = health.limit_for(runtime.settings)
    try:
        with runtime.engine.connect() as connection:
            clock = health.clock_status(connection, now=runtime.clock.now(), limit=limit)
    except SQLAlchemyError as error:
        return f"the database did not answer ({type(error).__name__})"
    if clock.stale:
        last = (f"last ticked {clock.ticked_at:%Y-%m-%d %H:%M:%S} UTC" if clock.ticked_at
                else "no clock has ticked")
        return (f"the clock is stale ({last}; the limit is {int(limit.total_seconds())} s): "
                "check-ins, offer timeouts and escalations are waiting")
    return None


def signed_by_slack(verifier: SignatureVerifier, body: str, headers: Mapping[str, str]) -> bool:
    """Whether `body` carries Slack's signature, made under 5 minutes ago."""
    timestamp = headers.get("X-Slack-Request-Timestamp", "")
    signature = headers.get("X-Slack-Signature", "")
    if _TIMESTAMP.fullmatch(timestamp) is None or _SIGNATURE.fullmatch(signature) is None:
        return False
    return verifier.is_valid(body, timestamp, signature)


def run_after_answer(work: Callable[[], Any]) -> None:
    """Run work left for after Slack's answer; a failure is logged as a listener's is (type and
    traceback, never a message), since nobody is left to answer."""
    try:
        work()
    except Exception as error:  # noqa: BLE001 - the answer went out; the log is all that is left
        metrics.count_listener_error(error)
        log.error("unhandled %s after answering Slack\n%s", type(error).__name__,
                  traceback_without_messages(error))


def dispatch(bolt: App, bolt_request: BoltRequest) -> BoltResponse:
    """Bolt's answer to a checked request; 400 if Bolt cannot read it even so."""
    try:
        return bolt.dispatch(bolt_request)
    except (ValueError, TypeError, AttributeError, KeyError) as error:
        # Bolt reads the payload again to call its error handler, outside the handler's guard:
        # a field the envelope check missed would otherwise be a 500. Type only: no content.
        log.warning("refused a request Bolt could not read: %s", type(error).__name__)
        return BoltResponse(status=400, body="")


class GunicornServer(BaseApplication):  # type: ignore[misc]
    """gunicorn, configured in code so settings are built (and validated) once, before forking."""

    def __init__(self, application: Flask, options: dict[str, Any]):
        self.application = application
        self.options = options
        super().__init__()

    def load_config(self) -> None:
        for key, value in self.options.items():
            # Settings newer gunicorn releases added are skipped on older ones.
            if key in self.cfg.settings:
                self.cfg.set(key, value)

    def load(self) -> Flask:
        return self.application


def server_options(port: int, *, workers: int, threads: int) -> dict[str, Any]:
    """gunicorn's settings for serving Slack: threaded workers, no access log, no admin socket."""
    return {
        "bind": f"0.0.0.0:{port}",
        "workers": workers,
        "worker_class": "gthread",
        "threads": threads,
        "timeout": 30,
        "graceful_timeout": 20,
        "keepalive": 5,
        "accesslog": None,
        # No admin socket in the home directory: several instances may run on one host.
        "control_socket_disable": True,
    }


def serve(runtime: Runtime, bolt: App, *, workers: int,
          in_worker: Callable[[], None] | None = None) -> None:
    """Serve HTTP on PORT with gunicorn's threaded workers until stopped.

    `in_worker` runs in each worker once it has booted: threads must start after the fork, since
    a thread running in the master while it forks can leave a lock held forever in the child.
    """
    settings = runtime.settings

    def post_fork(_server: Any, _worker: Any) -> None:
        # Connections opened before the fork must not be shared with the child.
        runtime.engine.dispose(close=False)

    def when_ready(_server: Any) -> None:
        log.info("listening for Slack on port %d at %s", settings.port, EVENTS_PATH)

    def post_worker_init(_worker: Any) -> None:
        # Every worker watches the clock; the database decides which one tells coordinators.
        Watch(runtime.watch_clock).start()
        # Messages handed to a clock that died before sending them are sent from here.
        Watch(runtime.sweep_outbox, SWEEP_SECONDS, "outbox-sweep").start()
        if in_worker is not None:
            in_worker()

    options = server_options(settings.port, workers=workers, threads=settings.web_threads)
    options.update(post_fork=post_fork, when_ready=when_ready, post_worker_init=post_worker_init,
                   on_starting=metrics.gunicorn_on_starting,
                   child_exit=metrics.gunicorn_child_exit,
                   logger_class=gunicorn_logger(settings.log_format))
    application = create_wsgi_app(runtime, bolt)
    freeze_startup_heap()  # in the master, so every worker forked from it starts frozen
    GunicornServer(application, options).run()
