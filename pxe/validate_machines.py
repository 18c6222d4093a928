"""Validation of machine requests (POST and PATCH /api/v1/machines). Pure: no Flask, no database.

Each failure raises BadInput located at the JSON field (`bmc.address`, `macs[1]`), so the API answers 400
naming it. BMC addresses are held to what a BMC client needs and nothing more: Redfish `http(s)://HOST[:PORT]`,
IPMI `HOST` or `HOST:PORT`, HOST a DNS name, an IPv4 address or a bracketed IPv6 address (bare for IPMI
without a port) — no user info, path, query, whitespace or shell characters.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any

from metalstream.contracts import rules
from metalstream.errors import BadInput

from . import machine_states

CREATE_FIELDS = ("name", "macs", "bmc", "tags")
PATCH_FIELDS = ("name", "macs", "bmc", "tags", "state")
BMC_FIELDS = ("driver", "address", "username", "password", "verify_tls", "system_id")
DRIVERS = ("redfish", "ipmi", "manual")
REDFISH_ONLY = ("verify_tls", "system_id")
MAX_NAME = 64
MAX_MACS = 64
MAX_TAGS = 64
MAX_TAG = 64
MAX_USERNAME = 64
MAX_PASSWORD = 128
MAX_IPMI_PASSWORD_BYTES = 20
MAX_ADDRESS = 255
MAX_SYSTEM_ID = 255

_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+-]*\Z")
_LABEL = re.compile(r"[A-Za-z0-9]([A-Za-z0-9-]{0,61}[A-Za-z0-9])?\Z")
_REDFISH = re.compile(r"(?P<scheme>https?)://(?P<host>\[[^\]/]*\]|[^:/\[\]]+)(:(?P<port>[0-9]{1,5}))?/?\Z")
_IPMI_BRACKETED = re.compile(r"\[(?P<host>[^\]]*)\](:(?P<port>[0-9]{1,5}))?\Z")
_SYSTEM_ID = re.compile(r"[A-Za-z0-9._~:@/-]+\Z")


def looks_like_id(value: str) -> bool:
    """A machine id is a UUID; a name never looks like one, so `GET /machines/<ref>` is never ambiguous."""
    return bool(_UUID.match(value))


def check_name(value: Any, location: str = "name") -> str:
    name = rules.hostname(value, location)
    if len(name) > MAX_NAME:
        raise BadInput(f"at most {MAX_NAME} characters", location=location)
    if looks_like_id(name):
        raise BadInput("must not look like a machine id (a UUID)", location=location)
    return name


def check_macs(value: Any, location: str = "macs") -> list[str]:
    items = rules.expect_list(value, location, max_items=MAX_MACS)
    if not items:
        raise BadInput("needs at least one MAC address", location=location)
    macs: list[str] = []
    for i, item in enumerate(items):
        mac = rules.mac(item, f"{location}[{i}]")
        if mac in macs:
            raise BadInput(f"{mac} is listed twice", location=f"{location}[{i}]")
        macs.append(mac)
    return macs


def check_tags(value: Any, location: str = "tags") -> list[str]:
    items = rules.expect_list(value, location, max_items=MAX_TAGS)
    tags: list[str] = []
    for i, item in enumerate(items):
        where = f"{location}[{i}]"
        if not isinstance(item, str) or not 0 < len(item) <= MAX_TAG or not _TAG.match(item):
            raise BadInput(f"a tag is 1-{MAX_TAG} characters: letters, digits and _ . : = + - "
                           "(starting with a letter or digit)", location=where)
        if item in tags:
            raise BadInput(f"tag {item!r} is listed twice", location=where)
        tags.append(item)
    return tags


def _host(host: str, location: str) -> str:
    """A DNS name, an IPv4 address, or (already unbracketed) an IPv6 address; returned as written."""
    if ":" in host:
        try:
            ipaddress.IPv6Address(host)
        except ValueError:
            raise BadInput(f"{host!r} is not an IPv6 address", location=location) from None
        return host
    if re.fullmatch(r"[0-9.]+", host):
        try:
            ipaddress.IPv4Address(host)
        except ValueError:
            raise BadInput(f"{host!r} is not an IPv4 address", location=location) from None
        return host
    if len(host) > 253 or not all(_LABEL.match(label) for label in host.split(".")):
        raise BadInput("the host must be a DNS name (letters, digits, '-' and '.'), an IPv4 address or a "
                       "bracketed IPv6 address", location=location)
    return host


def _port(port: str | None, location: str) -> None:
    if port is not None and not 0 < int(port) < 65536:
        raise BadInput(f"port {port} is out of range (1-65535)", location=location)


def _address_text(value: Any, location: str) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput("must be a non-empty string", location=location)
    if len(value) > MAX_ADDRESS:
        raise BadInput(f"at most {MAX_ADDRESS} characters", location=location)
    if not value.isascii() or not value.isprintable() or any(c.isspace() for c in value):
        raise BadInput("must be printable ASCII without whitespace or control characters", location=location)
    return value


def redfish_address(value: Any, location: str = "bmc.address") -> str:
    """`http://HOST[:PORT]` or `https://HOST[:PORT]` (a trailing '/' is dropped); nothing else."""
    text = _address_text(value, location)
    match = _REDFISH.match(text)
    if not match:
        raise BadInput("must be http://HOST[:PORT] or https://HOST[:PORT] (no user, path, query or fragment)",
                       location=location)
    host = match["host"]
    _host(host[1:-1] if host.startswith("[") else host, location)
    _port(match["port"], location)
    return text.rstrip("/")


def ipmi_address(value: Any, location: str = "bmc.address") -> str:
    """`HOST`, `HOST:PORT`, a bare IPv6 address, or `[IPV6]:PORT`."""
    text = _address_text(value, location)
    bracketed = _IPMI_BRACKETED.match(text)
    if bracketed:
        _host(bracketed["host"], location)
        _port(bracketed["port"], location)
        return text
    if text.count(":") > 1:  # a bare IPv6 address
        return _host(text, location)
    host, sep, port = text.partition(":")
    if sep and not re.fullmatch(r"[0-9]{1,5}", port):
        raise BadInput("must be HOST or HOST:PORT (an IPMI address has no scheme, user or path)", location=location)
    _host(host, location)
    _port(port or None, location)
    return text


def _credential(value: Any, location: str, limit: int) -> str:
    if not isinstance(value, str) or not value:
        raise BadInput("must be a non-empty string", location=location)
    if len(value) > limit:
        raise BadInput(f"at most {limit} characters", location=location)
    if rules.CONTROL.search(value):
        raise BadInput("contains a control character (newline, tab, escape...)", location=location)
    return value


def _system_id(value: Any, location: str) -> str:
    if (not isinstance(value, str) or not 0 < len(value) <= MAX_SYSTEM_ID or not _SYSTEM_ID.match(value)
            or ".." in value):
        raise BadInput(f"must be a Redfish system id or path (1-{MAX_SYSTEM_ID} characters: letters, digits and "
                       ". _ ~ : @ / -; no '..')", location=location)
    return value


def check_bmc(value: Any, location: str = "bmc") -> dict:
    """A complete BMC description → {driver, address, username, password, verify_tls, system_id}; fields a
    driver does not use are refused, absent ones are None (verify_tls defaults to true for Redfish)."""
    data = rules.expect_object(value, location, BMC_FIELDS)
    at = lambda name: f"{location}.{name}"  # noqa: E731
    if "driver" not in data:
        raise BadInput("is required (redfish, ipmi or manual)", location=at("driver"))
    driver = rules.one_of(data["driver"], DRIVERS, at("driver"))
    given = {key for key, item in data.items() if item is not None}
    out = dict.fromkeys(BMC_FIELDS)
    out["driver"] = driver
    if driver == "manual":
        extra = sorted(given - {"driver"})
        if extra:
            raise BadInput("a manual BMC has no address, credentials or Redfish settings", location=at(extra[0]))
        return out
    if driver == "ipmi":
        extra = sorted(given & set(REDFISH_ONLY))
        if extra:
            raise BadInput("only for the redfish driver", location=at(extra[0]))
    if "address" not in given:
        raise BadInput(f"is required for the {driver} driver", location=at("address"))
    out["address"] = (redfish_address if driver == "redfish" else ipmi_address)(data["address"], at("address"))
    if "username" in given:
        out["username"] = _credential(data["username"], at("username"), MAX_USERNAME)
    if "password" in given:
        out["password"] = _credential(data["password"], at("password"), MAX_PASSWORD)
        if driver == "ipmi" and len(out["password"].encode()) > MAX_IPMI_PASSWORD_BYTES:
            raise BadInput(f"IPMI passwords are at most {MAX_IPMI_PASSWORD_BYTES} bytes (ipmitool and the "
                           "IPMI 2.0 session refuse longer ones)", location=at("password"))
    if driver == "redfish":
        out["verify_tls"] = rules.boolean(data["verify_tls"], at("verify_tls")) if "verify_tls" in given else True
        if "system_id" in given:
            out["system_id"] = _system_id(data["system_id"], at("system_id"))
    return out


def check_create(data: Any) -> dict:
    """A POST /api/v1/machines body → {name, macs, bmc, tags} (bmc defaults to manual)."""
    rules.expect_object(data, "", CREATE_FIELDS)
    for required in ("name", "macs"):
        if required not in data:
            raise BadInput("is required", location=required)
    return {
        "name": check_name(data["name"]),
        "macs": check_macs(data["macs"]),
        "bmc": check_bmc(data["bmc"]) if "bmc" in data else check_bmc({"driver": "manual"}),
        "tags": check_tags(data["tags"]) if "tags" in data else [],
    }


def check_patch(data: Any) -> dict:
    """A PATCH body → only the fields given, checked; `bmc` is left raw (it is merged with the stored BMC
    and the result checked by `merge_bmc`) but must be an object of known fields."""
    rules.expect_object(data, "", PATCH_FIELDS)
    out: dict = {}
    for key, item in data.items():
        if item is None:
            raise BadInput("must not be null (leave the field out to keep it)", location=key)
    if "name" in data:
        out["name"] = check_name(data["name"])
    if "macs" in data:
        out["macs"] = check_macs(data["macs"])
    if "tags" in data:
        out["tags"] = check_tags(data["tags"])
    if "state" in data:
        out["state"] = rules.one_of(data["state"], machine_states.SETTABLE, "state")
    if "bmc" in data:
        out["bmc"] = dict(rules.expect_object(data["bmc"], "bmc", BMC_FIELDS))
    return out


def merge_bmc(stored: dict, change: dict) -> tuple[dict, bool]:
    """The BMC after a PATCH: `stored` (without its password) updated by `change`; a change of driver
    starts from nothing. Returns (checked bmc, keep_password): keep_password is True when the stored
    password stays (same driver, no `password` given)."""
    same_driver = change.get("driver", stored["driver"]) == stored["driver"]
    base = {key: item for key, item in stored.items() if key != "password" and item is not None} if same_driver \
        else {}
    if not same_driver:
        base["driver"] = change["driver"]
    merged = {**base, **{key: item for key, item in change.items() if item is not None}}
    for key, item in change.items():
        if item is None:
            merged.pop(key, None)  # null clears a field (the password included)
    bmc = check_bmc(merged)
    keep = same_driver and "password" not in change and bmc["driver"] != "manual"
    return bmc, keep
