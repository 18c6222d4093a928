"""The webhook deliverer: sends the outbox's pending deliveries (pxe.webhooks) to the subscribers' URLs.

It runs in a daemon thread of its own in every service process (`start`), never in a request, so a slow,
hanging or dead receiver costs that thread its timeout and nothing else. Each delivery is claimed by a
conditional UPDATE (`claimed_until`), so several workers or replicas on one database never send one delivery
at the same time. Per subscription, events go out in outbox order: only the oldest pending delivery of a
subscription is ever sent, so a later event waits while an earlier one is being retried (a receiver that
keeps failing holds back its own events, not anyone else's).

A request is `POST <url>` with the JSON body {"id", "type", "time", "data"} and the headers
X-Metalstream-Event-Id, X-Metalstream-Timestamp (Unix seconds of this attempt) and X-Metalstream-Signature:
`sha256=` + hex HMAC-SHA256(secret, "<timestamp>.<body>"). A 2xx answer delivers it; anything else (another
status, a redirect, no connection, no answer within config.webhook_timeout) is retried with exponential backoff
and jitter until config.webhook_retry_for seconds after the event, then the delivery is `failed`.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import logging
import random
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import requests
from sqlalchemy import and_, delete, func, or_, select, update
from sqlalchemy.engine import Engine

from metalstream.errors import OperationFailed

from . import db, metrics
from .service import Service

log = logging.getLogger("metalstream.pxe.webhooks")

MAX_BACKOFF = 900.0  # seconds: retries are at least this frequent however long a receiver is down
POLL_INTERVAL = 1.0  # seconds between looks at the outbox when there was nothing to send
BATCH = 32  # subscriptions served per pass
PARALLEL = 4  # deliveries at once per process (to different subscriptions)
RETENTION = 7 * 86400.0  # delivered and failed deliveries (and their events) are kept this long
USER_AGENT = "metalstream-webhooks/1"


@dataclass(frozen=True)
class Claim:
    id: int
    webhook_id: str
    url: str
    secret_sealed: str
    event_id: str
    event_type: str
    event_time: float
    payload: dict
    attempts: int
    created_at: float


def body_of(claim: Claim) -> bytes:
    return json.dumps({"id": claim.event_id, "type": claim.event_type, "time": claim.event_time,
                       "data": claim.payload}, separators=(",", ":"), sort_keys=True).encode()


def signature(secret: str, timestamp: str, body: bytes) -> str:
    """The X-Metalstream-Signature value: sha256=<hex HMAC-SHA256 of "<timestamp>.<body>">."""
    return "sha256=" + hmac.new(secret.encode(), timestamp.encode() + b"." + body, hashlib.sha256).hexdigest()


def backoff(attempts: int, base: float, rng: random.Random | None = None) -> float:
    """Seconds before the next try after `attempts` failed ones: base·2^(attempts-1), at most MAX_BACKOFF, of
    which a random half ("equal jitter": receivers coming back are not hit by every sender at once)."""
    delay = min(MAX_BACKOFF, base * 2 ** min(attempts - 1, 32))
    return delay / 2 + (rng or random).uniform(0, delay / 2)


def claim_due(engine: Engine, now: float, lease: float, limit: int = BATCH) -> list[Claim]:
    """The oldest pending delivery of each enabled subscription, when due and not claimed by another worker,
    each claimed for `lease` seconds (conditional UPDATE: one claimant wins)."""
    d, e, w = db.webhook_deliveries, db.webhook_events, db.webhooks
    heads = (select(d.c.webhook_id, func.min(e.c.seq).label("seq"))
             .select_from(d.join(e, e.c.id == d.c.event_id)).where(d.c.state == "pending")
             .group_by(d.c.webhook_id).subquery())
    query = (select(d.c.id, d.c.webhook_id, w.c.url, w.c.secret_sealed, d.c.event_id, e.c.type, e.c.time, e.c.payload,
                    d.c.attempts, d.c.created_at)
             .select_from(d.join(e, e.c.id == d.c.event_id)
                          .join(heads, and_(heads.c.webhook_id == d.c.webhook_id, heads.c.seq == e.c.seq))
                          .join(w, w.c.id == d.c.webhook_id))
             .where(and_(d.c.state == "pending", w.c.enabled == True, d.c.next_attempt_at <= now,  # noqa: E712
                         or_(d.c.claimed_until.is_(None), d.c.claimed_until < now)))
             .order_by(d.c.next_attempt_at).limit(limit))
    with engine.connect() as conn:
        rows = conn.execute(query).all()
    claims = []
    for row in rows:
        with engine.begin() as conn:
            won = conn.execute(update(d).where(and_(
                d.c.id == row.id, d.c.state == "pending",
                or_(d.c.claimed_until.is_(None), d.c.claimed_until < now))).values(claimed_until=now + lease)).rowcount
        if won == 1:
            claims.append(Claim(row.id, row.webhook_id, row.url, row.secret_sealed, row.event_id, row.type, row.time,
                                row.payload, row.attempts, row.created_at))
    return claims


def _os_reason(exc: BaseException | None, depth: int = 0) -> str | None:
    """The operating system's words for why a connection failed ("Connection refused"), found in the chain of
    causes requests and urllib3 wrap it in; None when there are none."""
    if exc is None or depth > 8:
        return None
    if isinstance(exc, OSError) and isinstance(exc.strerror, str) and exc.strerror:
        return exc.strerror
    for inner in (getattr(exc, "reason", None), exc.__cause__, exc.__context__,
                  *(arg for arg in getattr(exc, "args", ()) if isinstance(arg, BaseException))):
        if isinstance(inner, BaseException) and inner is not exc:
            found = _os_reason(inner, depth + 1)
            if found:
                return found
    return None


def describe_failure(exc: requests.RequestException, timeout: float) -> str:
    """What went wrong, for last_error and the log: never the URL (its query may hold a receiver's token), a
    secret or an exception's class name."""
    if isinstance(exc, requests.exceptions.Timeout):
        return f"no answer within {timeout:g} s"
    if isinstance(exc, requests.exceptions.SSLError):
        return "TLS handshake failed (certificate not trusted, or not TLS)"
    if isinstance(exc, requests.exceptions.ConnectionError):
        reason = _os_reason(exc)
        return f"could not connect ({reason})" if reason else "could not connect"
    return "the request could not be sent"


def send(claim: Claim, secret: str, timeout: float, now: float) -> tuple[int | None, str | None]:
    """POST one event; (HTTP status or None, error text or None when delivered)."""
    body = body_of(claim)
    timestamp = str(int(now))
    headers = {"Content-Type": "application/json", "User-Agent": USER_AGENT,
               "X-Metalstream-Event-Id": claim.event_id, "X-Metalstream-Event-Type": claim.event_type,
               "X-Metalstream-Timestamp": timestamp, "X-Metalstream-Signature": signature(secret, timestamp, body)}
    try:
        with requests.Session() as session:
            session.trust_env = False  # no proxy or .netrc credentials from the environment
            response = session.post(claim.url, data=body, headers=headers, timeout=(timeout, timeout),
                                    allow_redirects=False, stream=True)
            response.close()  # the answer's body is not read: its status says it all
    except requests.RequestException as exc:
        return None, describe_failure(exc, timeout)
    if 200 <= response.status_code < 300:
        return response.status_code, None
    if 300 <= response.status_code < 400:
        return response.status_code, f"HTTP {response.status_code} (redirects are not followed)"
    return response.status_code, f"HTTP {response.status_code}"


def attempt(service: Service, claim: Claim, now: float | None = None) -> str:
    """Send a claimed delivery and record the outcome: "delivered", "retry" or "failed"."""
    config = service.config
    started = time.time() if now is None else now
    try:
        secret = service.secrets.unseal(claim.secret_sealed)
    except OperationFailed:  # the key changed: no signature can be made; retried until the window ends
        status, error = None, "the subscription's secret cannot be decrypted with this service's key"
    else:
        status, error = send(claim, secret, config.webhook_timeout, started)
    finished = started if now is not None else time.time()
    attempts = claim.attempts + 1
    d = db.webhook_deliveries
    values = {"attempts": attempts, "last_status": status, "last_error": error, "claimed_until": None}
    if error is None:
        outcome = "delivered"
        values.update(state="delivered", delivered_at=finished, next_attempt_at=None)
    else:
        deadline = claim.created_at + config.webhook_retry_for
        if finished >= deadline:
            outcome = "failed"
            values.update(state="failed", next_attempt_at=None)
        else:
            outcome = "retry"
            values["next_attempt_at"] = min(deadline, finished + backoff(attempts, config.webhook_backoff))
    with service.engine.begin() as conn:
        conn.execute(update(d).where(and_(d.c.id == claim.id, d.c.state == "pending")).values(**values))
    metrics.webhook_delivery(outcome)
    if outcome == "retry":
        log.warning("webhook %s: event %s (%s) not delivered, attempt %d: %s; retrying in %.1f s", claim.webhook_id,
                    claim.event_id, claim.event_type, attempts, error, values["next_attempt_at"] - finished)
    elif outcome == "failed":
        log.error("webhook %s: event %s (%s) given up after %d attempts over %g s: %s", claim.webhook_id,
                  claim.event_id, claim.event_type, attempts, config.webhook_retry_for, error)
    return outcome


def lease_for(service: Service) -> float:
    """How long a claim holds: well past one attempt's connect and read timeouts."""
    return 2 * service.config.webhook_timeout + 30.0


def deliver_due(service: Service, now: float | None = None, pool: ThreadPoolExecutor | None = None) -> int:
    """One pass: claim what is due and send it (in `pool` when given, one subscription per task). Returns how
    many deliveries were attempted."""
    claimed_at = time.time() if now is None else now
    claims = claim_due(service.engine, claimed_at, lease_for(service))
    if pool is None:
        for claim in claims:
            attempt(service, claim, now)
    else:
        list(pool.map(lambda claim: attempt(service, claim, now), claims))
    return len(claims)


def prune(engine: Engine, now: float, keep: float = RETENTION) -> int:
    """Forget deliveries that ended more than `keep` seconds ago, and events no delivery refers to any more."""
    d, e = db.webhook_deliveries, db.webhook_events
    with engine.begin() as conn:
        gone = conn.execute(delete(d).where(and_(d.c.state != "pending", d.c.created_at < now - keep))).rowcount
        conn.execute(delete(e).where(and_(e.c.time < now - keep,
                                          ~select(d.c.id).where(d.c.event_id == e.c.id).exists())))
    return gone


class Deliverer:
    """The delivery loop of one process, in a daemon thread (`start`); `stop` ends it after the current pass."""

    def __init__(self, service: Service, interval: float = POLL_INTERVAL, parallel: int = PARALLEL):
        self.service = service
        self.interval = interval
        self.parallel = parallel
        self._stop = threading.Event()
        self.thread = threading.Thread(target=self._run, name="metalstream-webhooks", daemon=True)

    def start(self) -> "Deliverer":
        self.thread.start()
        return self

    def stop(self, timeout: float | None = None) -> None:
        self._stop.set()
        self.thread.join(timeout)

    def _run(self) -> None:
        pruned_at = 0.0
        with ThreadPoolExecutor(self.parallel, thread_name_prefix="metalstream-webhook") as pool:
            while not self._stop.is_set():
                try:
                    busy = deliver_due(self.service, pool=pool)
                    if time.time() - pruned_at > 3600:
                        pruned_at = time.time()
                        prune(self.service.engine, pruned_at)
                except Exception:  # keep delivering; the next pass may succeed (e.g. the database was busy)
                    log.exception("webhook delivery pass failed")
                    busy = 0
                if not busy:
                    self._stop.wait(self.interval)


def start(service: Service, interval: float = POLL_INTERVAL) -> Deliverer:
    return Deliverer(service, interval).start()
