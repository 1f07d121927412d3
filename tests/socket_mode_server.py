"""Slack's Socket Mode side on loopback: a WebSocket server that sends envelopes and reads acks."""

from __future__ import annotations

import json
import queue
import threading
import uuid
from typing import Any

from websockets.sync.server import ServerConnection, serve


class SocketModeServer:
    """Accepts the app's connection, says hello, and exchanges envelopes like Slack does."""

    def __init__(self) -> None:
        self._server = serve(self._session, "127.0.0.1", 0)
        self._thread = threading.Thread(target=self._server.serve_forever, daemon=True)
        self._outbox: queue.Queue[str] = queue.Queue()
        self._acks: queue.Queue[dict[str, Any]] = queue.Queue()
        self.connected = threading.Event()

    @property
    def url(self) -> str:
        host, port = self._server.socket.getsockname()[:2]
        return f"ws://{host}:{port}/link/?ticket=test"

    def __enter__(self) -> SocketModeServer:
        self._thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()

    def _session(self, connection: ServerConnection) -> None:
        connection.send(json.dumps({"type": "hello", "num_connections": 1,
                                    "connection_info": {"app_id": "APEERSUP1"}}))
        self.connected.set()
        while True:
            try:
                outgoing = self._outbox.get(timeout=0.05)
                connection.send(outgoing)
            except queue.Empty:
                pass
            try:
                incoming = connection.recv(timeout=0.05)
            except TimeoutError:
                continue
            except Exception:  # noqa: BLE001 - the client went away
                return
            self._acks.put(json.loads(incoming))

    def send(self, kind: str, payload: dict[str, Any], timeout: float = 10) -> dict[str, Any]:
        """Deliver one envelope and return the app's acknowledgement."""
        envelope_id = str(uuid.uuid4())
        self._outbox.put(json.dumps({"envelope_id": envelope_id, "type": kind, "payload": payload,
                                     "accepts_response_payload": True, "retry_attempt": 0,
                                     "retry_reason": ""}))
        while True:
            ack = self._acks.get(timeout=timeout)
            if ack.get("envelope_id") == envelope_id:
                return ack
