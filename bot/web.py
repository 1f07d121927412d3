"""HTTP transport: Bolt behind Flask, served by gunicorn (threads), as Bolt's Heroku example does."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from flask import Flask, Response, request
from gunicorn.app.base import BaseApplication
from slack_bolt import App
from slack_bolt.adapter.flask.handler import to_bolt_request, to_flask_response
from slack_sdk.signature import SignatureVerifier
from sqlalchemy import text

from bot.envelope import malformed
from bot.runtime import Runtime

log = logging.getLogger(__name__)
EVENTS_PATH = "/slack/events"


def create_wsgi_app(runtime: Runtime, bolt: App) -> Flask:
    """The WSGI app: POST /slack/events for Slack, GET /healthz for the platform's health check."""
    verifier = SignatureVerifier(runtime.settings.slack_signing_secret or "")
    flask = Flask("peersupport")

    @flask.post(EVENTS_PATH)
    def slack_events() -> Response:
        body = request.get_data(as_text=True)
        # Verify before parsing, so nothing from an unsigned or stale request is even decoded.
        if not verifier.is_valid_request(body, dict(request.headers)):
            return Response("invalid signature", status=401)
        try:
            bolt_request = to_bolt_request(request)
        except (ValueError, TypeError, AttributeError, KeyError):
            # Bolt parses the whole envelope here; a body of the wrong shape is the sender's fault.
            return Response("malformed body", status=400)
        if malformed(bolt_request.body) is not None:
            return Response("malformed body", status=400)
        return to_flask_response(bolt.dispatch(bolt_request))

    @flask.get("/healthz")
    def healthz() -> Response:
        with runtime.engine.connect() as connection:
            connection.execute(text("SELECT 1"))
        return Response("ok", status=200)

    return flask


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
        if in_worker is not None:
            in_worker()

    options = server_options(settings.port, workers=workers, threads=settings.web_threads)
    options.update(post_fork=post_fork, when_ready=when_ready, post_worker_init=post_worker_init)
    GunicornServer(create_wsgi_app(runtime, bolt), options).run()
