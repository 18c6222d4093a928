"""The agent's one way of calling the service until it answers: connection errors, 5xx and 429 are retried with
backoff (1 s doubling up to 15 s) until a time budget is spent; any other answer is returned to the caller,
and a certificate that does not verify is final at once."""
from __future__ import annotations

import logging
import time
from typing import Callable

import requests

from metalstream.errors import OperationFailed

from .tls import Verify, refusal, untrusted_certificate

log = logging.getLogger("metalstream.agent")

MAX_DELAY = 15.0


def answer_with_backoff(send: Callable[[], requests.Response], url: str, doing: str, *, wait: float,
                        verify: Verify, sleep: Callable[[float], None] = time.sleep) -> requests.Response:
    """Call `send` until the service gives an answer that is neither a 5xx nor a 429. `doing` says what is
    tried, e.g. "fetch the plan from": it appears in the warning of each retry and the final error."""
    started, delay, attempt = time.monotonic(), 1.0, 0
    while True:
        attempt += 1
        try:
            response = send()
        except requests.RequestException as exc:
            if (cause := untrusted_certificate(exc)) is not None:
                raise refusal(url, cause, verify) from None
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code < 500 and response.status_code != 429:
                return response
            problem = f"HTTP {response.status_code}"
        elapsed = time.monotonic() - started
        if elapsed + delay > wait:
            raise OperationFailed(f"could not {doing} {url} in {elapsed:.0f} s ({attempt} attempts): {problem}")
        log.warning("could not %s %s (%s); retrying in %.0f s", doing, url, problem, delay)
        sleep(delay)
        delay = min(delay * 2, MAX_DELAY)
