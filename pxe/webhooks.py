"""Webhook subscriptions and the outbox (docs/webhooks.md).

A subscription is a URL, the event types it wants (or "*") and a secret the deliveries are signed with.
The secret is sealed (pxe.secretbox) before it is stored, shown once when the subscription is made (when
the service generated it) and never again.

`enqueue` is called by the code that changes a deployment or a machine, on its connection and inside its
transaction: the event and one pending delivery per matching enabled subscription commit (or roll back)
together with the change, so no state change is lost and none is announced that did not happen. Delivery
is pxe.webhook_delivery's work, in a thread of its own.
"""
from __future__ import annotations

import ipaddress
import re
import secrets
import time
import uuid
from typing import Any

from sqlalchemy import delete, select, update
from sqlalchemy.engine import Connection, Engine

from metalstream.contracts import rules
from metalstream.errors import BadInput

from . import db, machine_states, states
from .errors import NotFound

MACHINE_STATES = machine_states.STATES
POWER_STATES = ("on", "off")  # machine.power.<state>: a machine's power_state ("unknown" is not announced)
EVENT_TYPES: tuple[str, ...] = (
    *(f"deployment.{state}" for state in states.STATES),
    "machine.created", "machine.updated", "machine.deleted",
    *(f"machine.state.{state}" for state in MACHINE_STATES),
    *(f"machine.power.{state}" for state in POWER_STATES),
)
ALL = "*"

MAX_URL = 2048
SECRET_MIN, SECRET_MAX = 16, 256
_SECRET = re.compile(r"[\x21-\x7e]+\Z")  # printable ASCII, no space
# http(s)://host[:port][/path][?query]: a DNS name, IPv4 or [IPv6] host; no userinfo, no fragment; path and
# query from RFC 3986's characters without quotes or shell metacharacters ($ ( ) ! * ; ' `), '%' only as an escape.
_URL = re.compile(
    r"(?P<scheme>https?)://"
    r"(?P<host>[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?(?:\.[A-Za-z0-9](?:[A-Za-z0-9-]{0,61}[A-Za-z0-9])?)*\.?"
    r"|\[[0-9A-Fa-f:.]{2,45}\])"
    r"(?::(?P<port>[0-9]{1,5}))?"
    r"(?P<rest>(?:[/?](?:[A-Za-z0-9\-._~&+,=:@/?]|%[0-9A-Fa-f]{2})*)?)\Z")


def check_url(value: Any, location: str = "url") -> str:
    if not isinstance(value, str):
        raise BadInput(f"expected a string, got {type(value).__name__ if value is not None else 'null'}",
                       location=location)
    if len(value) > MAX_URL:
        raise BadInput(f"longer than {MAX_URL} characters", location=location)
    if not value.isascii() or any(c.isspace() or not c.isprintable() for c in value):
        raise BadInput("contains whitespace, a control character or a non-ASCII character (percent-encode it)",
                       location=location)
    scheme = value.partition(":")[0].lower()
    if scheme not in ("http", "https"):
        raise BadInput("must be an http:// or https:// URL", location=location)
    authority = value.partition("://")[2].split("/", 1)[0].split("?", 1)[0]
    if "@" in authority:
        raise BadInput("must not carry a user name or password (put credentials in the secret, not the URL)",
                       location=location)
    if "#" in value:
        raise BadInput("must not have a fragment (#...)", location=location)
    match = _URL.match(value)
    if match is None:
        raise BadInput("must be http(s)://HOST[:PORT][/PATH][?QUERY] with a DNS name, IPv4 or [IPv6] host and "
                       "only letters, digits and - . _ ~ & + , = : @ / ? (others percent-encoded as %XX)", location=location)
    host = match["host"]
    if host.startswith("["):
        try:
            ipaddress.IPv6Address(host[1:-1])
        except ValueError:
            raise BadInput(f"{host} is not an IPv6 address", location=location) from None
    elif len(host.rstrip(".")) > 253:
        raise BadInput("its host name is longer than 253 characters", location=location)
    if match["port"] is not None and not 0 < int(match["port"]) < 65536:
        raise BadInput("port must be between 1 and 65535", location=location)
    return value


def check_event_types(value: Any, location: str = "event_types") -> list[str]:
    items = rules.expect_list(value, location, max_items=len(EVENT_TYPES) + 1)
    if not items:
        raise BadInput(f'must name at least one event type (or "{ALL}" for all)', location=location)
    out: list[str] = []
    for i, item in enumerate(items):
        if item != ALL and (not isinstance(item, str) or item not in EVENT_TYPES):
            raise BadInput(f'unknown event type {_show(item)} (known: "{ALL}", {", ".join(EVENT_TYPES)})',
                           location=f"{location}[{i}]")
        if item not in out:
            out.append(item)
    return [ALL] if ALL in out else out


def _show(value: Any) -> str:
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."


def check_secret(value: Any, location: str = "secret") -> str:
    if not isinstance(value, str) or not SECRET_MIN <= len(value) <= SECRET_MAX or not _SECRET.match(value):
        raise BadInput(f"must be {SECRET_MIN}-{SECRET_MAX} printable ASCII characters without spaces",
                       location=location)
    return value


def new_secret() -> str:
    return "whsec_" + secrets.token_urlsafe(32)


def _public(row) -> dict:
    return {"id": row["id"], "url": row["url"], "event_types": list(row["event_types"]), "enabled": row["enabled"],
            "created_at": row["created_at"]}


def create(engine: Engine, box, data: dict) -> dict:
    """Store a validated subscription; the answer carries the secret (this one time only)."""
    secret = data.get("secret") or new_secret()
    row = {"id": str(uuid.uuid4()), "url": data["url"], "event_types": data["event_types"],
           "secret_sealed": box.seal(secret), "enabled": data["enabled"], "created_at": time.time()}
    with engine.begin() as conn:
        conn.execute(db.webhooks.insert().values(**row))
    return {**_public(row), "secret": secret}


def _row(conn: Connection, webhook_id: str):
    row = None
    if db.matchable(webhook_id):
        row = conn.execute(select(db.webhooks).where(db.webhooks.c.id == webhook_id)).mappings().first()
    if row is None:
        raise NotFound(f"no webhook {webhook_id!r}", details={"field": "id"})
    return row


def get(engine: Engine, webhook_id: str) -> dict:
    with engine.connect() as conn:
        return _public(_row(conn, webhook_id))


def list_all(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(db.webhooks).order_by(db.webhooks.c.created_at)).mappings().all()
    return [_public(row) for row in rows]


def change(engine: Engine, box, webhook_id: str, data: dict) -> dict:
    """Apply a validated PATCH; a new secret is stored sealed and not echoed."""
    values = {key: data[key] for key in ("url", "event_types", "enabled") if key in data}
    if "secret" in data:
        values["secret_sealed"] = box.seal(data["secret"])
    with engine.begin() as conn:
        _row(conn, webhook_id)
        if values:
            conn.execute(update(db.webhooks).where(db.webhooks.c.id == webhook_id).values(**values))
        return _public(_row(conn, webhook_id))


def remove(engine: Engine, webhook_id: str) -> None:
    """Delete a subscription and its deliveries (pending ones are never sent)."""
    with engine.begin() as conn:
        _row(conn, webhook_id)
        conn.execute(delete(db.webhook_deliveries).where(db.webhook_deliveries.c.webhook_id == webhook_id))
        conn.execute(delete(db.webhooks).where(db.webhooks.c.id == webhook_id))


DELIVERY_STATES = ("pending", "delivered", "failed")


def deliveries(engine: Engine, webhook_id: str, *, state: str | None = None, limit: int = 100) -> list[dict]:
    """A subscription's deliveries, newest first: what was sent, how often, and the last answer."""
    d, e = db.webhook_deliveries, db.webhook_events
    query = (select(d.c.id, d.c.event_id, e.c.type, d.c.state, d.c.attempts, d.c.last_status, d.c.last_error,
                    d.c.next_attempt_at, d.c.created_at, d.c.delivered_at)
             .select_from(d.join(e, e.c.id == d.c.event_id)).where(d.c.webhook_id == webhook_id)
             .order_by(e.c.seq.desc()).limit(limit))
    if state is not None:
        query = query.where(d.c.state == state)
    with engine.connect() as conn:
        _row(conn, webhook_id)
        rows = conn.execute(query).mappings().all()
    return [{"id": r["id"], "event_id": r["event_id"], "event_type": r["type"], "state": r["state"],
             "attempts": r["attempts"], "last_status": r["last_status"], "last_error": r["last_error"],
             "next_attempt_at": r["next_attempt_at"] if r["state"] == "pending" else None,
             "created_at": r["created_at"], "delivered_at": r["delivered_at"]} for r in rows]


# --- the outbox ----------------------------------------------------------------------------------------

def enqueue(conn: Connection, event_type: str, payload: dict, *, when: float | None = None) -> str | None:
    """Record an event for every enabled subscription that wants `event_type`, in the caller's transaction.
    Returns the event id, or None when no subscription wants it (then nothing is written)."""
    if event_type not in EVENT_TYPES:
        raise ValueError(f"unknown webhook event type {event_type!r}")
    subscribed = conn.execute(select(db.webhooks.c.id, db.webhooks.c.event_types)
                              .where(db.webhooks.c.enabled == True)).all()  # noqa: E712
    targets = [row.id for row in subscribed if ALL in row.event_types or event_type in row.event_types]
    if not targets:
        return None
    now = time.time() if when is None else when
    event_id = str(uuid.uuid4())
    conn.execute(db.webhook_events.insert().values(id=event_id, type=event_type, time=now, payload=payload))
    conn.execute(db.webhook_deliveries.insert(), [
        {"webhook_id": target, "event_id": event_id, "state": "pending", "attempts": 0, "next_attempt_at": now,
         "claimed_until": None, "created_at": now} for target in targets])
    return event_id


def deployment_changed(conn: Connection, dep_id: str, note: str | None = None) -> str | None:
    """`deployment.<state>` for the deployment as it is now in this transaction (called right after its state
    changed); `note` is the change's message (the deployment's event), else the deployment's message."""
    row = conn.execute(select(db.deployments).where(db.deployments.c.id == dep_id)).mappings().first()
    if row is None:
        return None
    now = time.time()
    payload = {"deployment_id": row["id"], "machine_id": row["machine_id"], "mac": row["mac"],
               "state": row["state"], "phase": row["phase"],
               "message": note if note is not None else row["message"], "error": row["error"],
               "image": row["image_name"], "time": now}
    return enqueue(conn, f"deployment.{row['state']}", payload, when=now)


def _machine_payload(machine, now: float) -> dict:
    """What a machine event carries (from a machines row or the API's form of one): never BMC credentials."""
    payload = {"machine_id": machine["id"], "time": now}
    for key in ("name", "state", "power_state", "macs", "tags"):
        if key in machine:
            value = machine[key]
            payload[key] = list(value) if isinstance(value, (list, tuple)) else value
    for key in ("current_deployment", "last_deployment"):
        if f"{key}_id" in machine:
            payload[f"{key}_id"] = machine[f"{key}_id"]
        elif key in machine:
            payload[f"{key}_id"] = (machine[key] or {}).get("id")
    return payload


def machine_changed(conn: Connection, event_type: str, machine) -> str | None:
    """One machine event (`machine.created|updated|deleted`, `machine.state.<state>`, `machine.power.<on|off>`)
    about `machine` (a machines row or the API's form of one), in the caller's transaction."""
    now = time.time()
    return enqueue(conn, event_type, _machine_payload(machine, now), when=now)


def machine_event_types(before, after) -> list[str]:
    """The event types a machine change means: created (no `before`), deleted (no `after`), else updated plus
    machine.state.<state> and machine.power.<state> when those changed."""
    if before is None:
        return ["machine.created"]
    if after is None:
        return ["machine.deleted"]
    types = ["machine.updated"]
    if after["state"] != before["state"] and after["state"] in MACHINE_STATES:
        types.append(f"machine.state.{after['state']}")
    if after["power_state"] != before["power_state"] and after["power_state"] in POWER_STATES:
        types.append(f"machine.power.{after['power_state']}")
    return types


def machine_events(conn: Connection, before, after) -> list[str | None]:
    """Announce a machine change in the caller's transaction: `before` and `after` are the machine (row or API
    form) before and after it (None: it did not exist / no longer exists). Call it wherever a machine is
    created, changed (PATCH, its state following a deployment, a power state read from its BMC) or deleted."""
    subject = after if after is not None else before
    return [machine_changed(conn, event_type, subject) for event_type in machine_event_types(before, after)]
