"""Capture the agent's whole log (every logger, DEBUG and up) for the result it posts.

Memory is bounded: the first `head_bytes` are kept whole (how the install started), then only the
last `tail_bytes` (how it ended); what falls in between is counted and marked as omitted.
Console handlers keep the level they had: capturing DEBUG does not make the console chatty.
"""
from __future__ import annotations

import collections
import logging
import threading

FORMAT = "%(asctime)s %(name)s %(levelname)s %(message)s"


class AgentLog(logging.Handler):
    def __init__(self, *, head_bytes: int = 256 * 1024, tail_bytes: int = 768 * 1024):
        super().__init__(level=logging.DEBUG)
        self.setFormatter(logging.Formatter(FORMAT))
        self._head: list[str] = []
        self._head_left = head_bytes
        self._tail: collections.deque[str] = collections.deque()
        self._tail_size = 0
        self._tail_limit = tail_bytes
        self._omitted = 0
        self._mutex = threading.Lock()
        self._saved: list[tuple[logging.Handler, int]] = []
        self._saved_root_level = logging.WARNING

    def emit(self, record: logging.LogRecord) -> None:
        try:
            line = self.format(record) + "\n"
        except Exception:  # a broken log call must not break the install
            self.handleError(record)
            return
        with self._mutex:
            if self._head_left > 0 and not self._tail:
                self._head.append(line)
                self._head_left -= len(line)
                return
            self._tail.append(line)
            self._tail_size += len(line)
            while self._tail_size > self._tail_limit and len(self._tail) > 1:
                dropped = self._tail.popleft()
                self._tail_size -= len(dropped)
                self._omitted += len(dropped)

    def text(self) -> str:
        with self._mutex:
            middle = f"[... {self._omitted} bytes of log omitted ...]\n" if self._omitted else ""
            return "".join(self._head) + middle + "".join(self._tail)

    def __enter__(self) -> AgentLog:
        root = logging.getLogger()
        self._saved_root_level = root.level
        for handler in root.handlers:
            self._saved.append((handler, handler.level))
            if handler.level == logging.NOTSET:
                handler.setLevel(root.level)
        root.addHandler(self)
        root.setLevel(logging.DEBUG)
        return self

    def __exit__(self, *exc_info) -> None:
        root = logging.getLogger()
        root.removeHandler(self)
        root.setLevel(self._saved_root_level)
        for handler, level in self._saved:
            handler.setLevel(level)
        self._saved.clear()
