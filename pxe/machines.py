"""Machines: the registry (name, MACs, BMC, tags, hardware facts, power state) and its state, kept in step
with the machine's deployments.

A MAC belongs to at most one machine: `machine_macs.mac` is the primary key, so the database refuses a
second owner even under concurrency; the API answers 409 naming the MAC and its machine, and nothing is
stored. The BMC password is sealed (pxe.secretbox) before it reaches the database and is never part of a
machine's public form; only `bmc_access` unseals it, for the power drivers.

A machine has at most one open deployment: creating one sets `current_deployment_id` with a conditional
UPDATE (`WHERE current_deployment_id IS NULL`) in the deployment's transaction, and deleting a machine is
a conditional DELETE on the same column, so a machine is never deleted under an open deployment.
"""
from __future__ import annotations

import time
import uuid
from typing import Any

from sqlalchemy import and_, delete, select, update
from sqlalchemy.engine import Connection, Engine
from sqlalchemy.exc import IntegrityError

from metalstream.contracts import rules
from metalstream.errors import BadInput

from . import db, machine_states, webhooks
from . import states as deployment_states
from .errors import Conflict, NotFound
from .schemas.base import parse
from .schemas.bmc import merge_bmc
from .schemas.machines import MachineCreate, looks_like_id

MAX_FACTS_JSON = 256 * 1024
FACT_FILTERS = ("min_memory_mib", "min_cpus", "min_disks", "min_disk_bytes", "firmware")


# --- plumbing ----------------------------------------------------------------------------------------

class _Begin:
    """`with _Begin(engine_or_conn) as conn`: a new transaction on an Engine, the caller's on a Connection."""

    def __init__(self, target: Engine | Connection):
        self.target, self.context = target, None

    def __enter__(self) -> Connection:
        if isinstance(self.target, Connection):
            return self.target
        self.context = self.target.begin()
        return self.context.__enter__()

    def __exit__(self, *exc) -> bool | None:
        return self.context.__exit__(*exc) if self.context is not None else None


def _connect(target: Engine | Connection):
    return _Begin(target) if isinstance(target, Connection) else target.connect()


def _macs_of(conn: Connection, machine_id: str) -> list[str]:
    return list(conn.execute(select(db.machine_macs.c.mac).where(db.machine_macs.c.machine_id == machine_id)
                             .order_by(db.machine_macs.c.mac)).scalars())


def _owners(conn: Connection, macs: list[str], other_than: str | None = None) -> list[tuple[str, str, str]]:
    """(mac, machine id, machine name) for each of `macs` already owned by another machine."""
    query = (select(db.machine_macs.c.mac, db.machines.c.id, db.machines.c.name)
             .join(db.machines, db.machines.c.id == db.machine_macs.c.machine_id)
             .where(db.machine_macs.c.mac.in_(macs)))
    if other_than is not None:
        query = query.where(db.machines.c.id != other_than)
    return [tuple(row) for row in conn.execute(query)]


def _mac_conflict(macs: list[str], owners: list[tuple[str, str, str]]) -> Conflict:
    mac, owner_id, owner_name = sorted(owners, key=lambda o: macs.index(o[0]))[0]
    return Conflict(f"MAC {mac} already belongs to machine {owner_name} ({owner_id})",
                    details={"field": f"macs[{macs.index(mac)}]", "mac": mac, "machine": owner_id})


def _name_conflict(conn: Connection, name: str, other_than: str | None = None) -> Conflict | None:
    query = select(db.machines.c.id).where(db.machines.c.name == name)
    if other_than is not None:
        query = query.where(db.machines.c.id != other_than)
    owner = conn.execute(query).scalar()
    return None if owner is None else Conflict(f"a machine named {name} already exists ({owner})",
                                               details={"field": "name", "machine": owner})


def _bmc_columns(bmc: dict, secrets) -> dict:
    password = bmc.get("password")
    return {"bmc_driver": bmc["driver"], "bmc_address": bmc["address"], "bmc_username": bmc["username"],
            "bmc_password_sealed": secrets.seal(password) if password is not None else None,
            "bmc_verify_tls": bmc["verify_tls"], "bmc_system_id": bmc["system_id"]}


def _stored_bmc(row) -> dict:
    """The stored BMC as check_bmc's shape, the password left out."""
    return {"driver": row["bmc_driver"], "address": row["bmc_address"], "username": row["bmc_username"],
            "password": None, "verify_tls": row["bmc_verify_tls"], "system_id": row["bmc_system_id"]}


# --- reading -----------------------------------------------------------------------------------------

def _row(conn: Connection, ref: str):
    if not isinstance(ref, str) or not ref or not db.matchable(ref):
        return None
    column = db.machines.c.id if looks_like_id(ref) else db.machines.c.name  # names are stored in lower case
    return conn.execute(select(db.machines).where(column == ref.lower())).mappings().first()


def get_row(target: Engine | Connection, ref: str):
    """The machines row for an id or a name, or None."""
    with _connect(target) as conn:
        return _row(conn, ref)


def _require(conn: Connection, ref: str, field: str = "id"):
    row = _row(conn, ref)
    if row is None:
        raise NotFound(f"no machine {ref!r}", details={"field": field})
    return row


def find_by_mac(target: Engine | Connection, mac: str):
    """The machines row owning `mac` (any spelling rules.mac accepts), or None."""
    try:
        mac = rules.mac(mac, "mac")
    except BadInput:
        return None
    with _connect(target) as conn:
        return conn.execute(select(db.machines).join(db.machine_macs, db.machine_macs.c.machine_id == db.machines.c.id)
                            .where(db.machine_macs.c.mac == mac)).mappings().first()


def _deployment_ref(conn: Connection, dep_id: str | None) -> dict | None:
    if dep_id is None:
        return None
    state = conn.execute(select(db.deployments.c.state).where(db.deployments.c.id == dep_id)).scalar()
    return {"id": dep_id, "state": state}


def _public(conn: Connection, row) -> dict:
    return {
        "id": row["id"], "name": row["name"], "state": row["state"], "macs": _macs_of(conn, row["id"]),
        "bmc": {"driver": row["bmc_driver"], "address": row["bmc_address"], "username": row["bmc_username"],
                "verify_tls": row["bmc_verify_tls"], "system_id": row["bmc_system_id"],
                "password_set": row["bmc_password_sealed"] is not None},
        "tags": list(row["tags"] or []), "facts": row["facts"], "facts_at": row["facts_at"],
        "power_state": row["power_state"], "power_checked_at": row["power_checked_at"],
        "power_error": row["power_error"],
        "current_deployment": _deployment_ref(conn, row["current_deployment_id"]),
        "last_deployment": _deployment_ref(conn, row["last_deployment_id"]),
        "created_at": row["created_at"], "updated_at": row["updated_at"],
    }


def get(target: Engine | Connection, ref: str) -> dict:
    """The public form of the machine with id or name `ref` (404 if none): never the BMC password."""
    with _connect(target) as conn:
        return _public(conn, _require(conn, ref))


def _number(value: Any) -> float | None:
    return value if isinstance(value, (int, float)) and not isinstance(value, bool) else None


def facts_match(facts: dict | None, filters: dict) -> bool:
    """Whether a machine's facts pass the fact filters (a machine without the fact does not)."""
    wanted = {key: value for key, value in filters.items() if key in FACT_FILTERS}
    if not wanted:
        return True
    facts = facts if isinstance(facts, dict) else {}
    disks = [d for d in facts.get("disks") or [] if isinstance(d, dict)] if isinstance(facts.get("disks"), list) else []
    cpus = facts.get("cpus") if isinstance(facts.get("cpus"), dict) else {}
    checks = {
        "min_memory_mib": lambda n: (_number(facts.get("memory_mib")) or -1) >= n,
        "min_cpus": lambda n: (_number(cpus.get("count")) or -1) >= n,
        "min_disks": lambda n: len(disks) >= n,
        "min_disk_bytes": lambda n: any((_number(d.get("size_bytes")) or -1) >= n for d in disks),
        "firmware": lambda value: facts.get("firmware") == value,
    }
    return all(checks[key](value) for key, value in wanted.items())


def list_all(target: Engine | Connection, filters: dict | None = None) -> list[dict]:
    """Machines by name, filtered by state, tag, MAC and facts (pxe.schemas.machines.MachineFilters.given())."""
    filters = filters or {}
    query = select(db.machines).order_by(db.machines.c.name)
    if "state" in filters:
        query = query.where(db.machines.c.state == filters["state"])
    if "mac" in filters:
        query = query.where(db.machines.c.id.in_(select(db.machine_macs.c.machine_id)
                                                 .where(db.machine_macs.c.mac == filters["mac"])))
    with _connect(target) as conn:
        rows = conn.execute(query).mappings().all()
        return [_public(conn, row) for row in rows
                if ("tag" not in filters or filters["tag"] in (row["tags"] or []))
                and facts_match(row["facts"], filters)]


# --- changing ----------------------------------------------------------------------------------------

def create(target: Engine | Connection, secrets, *, name: str, macs: list[str], bmc: dict | None = None,
           tags: list[str] | tuple[str, ...] = (), state: str = machine_states.READY,
           facts: dict | None = None) -> dict:
    """Register a machine (its fields checked as POST /api/v1/machines checks them) and return its public form.

    `secrets` (service.secrets) seals the BMC password; it may be None when no password is given.
    A MAC or name already taken → Conflict (409) naming it and the machine that has it; nothing stored.
    On a Connection the caller's transaction is used (a Conflict should make the caller roll it back)."""
    spec = parse(MachineCreate, {"name": name, "macs": list(macs), "tags": list(tags),
                                 **({"bmc": bmc} if bmc is not None else {})}).spec()
    if state not in machine_states.STATES:
        raise BadInput(f"must be one of {', '.join(machine_states.STATES)}", location="state")
    if facts is not None:
        facts = check_facts(facts)
    now = time.time()
    machine_id = str(uuid.uuid4())
    try:
        with _Begin(target) as conn:
            _refuse_taken(conn, spec["name"], spec["macs"])
            conn.execute(db.machines.insert().values(
                id=machine_id, name=spec["name"], state=state, tags=spec["tags"], facts=facts,
                facts_at=now if facts is not None else None, created_at=now, updated_at=now,
                **_bmc_columns(spec["bmc"], secrets)))
            conn.execute(db.machine_macs.insert(), [{"mac": mac, "machine_id": machine_id} for mac in spec["macs"]])
            created = _public(conn, _require(conn, machine_id))
            webhooks.machine_events(conn, None, created)
            return created
    except IntegrityError:  # a concurrent create took the name or a MAC between the check and the insert
        if isinstance(target, Connection):
            raise Conflict("the machine's name or one of its MACs was taken concurrently; retry",
                           details={"field": "macs"}) from None
        with target.connect() as conn:
            _refuse_taken(conn, spec["name"], spec["macs"])
        raise


def _refuse_taken(conn: Connection, name: str, macs: list[str], other_than: str | None = None) -> None:
    owners = _owners(conn, macs, other_than)
    if owners:
        raise _mac_conflict(macs, owners)
    conflict = _name_conflict(conn, name, other_than) if name is not None else None
    if conflict:
        raise conflict


def check_facts(facts: Any) -> dict:
    import json
    if not isinstance(facts, dict):
        raise BadInput("must be a JSON object", location="facts")
    if len(json.dumps(facts)) > MAX_FACTS_JSON:
        raise BadInput(f"at most {MAX_FACTS_JSON} bytes of JSON", location="facts")
    return facts


def set_facts(target: Engine | Connection, machine_id: str, facts: dict) -> bool:
    """Store a machine's hardware facts (docs/machines.md has their shape); False if there is no such machine."""
    facts = check_facts(facts)
    now = time.time()
    with _Begin(target) as conn:
        changed = conn.execute(update(db.machines).where(db.machines.c.id == machine_id)
                               .values(facts=facts, facts_at=now, updated_at=now)).rowcount == 1
        if changed:
            after = _public(conn, _require(conn, machine_id))
            webhooks.machine_events(conn, after, after)  # machine.updated
        return changed


def update_machine(target: Engine | Connection, secrets, ref: str, change: dict) -> dict:
    """Apply a checked PATCH (schemas.machines.MachinePatch): fields given replace the stored ones; the BMC
    is merged (the password kept unless given); MACs cannot change while a deployment is open."""
    with _Begin(target) as conn:
        row = _require(conn, ref)
        machine_id = row["id"]
        values: dict[str, Any] = {}
        if "name" in change and change["name"] != row["name"]:
            conflict = _name_conflict(conn, change["name"], machine_id)
            if conflict:
                raise conflict
            values["name"] = change["name"]
        if "macs" in change:
            if row["current_deployment_id"] is not None and sorted(change["macs"]) != _macs_of(conn, machine_id):
                raise Conflict(f"machine {row['name']} has an open deployment ({row['current_deployment_id']}); "
                               "its MACs can change once it ends", details={"field": "macs"})
            owners = _owners(conn, change["macs"], machine_id)
            if owners:
                raise _mac_conflict(change["macs"], owners)
        if "tags" in change:
            values["tags"] = change["tags"]
        if "bmc" in change:
            bmc, keep_password = merge_bmc(_stored_bmc(row), change["bmc"])
            columns = _bmc_columns(bmc, secrets)
            if keep_password:
                columns.pop("bmc_password_sealed")
            values.update(columns)
        if "state" in change and change["state"] != row["state"]:
            if not machine_states.operator_may_set(row["state"], change["state"]):
                raise Conflict(f"machine {row['name']} is {row['state']}; it cannot be set {change['state']}",
                               details={"field": "state", "state": row["state"]})
            values["state"] = change["state"]
        values["updated_at"] = time.time()
        where = db.machines.c.id == machine_id
        if "state" in values:
            where = and_(where, db.machines.c.state == row["state"])
        if conn.execute(update(db.machines).where(where).values(**values)).rowcount != 1:
            raise Conflict(f"machine {row['name']} changed meanwhile; retry", details={"field": "state"})
        if "macs" in change:
            conn.execute(delete(db.machine_macs).where(db.machine_macs.c.machine_id == machine_id))
            conn.execute(db.machine_macs.insert(), [{"mac": mac, "machine_id": machine_id} for mac in change["macs"]])
        changed = _public(conn, _require(conn, machine_id))
        webhooks.machine_events(conn, row, changed)
        return changed


def delete_machine(target: Engine | Connection, ref: str) -> str:
    """Delete a machine (and its MACs); 409 while it has an open deployment. Returns its id."""
    with _Begin(target) as conn:
        row = _require(conn, ref)
        gone = conn.execute(delete(db.machines).where(and_(db.machines.c.id == row["id"],
                                                           db.machines.c.current_deployment_id.is_(None)))).rowcount
        if gone != 1:
            current = conn.execute(select(db.machines.c.current_deployment_id)
                                   .where(db.machines.c.id == row["id"])).scalar()
            raise Conflict(f"machine {row['name']} has an open deployment ({current}); cancel it first",
                           details={"field": "id", "deployment": current})
        conn.execute(delete(db.machine_macs).where(db.machine_macs.c.machine_id == row["id"]))  # no FK cascade on
        webhooks.machine_events(conn, row, None)
        return row["id"]


# --- for the power drivers and the deployments -------------------------------------------------------

def bmc_access(service, machine_id: str) -> dict | None:
    """What a power driver needs: {driver, address, username, password (unsealed), verify_tls, system_id};
    None for a manual BMC. NotFound if there is no such machine. The result holds a secret: never log it."""
    with service.engine.connect() as conn:
        row = _require(conn, machine_id)
    if row["bmc_driver"] == "manual":
        return None
    sealed = row["bmc_password_sealed"]
    return {"driver": row["bmc_driver"], "address": row["bmc_address"], "username": row["bmc_username"],
            "password": service.secrets.unseal(sealed) if sealed is not None else None,
            "verify_tls": row["bmc_verify_tls"], "system_id": row["bmc_system_id"]}


def resolve_for_deployment(target: Engine | Connection, ref: str | None, mac: str | None) -> tuple[str | None, str]:
    """(machine id, MAC) of a new deployment: the named machine (404 at `machine` if none) and the given MAC
    (400 at `mac` unless one of its MACs), or its only MAC; MAC-only: the machine owning the MAC, if any."""
    if ref is None:
        owner = find_by_mac(target, mac)
        return (owner["id"] if owner is not None else None), mac
    with _connect(target) as conn:
        row = _require(conn, ref, field="machine")
        macs = _macs_of(conn, row["id"])
    if mac is None:
        if len(macs) != 1:
            raise BadInput(f"machine {row['name']} has {len(macs)} MACs ({', '.join(macs)}); say with `mac` which "
                           "one network-boots", location="mac")
        return row["id"], macs[0]
    if mac not in macs:
        raise BadInput(f"is not one of machine {row['name']}'s MACs ({', '.join(macs)})", location="mac")
    return row["id"], mac


def on_deployment_transition(conn: Connection, deployment, new_state: str) -> None:
    """Keep a deployment's machine in step with it, in the deployment's transaction: an open deployment makes
    it the machine's current one (Conflict if the machine already has another) and the machine `deploying`;
    an ending one makes it the last one and the machine deployed, failed or ready (cancelled).

    `deployment` is a deployments row or id. A deployment without a machine changes nothing."""
    if isinstance(deployment, str):
        dep_id = deployment
        machine_id = conn.execute(select(db.deployments.c.machine_id).where(db.deployments.c.id == dep_id)).scalar()
    else:
        dep_id, machine_id = deployment["id"], deployment["machine_id"]
    if machine_id is None:
        return
    before = conn.execute(select(db.machines).where(db.machines.c.id == machine_id)).mappings().first()
    now = time.time()
    state = machine_states.for_deployment(new_state)
    machines = db.machines.c
    if new_state in deployment_states.OPEN_STATES:
        taken = conn.execute(update(db.machines).where(and_(
            machines.id == machine_id,
            (machines.current_deployment_id.is_(None)) | (machines.current_deployment_id == dep_id)))
            .values(state=state, current_deployment_id=dep_id, updated_at=now)).rowcount
        if taken != 1:
            row = conn.execute(select(db.machines.c.name, db.machines.c.current_deployment_id)
                               .where(machines.id == machine_id)).first()
            if row is None:
                raise NotFound(f"no machine {machine_id!r}", details={"field": "machine"})
            raise Conflict(f"machine {row.name} already has an open deployment ({row.current_deployment_id}); "
                           "cancel it first", details={"field": "machine", "deployment": row.current_deployment_id})
        _announce_step(conn, before, machine_id)
        return
    conn.execute(update(db.machines).where(and_(
        machines.id == machine_id,
        (machines.current_deployment_id == dep_id) | (machines.current_deployment_id.is_(None))))
        .values(state=state, current_deployment_id=None, last_deployment_id=dep_id, updated_at=now))
    _announce_step(conn, before, machine_id)


def _announce_step(conn: Connection, before, machine_id: str) -> None:
    """Webhook events for a machine moved along by its deployment, when its state or deployments changed."""
    after = conn.execute(select(db.machines).where(db.machines.c.id == machine_id)).mappings().first()
    if before is not None and after is not None and any(
            before[key] != after[key] for key in ("state", "current_deployment_id", "last_deployment_id")):
        webhooks.machine_events(conn, before, _public(conn, after))

