"""Enlistment and inspection: an unknown machine that PXE-boots while discovery is on gets the installer in
inspection mode; its agent reports the hardware facts and powers off; the report makes a machine in state
`new` (or refreshes the facts of the machine that owns the MAC). Deploying agents send the facts too, and
they are stored on the deployment's machine.

Inspection token: `i.<Fernet token>` sealing `<mac>:<issued at>` with the service's secret box (pxe.secretbox),
so every replica of the service on one database accepts it and nothing about it is stored. It is bound to
one MAC, valid for INSPECTION_TOKEN_TTL seconds, and once: a report is refused when the machine of that MAC
got facts at or after the token was issued (a replayed kernel command line cannot overwrite newer facts).
"""
from __future__ import annotations

import re
import time

from sqlalchemy import select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from metalstream.contracts import rules
from metalstream.errors import BadInput, MetalstreamError

from . import db, machines
from .machine_states import NEW
from .errors import Conflict
from .render import InstallerBoot

TOKEN_PREFIX = "i."
INSPECTION_TOKEN_TTL = 3600.0  # seconds from the boot script to the report
INSPECTION_MODE = "inspect"
MAX_REPORT_BYTES = machines.MAX_FACTS_JSON + 1024  # the stored facts' limit, and the wrapping
MAX_DISKS, MAX_NICS, MAX_FACT_TEXT = 256, 128, 255
FACT_KEYS = ("cpus", "memory_mib", "firmware", "dmi", "disks", "nics")
CPU_KEYS = ("count", "model")
DMI_KEYS = ("vendor", "product", "serial")
DISK_KEYS = ("name", "size_bytes", "model", "serial", "wwn", "rotational", "by_path")
NIC_KEYS = ("mac", "name", "driver", "link", "speed_mbps")
FIRMWARE_MODES = ("uefi", "bios")
_DISK_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9!_.:-]{0,63}\Z")
BY_PATH_PREFIX = "/dev/disk/by-path/"


# --- the facts report ---------------------------------------------------------------------------------------

def _optional(value, check, location: str, **kwargs):
    return None if value is None else check(value, location, **kwargs)


def _fact_text(value, location: str):
    return _optional(value, rules.text, location, max_length=MAX_FACT_TEXT)


def _required(data: dict, keys: tuple[str, ...], location: str) -> None:
    missing = [key for key in keys if key not in data]
    if missing:
        raise BadInput("missing (null when unknown)", location=rules.field(location, missing[0]))


def _object(value, location: str, keys: tuple[str, ...]) -> dict:
    data = rules.expect_object(value, location, keys)
    _required(data, keys, location)
    return data


def read_facts(value) -> dict:
    """The facts of a report (docs/inspection.md), checked field by field; BadInput names the first bad one."""
    facts = _object(value, "facts", FACT_KEYS)
    cpus = _object(facts["cpus"], "facts.cpus", CPU_KEYS)
    dmi = _object(facts["dmi"], "facts.dmi", DMI_KEYS)
    out = {
        "cpus": {"count": _optional(cpus["count"], rules.integer, "facts.cpus.count", minimum=1, maximum=65536),
                 "model": _fact_text(cpus["model"], "facts.cpus.model")},
        "memory_mib": _optional(facts["memory_mib"], rules.integer, "facts.memory_mib", minimum=1,
                                maximum=1 << 40),
        "firmware": rules.one_of(facts["firmware"], FIRMWARE_MODES, "facts.firmware"),
        "dmi": {key: _fact_text(dmi[key], f"facts.dmi.{key}") for key in DMI_KEYS},
        "disks": [_disk(disk, f"facts.disks[{n}]")
                  for n, disk in enumerate(rules.expect_list(facts["disks"], "facts.disks", max_items=MAX_DISKS))],
        "nics": [_nic(nic, f"facts.nics[{n}]")
                 for n, nic in enumerate(rules.expect_list(facts["nics"], "facts.nics", max_items=MAX_NICS))],
    }
    _unique([d["name"] for d in out["disks"]], "facts.disks", "name")
    _unique([n["mac"] for n in out["nics"]], "facts.nics", "mac")
    return out


def _unique(values: list[str], location: str, key: str) -> None:
    seen = set()
    for n, value in enumerate(values):
        if value in seen:
            raise BadInput(f"{value} is listed twice", location=f"{location}[{n}].{key}")
        seen.add(value)


def _disk(value, location: str) -> dict:
    disk = _object(value, location, DISK_KEYS)
    name = disk["name"]
    if not isinstance(name, str) or not _DISK_NAME.match(name):
        raise BadInput("not a kernel disk name (1 to 64 of letters, digits, '!', '_', '.', ':', '-')",
                       location=f"{location}.name")
    by_path = _fact_text(disk["by_path"], f"{location}.by_path")
    if by_path is not None and (not by_path.startswith(BY_PATH_PREFIX) or "/.." in by_path
                                or " " in by_path or len(by_path) == len(BY_PATH_PREFIX)):
        raise BadInput("must be the disk's udev by-path link (the full path of a link in dev/disk/by-path)",
                       location=f"{location}.by_path")
    return {"name": name, "size_bytes": rules.integer(disk["size_bytes"], f"{location}.size_bytes"),
            "model": _fact_text(disk["model"], f"{location}.model"),
            "serial": _fact_text(disk["serial"], f"{location}.serial"),
            "wwn": _fact_text(disk["wwn"], f"{location}.wwn"),
            "rotational": _optional(disk["rotational"], rules.boolean, f"{location}.rotational"),
            "by_path": by_path}


def _nic(value, location: str) -> dict:
    nic = _object(value, location, NIC_KEYS)
    return {"mac": rules.mac(nic["mac"], f"{location}.mac"),
            "name": rules.interface_name(nic["name"], f"{location}.name"),
            "driver": _fact_text(nic["driver"], f"{location}.driver"),
            "link": _optional(nic["link"], rules.boolean, f"{location}.link"),
            "speed_mbps": _optional(nic["speed_mbps"], rules.integer, f"{location}.speed_mbps",
                                    maximum=10_000_000)}


# --- inspection tokens --------------------------------------------------------------------------------------

def mint_token(secrets, mac: str, now: float | None = None) -> str:
    issued = time.time() if now is None else now
    return TOKEN_PREFIX + secrets.seal(f"{mac.replace(':', '')}:{issued:.3f}").rstrip("=")


def is_inspection_token(token: str | None) -> bool:
    return bool(token) and token.startswith(TOKEN_PREFIX)


def read_token(secrets, token: str, now: float | None = None, ttl: float = INSPECTION_TOKEN_TTL):
    """(MAC, issued at) of a valid, unexpired inspection token, else None."""
    sealed = token[len(TOKEN_PREFIX):]
    if not token.startswith(TOKEN_PREFIX) or not re.fullmatch(r"[A-Za-z0-9_-]{16,400}", sealed):
        return None
    try:
        plain = secrets.unseal(sealed + "=" * (-len(sealed) % 4))
    except MetalstreamError:
        return None
    digits, _, issued_text = plain.partition(":")
    try:
        mac, issued = rules.mac(digits, "token"), float(issued_text)
    except (BadInput, ValueError):
        return None
    now = time.time() if now is None else now
    return (mac, issued) if issued <= now + 60 and now - issued <= ttl else None


# --- boot selection -----------------------------------------------------------------------------------------

def wants_inspection(engine: Engine, mac: str) -> bool:
    """Discovery inspects a MAC no deployment ever named whose machine is unknown or still `new`: a machine once
    deployed by MAC alone, or registered and taken into use, boots as it would without discovery."""
    with engine.connect() as conn:
        deployed = conn.execute(select(db.deployments.c.id).where(db.deployments.c.mac == mac).limit(1)).first()
        if deployed is not None:
            return False
        machine = machines.find_by_mac(conn, mac)
    return machine is None or machine["state"] == NEW


def installer_boot(base_url: str, mac: str, token: str) -> InstallerBoot:
    return InstallerBoot(base_url=base_url, token=token, deployment_id="inspection", mac=mac, image="inspection",
                         mode=INSPECTION_MODE)


# --- storing reports ----------------------------------------------------------------------------------------

def default_name(mac: str) -> str:
    return "new-" + mac.replace(":", "")


def enlist(engine: Engine, mac: str, issued_at: float, facts: dict) -> tuple[dict, bool]:
    """Store an inspection report for `mac`: a new machine (state `new`, every reported NIC's MAC that no other
    machine owns) or the facts of the machine owning it. Returns (machine summary, created)."""
    if mac not in [nic["mac"] for nic in facts["nics"]]:
        raise BadInput(f"the MAC this machine booted with ({mac}) is not among the reported NICs",
                       location="facts.nics")
    try:
        with engine.begin() as conn:
            machine = machines.find_by_mac(conn, mac)
            if machine is not None:
                if machine["facts_at"] is not None and machine["facts_at"] >= issued_at:
                    raise Conflict("this inspection token was already used (the machine's facts are newer than it)",
                                   details={"field": "Authorization"})
                machines.set_facts(conn, machine["id"], facts)
                return _summary(machine), False
            others = [nic["mac"] for nic in facts["nics"] if nic["mac"] != mac]
            free = [other for other in others if machines.find_by_mac(conn, other) is None]
            created = machines.create(conn, None, name=default_name(mac), macs=[mac, *free], state=NEW, facts=facts)
            return _summary(created), True
    except IntegrityError:  # the same report twice at once, or a machine named new-<mac> without that MAC
        raise Conflict(f"a machine for {mac} was created meanwhile, or the name {default_name(mac)} is taken",
                       details={"field": "facts.nics"}) from None


def refresh_for_deployment(engine: Engine, deployment, facts: dict) -> dict | None:
    """A deploying agent's facts: stored on the deployment's machine (or the machine owning its MAC); None when
    the deployment has no machine (a MAC-only deployment of an unregistered machine)."""
    with engine.begin() as conn:
        machine = (machines.get_row(conn, deployment["machine_id"]) if deployment["machine_id"]
                   else machines.find_by_mac(conn, deployment["mac"]))
        if machine is None:
            return None
        machines.set_facts(conn, machine["id"], facts)
        return _summary(machine)


def _summary(machine) -> dict:
    return {"id": machine["id"], "name": machine["name"], "state": machine["state"]}
