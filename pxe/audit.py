"""The audit log: every mutating API call, who made it (token id, address), on what, and the answer.

Written after the response is decided (refusals included: a 401 or 403 is recorded with no or
with the caller's token id). Agent calls are not here: they are recorded as deployment events.
Never holds a secret: tokens appear by id only, bodies not at all.
"""
from __future__ import annotations

import time

from sqlalchemy import select
from sqlalchemy.engine import Engine

from . import db

MUTATING = ("POST", "PUT", "PATCH", "DELETE")


def is_audited(method: str, path: str) -> bool:
    return method in MUTATING and path.startswith("/api/v1/") and not path.startswith("/api/v1/agent/")


def record(engine: Engine, *, token_id: str | None, client: str | None, action: str, target: str | None,
           status: int, when: float | None = None) -> None:
    client, action, target = (db.storable_text(v) for v in (client, action, target))  # a path may hold %00
    with engine.begin() as conn:
        conn.execute(db.audit_log.insert().values(
            time=time.time() if when is None else when, token_id=token_id, client=(client or "")[:64] or None,
            action=action[:64], target=None if target is None else target[:200], status=status))


def entries(engine: Engine, *, limit: int = 100, since: float | None = None) -> list[dict]:
    """Newest first."""
    query = select(db.audit_log).order_by(db.audit_log.c.id.desc()).limit(limit)
    if since is not None:
        query = query.where(db.audit_log.c.time >= since)
    with engine.connect() as conn:
        return [dict(row) for row in conn.execute(query).mappings()]
