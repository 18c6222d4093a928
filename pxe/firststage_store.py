"""What a deployment stores about its machine before any agent runs: first-stage loader fetches over TFTP, a
boot config asked for while the service has no installer, and the sweep that fails a pending deployment whose
machine fetched a first-stage loader and then went silent (its error from `firststage.silence_message`).

Every change is a conditional UPDATE, as in pxe.deployments: concurrent replicas never fail one deployment twice.
"""
from __future__ import annotations

import time

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection, Engine

from . import db, firststage, machines, states, webhooks
from .deployments import _event


def record_first_stage(engine: Engine, mac: str, fetch: dict) -> str | None:
    """Store a first-stage loader fetch (`firststage.record`) on the MAC's open deployment and say so in an
    event (once for a quick repeat); while pending it also restarts the silence timer (never backwards: the
    recorder may store a fetch seconds after it happened). Returns the deployment's id, or None when the MAC
    has no open deployment."""
    for _ in range(3):  # the state may move between the read and the conditional update: read again
        with engine.begin() as conn:
            row = conn.execute(select(db.deployments.c.id, db.deployments.c.state, db.deployments.c.first_stage,
                                      db.deployments.c.last_seen_at)
                               .where(db.deployments.c.open_mac == mac)).first()
            if row is None:
                return None
            values = {"first_stage": fetch, "updated_at": time.time()}
            if row.state == states.PENDING:
                values["last_seen_at"] = max(row.last_seen_at or fetch["at"], fetch["at"])
            changed = conn.execute(update(db.deployments).where(and_(
                db.deployments.c.id == row.id, db.deployments.c.state == row.state,
                db.deployments.c.open_mac == mac)).values(**values)).rowcount
            if changed:
                if not firststage.is_repeat(row.first_stage, fetch):
                    message = firststage.fetched_event(fetch["loader"], fetch["client"], fetch.get("path_choice"))
                    _event(conn, row.id, row.state, None, message, when=_event_time(conn, row.id, fetch["at"]))
                return row.id
    return None


def _event_time(conn: Connection, dep_id: str, at: float) -> float:
    """`at`, unless the deployment already has a later event (events stay in time order): then now."""
    latest = conn.execute(select(func.max(db.events.c.time)).where(db.events.c.deployment_id == dep_id)).scalar()
    return at if latest is None or at >= latest else time.time()


def record_config_without_installer(engine: Engine, dep_id: str, path_label: str) -> None:
    """The machine of a pending deployment asked for its boot config (over `path_label`) but the service has no
    installer to offer it: an event (not repeated while it is the latest), and a note on `first_stage` so that
    the sweep's error says so instead of "never asked"."""
    now = time.time()
    message = (f"the machine asked for its boot config ({path_label}) but the service has no installer "
               "(metalstream serve --installer)")
    with engine.begin() as conn:
        row = conn.execute(select(db.deployments.c.state, db.deployments.c.first_stage)
                           .where(db.deployments.c.id == dep_id)).first()
        if row is None or row.state not in states.INSTALLER_STATES:
            return
        if isinstance(row.first_stage, dict):
            conn.execute(update(db.deployments).where(and_(
                db.deployments.c.id == dep_id, db.deployments.c.state == row.state))
                .values(first_stage={**row.first_stage, "asked_without_installer": now}))
        latest = conn.execute(select(db.events.c.message).where(db.events.c.deployment_id == dep_id)
                              .order_by(db.events.c.time.desc(), db.events.c.id.desc()).limit(1)).scalar()
        if latest != message:
            _event(conn, dep_id, row.state, None, message, when=now)


def reap_silent_after_first_stage(engine: Engine, timeout: float, now: float | None = None) -> list[str]:
    """Fail pending deployments whose machine fetched a first-stage loader over TFTP and then asked for no boot
    config within `timeout` seconds; the error names the likely cause for that loader. Pending deployments
    without such a fetch are left alone (the machine may not be powered on yet)."""
    now = now if now is not None else time.time()
    cutoff = now - timeout
    silent = and_(db.deployments.c.state == states.PENDING, db.deployments.c.first_stage.is_not(None),
                  db.deployments.c.last_seen_at < cutoff)
    with engine.connect() as conn:
        rows = conn.execute(select(db.deployments.c.id, db.deployments.c.mac, db.deployments.c.first_stage,
                                   db.deployments.c.last_seen_at).where(silent)).all()
    failed = []
    for row in rows:
        message = firststage.silence_message(row.first_stage, now - row.last_seen_at, row.mac)
        with engine.begin() as conn:  # conditional: one replica fails it, and only if nothing was asked since
            result = conn.execute(update(db.deployments).where(and_(db.deployments.c.id == row.id, silent))
                                  .values(state=states.FAILED, error=message, open_mac=None, token_hash=None,
                                          updated_at=time.time()))
            if result.rowcount == 1:
                _event(conn, row.id, states.FAILED, None, message)
                webhooks.deployment_changed(conn, row.id, message)
                machines.on_deployment_transition(conn, row.id, states.FAILED)  # the machine is free again
                failed.append(row.id)
    return failed
