"""Loopback ports that count the connections made to each and close them at once, for tests that count
SSH activation checks: the service's check sees a host that does not speak SSH yet and tries again later."""
from __future__ import annotations

import selectors
import socket
import threading
from collections import Counter


class KnockCounter:
    def __init__(self, count: int):
        self.selector = selectors.DefaultSelector()
        self.ports: list[int] = []
        for _ in range(count):
            sock = socket.socket()
            sock.bind(("127.0.0.1", 0))
            sock.listen(16)
            sock.setblocking(False)
            self.selector.register(sock, selectors.EVENT_READ)
            self.ports.append(sock.getsockname()[1])
        self.knocks: Counter[int] = Counter()  # port -> connections accepted
        self.lock = threading.Lock()
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._serve, daemon=True)

    def addresses(self) -> list[str]:
        return [f"127.0.0.1:{port}" for port in self.ports]

    def count(self, address: str) -> int:
        with self.lock:
            return self.knocks[int(address.rsplit(":", 1)[1])]

    def _serve(self) -> None:
        while not self._stop.is_set():
            for key, _ in self.selector.select(timeout=0.2):
                try:
                    conn, _ = key.fileobj.accept()
                except BlockingIOError:
                    continue
                conn.close()
                with self.lock:
                    self.knocks[key.fileobj.getsockname()[1]] += 1

    def __enter__(self) -> "KnockCounter":
        self.thread.start()
        return self

    def __exit__(self, *exc) -> None:
        self._stop.set()
        self.thread.join(5)
        for key in list(self.selector.get_map().values()):
            key.fileobj.close()
        self.selector.close()
