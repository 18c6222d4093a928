"""A real HTTP receiver for webhook tests: http.server on 127.0.0.1 in a thread, recording every request.

`mode` decides the answer: "ok" (204), "fail" (500), or "hang" (the handler waits until `release()` — or
`hang_limit` seconds — before answering 204). It can be stopped (its port then refuses connections) and
started again on the same port.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import socket
import threading
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer


@dataclass
class Received:
    headers: dict
    body: bytes

    @property
    def event(self) -> dict:
        return json.loads(self.body)

    def signature_valid(self, secret: str) -> bool:
        timestamp = self.headers["X-Metalstream-Timestamp"]
        expected = "sha256=" + hmac.new(secret.encode(), f"{timestamp}.".encode() + self.body,
                                        hashlib.sha256).hexdigest()
        return hmac.compare_digest(expected, self.headers.get("X-Metalstream-Signature", ""))


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Receiver:
    def __init__(self, port: int | None = None, mode: str = "ok", hang_limit: float = 60.0):
        self.port = port or free_port()
        self.mode = mode
        self.hang_limit = hang_limit
        self.received: list[Received] = []  # answered requests, in the order they arrived
        self.in_flight = 0  # requests being held by "hang"
        self.lock = threading.Lock()
        self._release = threading.Event()
        self._server: ThreadingHTTPServer | None = None
        self._thread: threading.Thread | None = None

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/hooks/metalstream?src=test"

    def events(self) -> list[dict]:
        with self.lock:
            return [r.event for r in self.received]

    def release(self) -> None:
        self._release.set()

    def start(self) -> "Receiver":
        receiver = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self):  # noqa: N802
                body = self.rfile.read(int(self.headers.get("Content-Length", 0)))
                if receiver.mode == "hang":
                    with receiver.lock:
                        receiver.in_flight += 1
                    receiver._release.wait(receiver.hang_limit)
                    with receiver.lock:
                        receiver.in_flight -= 1
                status = 500 if receiver.mode == "fail" else 204
                if status == 204:
                    with receiver.lock:
                        receiver.received.append(Received(dict(self.headers), body))
                try:
                    self.send_response(status)
                    self.send_header("Content-Length", "0")
                    self.end_headers()
                except OSError:  # the sender gave up waiting
                    pass

            def log_message(self, *args):
                pass

        self._server = ThreadingHTTPServer(("127.0.0.1", self.port), Handler)
        self._server.daemon_threads = True
        self._thread = threading.Thread(target=self._server.serve_forever, kwargs={"poll_interval": 0.05},
                                        daemon=True)
        self._thread.start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()
            self._server = None

    def __enter__(self) -> "Receiver":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.release()
        self.stop()
