"""The real app (Bolt behind the production Flask adapter) served on loopback with werkzeug."""

from __future__ import annotations

import threading
import time
from concurrent.futures import Future
from typing import Any

from werkzeug.serving import make_server
from werkzeug.wsgi import ClosingIterator

from bot.app.runtime import Runtime
from bot.app.slack_app import create_app
from bot.app.web import create_wsgi_app
from bot.sandbox.driver import SlackDriver
from bot.sandbox.slack_api import FakeSlack


class AppServer:
    """The real Bolt app behind the real Flask adapter, served on loopback."""

    def __init__(self, runtime: Runtime, fake: FakeSlack):
        self.runtime = runtime
        self.bolt = create_app(runtime)
        self._pending: set[Future] = set()
        self._serving = 0  # requests whose handling, work after the answer included, runs
        self._pending_lock = threading.Condition()
        self._track_listeners()
        self._server = make_server("127.0.0.1", 0, self._tracked(create_wsgi_app(runtime, self.bolt)),
                                   threaded=True)
        self._thread = threading.Thread(target=self._server.serve_forever, args=(0.05,),
                                        daemon=True)
        self._thread.start()
        self.url = f"http://127.0.0.1:{self._server.server_port}/slack/events"
        self.slack = SlackDriver(self.url, runtime.settings.slack_signing_secret or "", fake)

    def _track_listeners(self) -> None:
        # Bolt runs listeners on its executor after it answers Slack; counting what is still
        # running there lets the sandbox wait until the app has finished reacting to a request.
        executor = self.bolt._listener_runner.listener_executor
        submit = executor.submit

        def tracked_submit(fn: Any, /, *args: Any, **kwargs: Any) -> Future:
            future = submit(fn, *args, **kwargs)
            with self._pending_lock:
                self._pending.add(future)
            future.add_done_callback(self._done)
            return future

        executor.submit = tracked_submit  # type: ignore[method-assign]

    def _tracked(self, app: Any) -> Any:
        # Work a listener left for after the answer runs as the server closes the response,
        # after the client has it: counted until then, so settle() waits for it too.
        def serve(environ: dict, start_response: Any) -> Any:
            with self._pending_lock:
                self._serving += 1
            try:
                return ClosingIterator(app(environ, start_response), [self._served])
            except BaseException:
                self._served()
                raise

        return serve

    def _served(self) -> None:
        with self._pending_lock:
            self._serving -= 1
            self._pending_lock.notify_all()

    def _done(self, future: Future) -> None:
        with self._pending_lock:
            self._pending.discard(future)
            self._pending_lock.notify_all()

    def settle(self, timeout: float = 10.0) -> None:
        """Wait until every listener started by the requests sent so far has finished, and
        every request its work after the answer."""
        deadline = time.monotonic() + timeout
        with self._pending_lock:
            while self._pending or self._serving:
                remaining = deadline - time.monotonic()
                if remaining <= 0:
                    raise TimeoutError(f"{len(self._pending) + self._serving} listener(s) or "
                                       "request(s) still running")
                self._pending_lock.wait(remaining)

    def stop(self) -> None:
        """Stop serving, then let listeners still running after their ack finish."""
        self._server.shutdown()
        self._server.server_close()
        # Let listeners still running after their ack finish before Slack's stand-in goes.
        self.bolt._listener_runner.listener_executor.shutdown(wait=True)
