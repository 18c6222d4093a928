"""Brute-force guard: a client that keeps presenting wrong tokens is refused for a while.

Counted per client address in the database, so every gunicorn worker (and every replica on one
database) sees the same count: `auth_max_failures` wrong API or agent tokens within `auth_window`
seconds block the address for `auth_block` seconds (ServiceConfig), during which even a valid token
is answered 429 with Retry-After (a guesser cannot tell a hit from a miss). Requests without any
token are not failures. Behind a reverse proxy every client has the proxy's address: turn the
guard off there (`serve --auth-max-failures 0`) and limit at the proxy.
"""
from __future__ import annotations

import math
import time

from sqlalchemy import and_, select, update
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from . import db, metrics
from .config import ServiceConfig
from .errors import TooManyRequests

def check_not_blocked(engine: Engine, client: str | None, now: float | None = None) -> None:
    """TooManyRequests if `client` is blocked at `now`."""
    if client is None:
        return
    now = time.time() if now is None else now
    with engine.connect() as conn:
        blocked_until = conn.execute(select(db.auth_failures.c.blocked_until)
                                     .where(db.auth_failures.c.client == client)).scalar()
    if blocked_until is not None and blocked_until > now:
        metrics.auth_refused_while_blocked()
        raise TooManyRequests("too many failed authentications from this address; try again later",
                              retry_after=math.ceil(blocked_until - now))


def record_failure(engine: Engine, config: ServiceConfig, client: str | None, kind: str,
                   now: float | None = None) -> None:
    """Count one wrong token from `client`; block it when it reaches the limit within the window."""
    metrics.auth_failed(kind)
    if client is None or config.auth_max_failures <= 0:
        return
    now = time.time() if now is None else now
    table = db.auth_failures
    _ensure_row(engine, client, now)
    with engine.begin() as conn:
        restarted = conn.execute(update(table).where(and_(table.c.client == client,
                                                          table.c.window_start <= now - config.auth_window))
                                 .values(window_start=now, failures=1)).rowcount
        if not restarted:
            conn.execute(update(table).where(table.c.client == client).values(failures=table.c.failures + 1))
        failures = conn.execute(select(table.c.failures).where(table.c.client == client)).scalar()
        if failures >= config.auth_max_failures:
            conn.execute(update(table).where(table.c.client == client)
                         .values(blocked_until=now + config.auth_block, window_start=now, failures=0))
            metrics.auth_blocked()


def _ensure_row(engine: Engine, client: str, now: float) -> None:
    try:
        with engine.begin() as conn:
            if conn.execute(select(db.auth_failures.c.client).where(db.auth_failures.c.client == client)).first():
                return
            conn.execute(db.auth_failures.insert().values(client=client, window_start=now, failures=0))
    except IntegrityError:  # another worker inserted it at the same moment
        pass
