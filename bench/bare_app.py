"""The yardstick: a bare Bolt app whose listeners only acknowledge, served by the same gunicorn
configuration and Flask adapter as the real app (`python -m bench.bare_app`, PORT from the env)."""

from __future__ import annotations

import os
import re

from flask import Flask, Response, request
from slack_bolt import App
from slack_bolt.adapter.flask import SlackRequestHandler
from slack_sdk import WebClient

from bot.app.web import EVENTS_PATH, GunicornServer, server_options


def bare_bolt(signing_secret: str, api_url: str) -> App:
    """A Bolt app that acknowledges every command, click and submission and does nothing else."""
    # Bolt asks auth.test who the token belongs to on the first request: the same stand-in
    # as the real app answers.
    app = App(signing_secret=signing_secret, client=WebClient(token="xoxb-bare", base_url=api_url),
              token_verification_enabled=False)
    everything = re.compile(".*")
    app.command(everything)(lambda ack: ack())
    app.action(everything)(lambda ack: ack())
    app.view(everything)(lambda ack: ack())
    return app


def main() -> None:
    """Serve the bare app on PORT with WEB_CONCURRENCY workers, as `python -m bot web` would."""
    handler = SlackRequestHandler(bare_bolt(os.environ["SLACK_SIGNING_SECRET"],
                                            os.environ["SLACK_API_URL"]))
    flask = Flask("bare")

    @flask.post(EVENTS_PATH)
    def events() -> Response:
        return handler.handle(request)

    options = server_options(int(os.environ["PORT"]), workers=int(os.environ.get("WEB_CONCURRENCY", 2)),
                             threads=int(os.environ.get("PEERSUPPORT_WEB_THREADS", 8)))
    GunicornServer(flask, options).run()


if __name__ == "__main__":
    main()
