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

from metalstream.contracts.events import event_document, result_document
from metalstream.humanize import format_bytes, format_duration

from .tls import refusal, untrusted_certificate

log = logging.getLogger("metalstream.report")


class Reporter(Protocol):
    def event(self, phase: str, message: str, bytes_done: int | None = None,
              bytes_total: int | None = None) -> None:
        """One step of the install; byte counts only for phases that move data (stream)."""

    def result(self, *, success: bool, phase: str, error: str | None = None,
               root_uuid: str | None = None, log: str | None = None) -> None:
        """The outcome, once: `phase` is `finish` on success, the failing phase otherwise."""


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


class TeeReporter:
    """Sends every event and the result to several reporters (console + service in the agent)."""

    def __init__(self, *reporters: Reporter):
        self.reporters = reporters

    def event(self, phase: str, message: str, bytes_done: int | None = None,
              bytes_total: int | None = None) -> None:
        for reporter in self.reporters:
            reporter.event(phase, message, bytes_done, bytes_total)

    def result(self, *, success: bool, phase: str, error: str | None = None,
               root_uuid: str | None = None, log: str | None = None) -> None:
        for reporter in self.reporters:
            reporter.result(success=success, phase=phase, error=error, root_uuid=root_uuid, log=log)


class HttpReporter:
    """Posts events and the result to the service (docs/contracts.md §3) with the agent's bearer token.

    Phase changes are always sent; byte progress within a phase at most every `interval` seconds.
    A failed event post is logged and never aborts the install (after one, byte progress pauses for
    `quiet_after_failure` seconds so a dead network does not slow the stream). The result is retried
    `result_attempts` times with backoff; `log_source` supplies the agent's log when `log` is None.
    `verify` is requests' certificate check (deployer.tls.trust); a service that fails it is not retried.
    `secure_boot` (whether the installer booted with Secure Boot on; None: BIOS or unknown) goes with the
    first event and the result.
    """

    def __init__(self, events_url: str, result_url: str, token: str, *, interval: float = 3.0,
                 timeout: float = 10.0, result_attempts: int = 5, backoff: float = 1.0,
                 quiet_after_failure: float = 30.0, log_source: Callable[[], str] | None = None,
                 session=None, clock: Callable[[], float] = time.monotonic,
                 sleep: Callable[[float], None] = time.sleep, verify: bool | str = True,
                 secure_boot: bool | None = None):
        import requests  # the deployer's only third-party network library; imported where used

        self.events_url = events_url
        self.result_url = result_url
        self._session = session or requests.Session()
        self._headers = {"Authorization": f"Bearer {token}"}
        self._verify = verify
        self.secure_boot = secure_boot
        self._interval = interval
        self._timeout = timeout
        self._result_attempts = result_attempts
        self._backoff = backoff
        self._quiet_after_failure = quiet_after_failure
        self._log_source = log_source
        self._clock = clock
        self._sleep = sleep
        self._last_key: tuple[str, str] | None = None
        self._next_progress = 0.0
        self.phase: str | None = None
        self.events_sent = 0
        self.events_failed = 0
        self.events_numbered = 0  # the `seq` of the last event posted
        self.result_sent = False  # a result was posted (delivered or not): post it only once

    def _post(self, url: str, body: dict) -> None:
        response = self._session.post(url, json=body, headers=self._headers, timeout=self._timeout,
                                      verify=self._verify)
        status = response.status_code
        if status >= 300:
            error = _Rejected if 400 <= status < 500 and status not in (408, 429) else OSError
            raise error(f"HTTP {status}: {response.text[:200].strip()}")

    def event(self, phase: str, message: str, bytes_done: int | None = None,
              bytes_total: int | None = None) -> None:
        import requests

        self.phase = phase
        key = (phase, message)
        now = self._clock()
        finished = bytes_done is not None and bytes_total is not None and bytes_done >= bytes_total
        if key == self._last_key and not finished and now < self._next_progress:
            return
        self._last_key = key
        self._next_progress = now + self._interval
        self.events_numbered += 1
        body = event_document(phase, message, bytes_done, bytes_total, time.time(), seq=self.events_numbered,
                              secure_boot=self.secure_boot if self.events_numbered == 1 else None)
        try:
            self._post(self.events_url, body)
            self.events_sent += 1
        except (requests.RequestException, OSError) as exc:
            self.events_failed += 1
            self._next_progress = now + self._quiet_after_failure
            log.warning("could not report event %s/%s to %s: %s", phase, message, self.events_url, exc)

    def result(self, *, success: bool, phase: str, error: str | None = None,
               root_uuid: str | None = None, log: str | None = None) -> bool:
        """Post the result; True when the service accepted it."""
        import requests

        self.result_sent = True
        if log is None and self._log_source is not None:
            log = self._log_source()
        body = result_document(success=success, phase=phase, error=error, log=log or "", root_uuid=root_uuid,
                               time=time.time(), secure_boot=self.secure_boot)
        for attempt in range(1, self._result_attempts + 1):
            try:
                self._post(self.result_url, body)
                return True
            except _Rejected as exc:  # the service refuses it (token revoked, deployment cancelled): final
                _log_result_failure(self._result_attempts, self._result_attempts, self.result_url, exc)
                return False
            except (requests.RequestException, OSError) as exc:
                if (cause := untrusted_certificate(exc)) is not None:  # final too: the handshake failed, nothing sent
                    _log_untrusted(refusal(self.result_url, cause, self._verify))
                    return False
                _log_result_failure(attempt, self._result_attempts, self.result_url, exc)
                if attempt < self._result_attempts:
                    self._sleep(self._backoff * 2 ** (attempt - 1))
        return False


class _Rejected(OSError):
    """The service answered 4xx: retrying the same request cannot help."""


def _log_untrusted(refused: Exception) -> None:
    log.error("not posting the result: %s", refused)


def _log_result_failure(attempt: int, attempts: int, url: str, exc: Exception) -> None:
    level = logging.ERROR if attempt == attempts else logging.WARNING
    log.log(level, "posting the result to %s failed (attempt %d/%d): %s", url, attempt, attempts, exc)
