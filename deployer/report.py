"""Where an install reports its progress: the console (`install`) or the service (`agent`).

Both speak the `Reporter` protocol: `event(phase, message, bytes_done, bytes_total)` as often as the
caller likes (reporters throttle byte-progress themselves) and `result(...)` once at the end. The
JSON they send follows docs/contracts.md section 3.
"""
from __future__ import annotations

import logging
import sys
import time
from typing import IO, Callable, Protocol

log = logging.getLogger("metalstream.report")

PHASES = ("start", "disk", "partition", "mkfs", "stream", "verify", "configure", "bootloader", "finish")


class Reporter(Protocol):
    def event(self, phase: str, message: str, bytes_done: int | None = None,
              bytes_total: int | None = None) -> None:
        """One step of the install; byte counts only for phases that move data (stream)."""

    def result(self, *, success: bool, phase: str, error: str | None = None,
               root_uuid: str | None = None, log: str | None = None) -> None:
        """The outcome, once: `phase` is `finish` on success, the failing phase otherwise."""


def format_bytes(n: float) -> str:
    for unit in ("B", "KiB", "MiB", "GiB"):
        if abs(n) < 1024 or unit == "GiB":
            return f"{n:.0f} {unit}" if unit == "B" else f"{n:.1f} {unit}"
        n /= 1024
    raise AssertionError("unreachable")


def format_duration(seconds: float) -> str:
    seconds = int(round(seconds))
    minutes, seconds = divmod(seconds, 60)
    hours, minutes = divmod(minutes, 60)
    return f"{hours}:{minutes:02d}:{seconds:02d}" if hours else f"{minutes}:{seconds:02d}"


class RateMeter:
    """Bytes/s over the whole phase and the ETA that follows from it."""

    def __init__(self, clock: Callable[[], float] = time.monotonic):
        self._clock = clock
        self._start: float | None = None
        self._start_bytes = 0

    def reset(self) -> None:
        self._start = None

    def update(self, bytes_done: int, bytes_total: int | None) -> tuple[float | None, float | None]:
        now = self._clock()
        if self._start is None or bytes_done < self._start_bytes:
            self._start, self._start_bytes = now, bytes_done
            return None, None
        elapsed = now - self._start
        if elapsed <= 0:
            return None, None
        rate = (bytes_done - self._start_bytes) / elapsed
        eta = None
        if bytes_total is not None and rate > 0:
            eta = max(bytes_total - bytes_done, 0) / rate
        return rate, eta


def progress_text(phase: str, message: str, bytes_done: int | None, bytes_total: int | None,
                  rate: float | None, eta: float | None) -> str:
    text = f"[{phase}] {message}"
    if bytes_done is not None:
        text += f": {format_bytes(bytes_done)}"
        if bytes_total:
            text += f" / {format_bytes(bytes_total)} ({100 * bytes_done / bytes_total:.0f}%)"
        if rate is not None:
            text += f", {rate / 2**20:.1f} MiB/s"
        if eta is not None:
            text += f", ETA {format_duration(eta)}"
    return text


class ConsoleReporter:
    """Human progress lines for `metalstream install`: every phase change, byte progress at most every
    `interval` seconds (and always the final 100 % line)."""

    def __init__(self, stream: IO[str] | None = None, *, interval: float = 2.0,
                 clock: Callable[[], float] = time.monotonic):
        self._stream = stream
        self._interval = interval
        self._clock = clock
        self._meter = RateMeter(clock)
        self._last_key: tuple[str, str] | None = None
        self._last_print = 0.0

    def _write(self, line: str) -> None:
        stream = self._stream or sys.stdout
        stream.write(line + "\n")
        stream.flush()

    def event(self, phase: str, message: str, bytes_done: int | None = None,
              bytes_total: int | None = None) -> None:
        key = (phase, message)
        now = self._clock()
        if key != self._last_key:
            self._meter.reset()
        rate, eta = (None, None) if bytes_done is None else self._meter.update(bytes_done, bytes_total)
        finished = bytes_done is not None and bytes_total is not None and bytes_done >= bytes_total
        if key == self._last_key and bytes_done is not None and not finished \
                and now - self._last_print < self._interval:
            return
        self._last_key = key
        self._last_print = now
        log.info("%s: %s", phase, message)
        self._write(progress_text(phase, message, bytes_done, bytes_total, rate, eta))

    def result(self, *, success: bool, phase: str, error: str | None = None,
               root_uuid: str | None = None, log: str | None = None) -> None:
        if success:
            suffix = f" (root UUID {root_uuid})" if root_uuid else ""
            self._write(f"[{phase}] install succeeded{suffix}")
        else:
            self._write(f"[{phase}] install FAILED: {error}")
