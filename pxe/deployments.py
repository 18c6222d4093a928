"""Deployment records: creation (idempotent), queries, and state transitions.

Every transition is a conditional UPDATE (`WHERE state IN (allowed sources)`), so concurrent
workers can never move a deployment along an illegal edge; the loser of a race sees rowcount 0.
"""
from __future__ import annotations

import hashlib
import hmac
import json
import time
import uuid

from sqlalchemy import and_, func, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from metalstream.contracts import rules
from metalstream.errors import BadInput

from . import db, machines, metrics, states, tokens, webhooks
from .errors import Conflict, NotFound
from .plan import secure_boot_requested
from .secretbox import SecretBox


def request_digest(request: dict) -> str:
    return hashlib.sha256(json.dumps(request, sort_keys=True).encode()).hexdigest()


def scoped_idempotency_key(token_id: str, key: str) -> str:
    """What is stored for a client's Idempotency-Key: the same key sent with another token is another key."""
    return hashlib.sha256(f"{token_id}\0{key}".encode()).hexdigest()


def create(engine: Engine, request: dict, storage: dict | None, idempotency_key: str | None, *,
           machine_id: str | None = None, passphrase: str | None = None, box: SecretBox | None = None
           ) -> tuple[dict, bool]:
    """Insert a pending deployment; return (deployment, created). Replays of an idempotency key return the original.

    `machine_id`: the machine it installs (else the machine owning the MAC, if any), which becomes `deploying`
    (Conflict if that machine already has an open deployment). `passphrase` (the LUKS passphrase) is stored sealed
    by `box`; a replay must carry the same one."""
    digest = request_digest(request)
    sealed = None if passphrase is None else box.seal(passphrase)
    if idempotency_key is not None:
        replay = _by_idempotency_key(engine, idempotency_key, digest, passphrase, box)
        if replay is not None:
            return replay, False
    now = time.time()
    dep_id = str(uuid.uuid4())
    try:
        with engine.begin() as conn:
            if machine_id is None:
                owner = machines.find_by_mac(conn, request["mac"])
                machine_id = owner["id"] if owner is not None else None
            conn.execute(db.deployments.insert().values(
                id=dep_id, mac=request["mac"], open_mac=request["mac"], idempotency_key=idempotency_key,
                request_sha256=digest, image_name=request["image"], request=request, storage=storage,
                state=states.PENDING, created_at=now, updated_at=now, machine_id=machine_id,
                encryption_passphrase_sealed=sealed))
            _event(conn, dep_id, states.PENDING, None, "deployment created")
            webhooks.deployment_changed(conn, dep_id, "deployment created")
            machines.on_deployment_transition(conn, {"id": dep_id, "machine_id": machine_id}, states.PENDING)
    except IntegrityError:
        if idempotency_key is not None:
            replay = _by_idempotency_key(engine, idempotency_key, digest, passphrase, box)
            if replay is not None:
                return replay, False
        other = open_for_mac(engine, request["mac"])
        raise Conflict(f"MAC {request['mac']} already has an open deployment"
                       + (f" ({other['id']}, {other['state']}); cancel it first" if other else ""),
                       details={"field": "mac", "deployment": other["id"] if other else None}) from None
    return get(engine, dep_id), True


def _by_idempotency_key(engine: Engine, key: str, digest: str, passphrase: str | None,
                       box: SecretBox | None) -> dict | None:
    """The deployment made with `key`, if the request (and the passphrase, which the digest leaves out) is the same."""
    with engine.connect() as conn:
        row = conn.execute(select(db.deployments.c.id, db.deployments.c.request_sha256,
                                  db.deployments.c.encryption_passphrase_sealed)
                           .where(db.deployments.c.idempotency_key == key)).first()
    if row is None:
        return None
    stored = row.encryption_passphrase_sealed
    same_passphrase = (stored is None) == (passphrase is None) and (
        stored is None or hmac.compare_digest(box.unseal(stored).encode(), passphrase.encode()))
    if row.request_sha256 != digest or not same_passphrase:
        raise Conflict("Idempotency-Key was already used for a different request", details={"field": "Idempotency-Key"})
    return get(engine, row.id)


def passphrase_of(box: SecretBox, row) -> str | None:
    """The deployment's LUKS passphrase, unsealed: for its agent's plan only."""
    sealed = row["encryption_passphrase_sealed"]
    return None if sealed is None else box.unseal(sealed)


def _event(conn: Connection, dep_id: str, state: str, phase: str | None, message: str | None,
           bytes_done: int | None = None, bytes_total: int | None = None, when: float | None = None,
           seq: int | None = None) -> None:
    conn.execute(db.events.insert().values(deployment_id=dep_id, time=time.time() if when is None else when,
                                           state=state, phase=phase, message=message, bytes_done=bytes_done,
                                           bytes_total=bytes_total, seq=seq))
    if not states.TRANSITIONS.get(state, ()):  # a final state: every path that ends a deployment records it here
        metrics.deployment_ended(state)


SECRET_REQUEST_FIELDS = ("root_password_hash", "kickstart")  # a kickstart may hold passwords and passphrases


def redacted_request(request: dict) -> dict:
    """The request as API readers see it: secrets replaced by their digest, so a client can tell
    which one it sent without anyone reading it back."""
    return {field: ({"redacted": True, "sha256": hashlib.sha256(value.encode()).hexdigest()}
                    if field in SECRET_REQUEST_FIELDS and isinstance(value, str) else value)
            for field, value in request.items()}


def _public(row, event_rows, now: float) -> dict:
    request = redacted_request(row["request"])
    return {
        "id": row["id"], "mac": row["mac"], "image": row["image_name"], "hostname": request.get("hostname"),
        "state": row["state"], "phase": row["phase"], "message": row["message"], "error": row["error"],
        "bytes_done": row["bytes_done"], "bytes_total": row["bytes_total"],
        "eta_seconds": (states.eta_seconds(row["bytes_done"], row["bytes_total"], row["stream_started_at"], now)
                        if row["state"] == states.INSTALLING else None),
        "created_at": row["created_at"], "updated_at": row["updated_at"], "last_seen_at": row["last_seen_at"],
        "root_uuid": row["root_uuid"], "check_message": row["check_message"], "request": request,
        "boot_path": row["boot_path"], "first_stage": row["first_stage"],
        "secure_boot": {"requested": secure_boot_requested(row["request"], row["storage"]),
                        "installer": row["installer_secure_boot"], "target": row["target_secure_boot"]},
        "events": [dict(e) for e in event_rows] if event_rows is not None else None,
        "machine": row["machine_id"],
        "encryption_passphrase_set": row["encryption_passphrase_sealed"] is not None,
    }


def get(engine: Engine, dep_id: str, *, with_log: bool = False) -> dict:
    if not db.matchable(dep_id):
        raise NotFound(f"no deployment {dep_id!r}", details={"field": "id"})
    with engine.connect() as conn:
        row = conn.execute(select(db.deployments).where(db.deployments.c.id == dep_id)).mappings().first()
        if row is None:
            raise NotFound(f"no deployment {dep_id!r}", details={"field": "id"})
        event_rows = conn.execute(
            select(db.events.c.time, db.events.c.state, db.events.c.phase, db.events.c.message,
                   db.events.c.bytes_done, db.events.c.bytes_total)
            .where(db.events.c.deployment_id == dep_id).order_by(db.events.c.id)).mappings().all()
    out = _public(row, event_rows, time.time())
    if with_log:
        out["log"] = row["log"]
    return out


def get_row(engine: Engine, dep_id: str):
    if not db.matchable(dep_id):
        return None
    with engine.connect() as conn:
        return conn.execute(select(db.deployments).where(db.deployments.c.id == dep_id)).mappings().first()


def list_all(engine: Engine, state: str | None = None, mac: str | None = None) -> list[dict]:
    query = select(db.deployments).order_by(db.deployments.c.created_at.desc())
    if state:
        query = query.where(db.deployments.c.state == state)
    if mac:
        query = query.where(db.deployments.c.mac == mac)
    with engine.connect() as conn:
        rows = conn.execute(query).mappings().all()
    now = time.time()
    return [_public(r, None, now) for r in rows]


def counts_by_state(engine: Engine) -> dict[str, int]:
    with engine.connect() as conn:
        rows = conn.execute(select(db.deployments.c.state, func.count()).group_by(db.deployments.c.state)).all()
    counts = dict.fromkeys(states.STATES, 0)
    counts.update({state: n for state, n in rows})
    return counts


def open_for_mac(engine: Engine, mac: str):
    with engine.connect() as conn:
        return conn.execute(select(db.deployments).where(db.deployments.c.open_mac == mac)).mappings().first()


def installed_root_uuid(engine: Engine, mac: str) -> str | None:
    """The root filesystem UUID the agent reported for the MAC's most recent successful install, or None."""
    with engine.connect() as conn:
        return conn.execute(select(db.deployments.c.root_uuid).where(and_(
            db.deployments.c.mac == mac, db.deployments.c.installed_at.is_not(None),
            db.deployments.c.root_uuid.is_not(None))).order_by(db.deployments.c.installed_at.desc()).limit(1)).scalar()


def transition(conn: Connection, dep_id: str, new: str, note: str | None = None, *,
               sources: tuple[str, ...] | None = None, **values) -> bool:
    """Move to `new` if the current state allows it; True if this call made the change."""
    now = time.time()
    values.setdefault("updated_at", now)
    if new not in states.OPEN_STATES:
        values.update(open_mac=None, token_hash=None)
    result = conn.execute(update(db.deployments).where(and_(
        db.deployments.c.id == dep_id, db.deployments.c.state.in_(sources or states.sources_for(new))))
        .values(state=new, **values))
    if result.rowcount == 1:
        _event(conn, dep_id, new, values.get("phase"), note, when=now)
        webhooks.deployment_changed(conn, dep_id, note)
        machines.on_deployment_transition(conn, dep_id, new)
        return True
    return False


def cancel(engine: Engine, dep_id: str, *, through: str = "the API") -> dict:
    """Cancel an open deployment; its event says where the cancel came from (`through`)."""
    if not db.matchable(dep_id):
        get(engine, dep_id)  # raises NotFound
    with engine.begin() as conn:
        changed = transition(conn, dep_id, states.CANCELLED, f"cancelled through {through}")
    if not changed:
        current = get(engine, dep_id)  # raises NotFound
        raise Conflict(f"deployment {dep_id} is {current['state']}; only pending, booting or installing "
                       "deployments can be cancelled", details={"state": current["state"]})
    return get(engine, dep_id)


def mint_boot_token(engine: Engine, dep_id: str, *, boot_path: str, path_label: str) -> str | None:
    """Issue a fresh agent token as the installer boot script is served (pending/booting → booting),
    recording the boot path it was served on (`boot_path`, described by `path_label` in the event)."""
    secret = tokens.new_secret()
    values = {"token_hash": tokens.digest(secret), "last_seen_at": time.time(), "boot_path": boot_path}
    with engine.begin() as conn:
        ok = (transition(conn, dep_id, states.BOOTING, f"installer boot script served (boot: {path_label})",
                         sources=(states.PENDING,), **values)
              or transition(conn, dep_id, states.BOOTING, f"installer boot script served again (boot: "
                            f"{path_label}): agent token reissued, the previous one is void",
                            sources=(states.BOOTING,), **values))
    return f"{dep_id}.{secret}" if ok else None


def authenticate_agent(engine: Engine, token: str | None):
    """The deployment row a valid agent token belongs to, or None (wrong, foreign, or expired token)."""
    parts = tokens.split_agent_token(token or "")
    if parts is None:
        return None
    row = get_row(engine, parts[0]) if len(parts[0]) == 36 else None
    if row is None or row["state"] not in states.AGENT_STATES or not tokens.matches(parts[1], row["token_hash"]):
        return None
    return row


def agent_seen(engine: Engine, row, address: str | None) -> None:
    """First agent call moves booting → installing; every call refreshes the silence timer."""
    now = time.time()
    with engine.begin() as conn:
        if row["state"] == states.BOOTING:
            transition(conn, row["id"], states.INSTALLING, "agent started", sources=(states.BOOTING,),
                       last_seen_at=now, agent_address=address)
        conn.execute(update(db.deployments).where(and_(db.deployments.c.id == row["id"],
                                                       db.deployments.c.state.in_(states.AGENT_STATES)))
                     .values(last_seen_at=now))


def check_event_follows(row, event: dict) -> None:
    """An event may not move the deployment back: phases follow the agent's order, and within one
    phase the byte count only grows and stays within the total already reported."""
    stored_phase = row["phase"]
    if stored_phase in rules.PHASES and rules.PHASES.index(event["phase"]) < rules.PHASES.index(stored_phase):
        raise BadInput(f"goes back from phase {stored_phase!r} (phases run {', '.join(rules.PHASES)})",
                       location="phase")
    if event["phase"] != stored_phase or event["bytes_done"] is None:
        return
    if row["bytes_done"] is not None and event["bytes_done"] < row["bytes_done"]:
        raise BadInput(f"goes back from {row['bytes_done']} bytes already reported", location="bytes_done")
    total = event["bytes_total"] if event["bytes_total"] is not None else row["bytes_total"]
    if total is not None and event["bytes_done"] > total:
        raise BadInput(f"exceeds bytes_total {total}", location="bytes_done")


def _already_stored(engine: Engine, dep_id: str, seq: int | None) -> bool:
    if seq is None:
        return False
    with engine.connect() as conn:
        return conn.execute(select(db.events.c.id).where(and_(db.events.c.deployment_id == dep_id,
                                                              db.events.c.seq == seq))).first() is not None


def record_event(engine: Engine, row, event: dict) -> bool:
    """Store an agent event; False if it is one already stored (the agent posted it again: the unique
    (deployment, seq) index refuses it, and the transaction with it)."""
    try:
        check_event_follows(row, event)
    except BadInput:
        if _already_stored(engine, row["id"], event["seq"]):  # an old event again: later ones moved on
            return False
        raise
    try:
        _store_event(engine, row, event)
    except IntegrityError:
        if _already_stored(engine, row["id"], event["seq"]):
            return False
        raise
    return True


def _store_event(engine: Engine, row, event: dict) -> None:
    now = time.time()
    values = {"phase": event["phase"], "message": event["message"], "last_seen_at": now, "updated_at": now}
    if event["bytes_done"] is not None:
        values["bytes_done"] = event["bytes_done"]
    if event["bytes_total"] is not None:
        values["bytes_total"] = event["bytes_total"]
    if event.get("secure_boot") is not None:  # the agent's first event says how the installer booted
        values["installer_secure_boot"] = event["secure_boot"]
    with engine.begin() as conn:
        if event["phase"] == "stream" and row["stream_started_at"] is None:
            values["stream_started_at"] = now
        changed = conn.execute(update(db.deployments).where(and_(
            db.deployments.c.id == row["id"], db.deployments.c.state == states.INSTALLING)).values(**values)).rowcount
        if not changed:
            raise Conflict("deployment is no longer installing", details={"state": row["state"]})
        ended = _phase_started(conn, row["id"], row["phase"]) if event["phase"] != row["phase"] else None
        _event(conn, row["id"], states.INSTALLING, event["phase"], event["message"], event["bytes_done"],
               event["bytes_total"], when=event["time"], seq=event["seq"])
    if ended is not None:
        metrics.phase_ended(row["phase"], (event["time"] or now) - ended)


def _phase_started(conn: Connection, dep_id: str, phase: str | None) -> float | None:
    """When the agent's first event of `phase` was (its clock), or None."""
    if phase not in rules.PHASES:
        return None
    return conn.execute(select(func.min(db.events.c.time)).where(and_(
        db.events.c.deployment_id == dep_id, db.events.c.state == states.INSTALLING,
        db.events.c.phase == phase))).scalar()


def record_result(engine: Engine, row, result: dict, check_after: float) -> str:
    result = {**result, "log": db.storable_text(result["log"]), "error": db.storable_text(result["error"])}
    now = time.time()
    common = {"phase": result["phase"], "log": result["log"], "root_uuid": result["root_uuid"], "last_seen_at": now,
              "token_hash": None}
    if result.get("secure_boot") is not None:  # an older agent does not say: what an event said stays
        common["installer_secure_boot"] = result["secure_boot"]
    with engine.begin() as conn:
        phase_started = _phase_started(conn, row["id"], row["phase"])
        if result["success"]:
            ok = transition(conn, row["id"], states.INSTALLED, "agent reported success", sources=(states.INSTALLING,),
                            installed_at=now, check_after=check_after, message="installed; waiting for first boot",
                            **common)
            new = states.INSTALLED
        else:
            ok = transition(conn, row["id"], states.FAILED, f"agent failed in {result['phase']}: {result['error']}",
                            sources=(states.INSTALLING,), error=result["error"], **common)
            new = states.FAILED
    if not ok:
        raise Conflict("deployment is no longer installing", details={"state": row["state"]})
    if phase_started is not None:  # the phase the agent was in ends with its result
        metrics.phase_ended(row["phase"], (result["time"] or now) - phase_started)
    return new


def reap_silent(engine: Engine, timeout: float, now: float | None = None) -> list[str]:
    """Fail booting/installing deployments whose agent has been silent for longer than `timeout`."""
    now = now if now is not None else time.time()
    with engine.connect() as conn:
        silent = conn.execute(select(db.deployments.c.id).where(and_(
            db.deployments.c.state.in_(states.WATCHED_STATES),
            db.deployments.c.last_seen_at < now - timeout))).scalars().all()
    failed = []
    for dep_id in silent:
        with engine.begin() as conn:
            message = f"agent silent for more than {timeout:g} s"
            if _reap_one(conn, dep_id, now - timeout, message):
                failed.append(dep_id)
    return failed


def _reap_one(conn: Connection, dep_id: str, cutoff: float, message: str) -> bool:
    result = conn.execute(update(db.deployments).where(and_(
        db.deployments.c.id == dep_id, db.deployments.c.state.in_(states.WATCHED_STATES),
        db.deployments.c.last_seen_at < cutoff)).values(state=states.FAILED, error=message, open_mac=None,
                                                         token_hash=None, updated_at=time.time()))
    if result.rowcount == 1:
        _event(conn, dep_id, states.FAILED, None, message)
        webhooks.deployment_changed(conn, dep_id, message)
        machines.on_deployment_transition(conn, dep_id, states.FAILED)
        return True
    return False


def claim_activation_checks(engine: Engine, retry: float, now: float | None = None) -> list:
    """Installed deployments due for an SSH check, each claimed by this process until now + retry."""
    now = now if now is not None else time.time()
    with engine.connect() as conn:
        due = conn.execute(select(db.deployments.c.id).where(and_(
            db.deployments.c.state == states.INSTALLED, db.deployments.c.check_after <= now))).scalars().all()
    claimed = []
    for dep_id in due:
        with engine.begin() as conn:
            got = conn.execute(update(db.deployments).where(and_(
                db.deployments.c.id == dep_id, db.deployments.c.state == states.INSTALLED,
                db.deployments.c.check_after <= now)).values(check_after=now + retry)).rowcount
        if got == 1:
            claimed.append(get_row(engine, dep_id))
    return claimed


def finish_activation(engine: Engine, dep_id: str, ok: bool, message: str,
                      target_secure_boot: bool | None = None) -> bool:
    """installed → active (ok) or failed, with what the check read on the installed system: its Secure Boot
    state (None: BIOS, or it could not tell) is stored by the same transition, so only while still installed."""
    message = db.storable_text(message)  # built from what the installed machine answered
    with engine.begin() as conn:
        if ok:
            return transition(conn, dep_id, states.ACTIVE, message, sources=(states.INSTALLED,),
                              check_message=message, message=message, target_secure_boot=target_secure_boot)
        return transition(conn, dep_id, states.FAILED, f"activation check failed: {message}",
                          sources=(states.INSTALLED,), error=f"activation check failed: {message}",
                          check_message=message, target_secure_boot=target_secure_boot)


def note_activation_attempt(engine: Engine, dep_id: str, message: str) -> None:
    message = db.storable_text(message)
    with engine.begin() as conn:
        conn.execute(update(db.deployments).where(db.deployments.c.id == dep_id).values(check_message=message))
