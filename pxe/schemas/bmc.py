"""A machine's BMC in requests and answers (POST/PATCH /api/v1/machines).

BMC addresses are held to what a BMC client needs and nothing more: Redfish `http(s)://HOST[:PORT]`,
IPMI `HOST` or `HOST:PORT`, HOST a DNS name, an IPv4 address or a bracketed IPv6 address (bare for IPMI
without a port) — no user info, path, query, whitespace or shell characters. A BMC is checked as a whole
(which fields a driver takes), so its model's validator is `check_bmc`.
"""
from __future__ import annotations

import ipaddress
import re
from typing import Any, Literal

from pydantic import BaseModel, Field

from metalstream.contracts import rules
from metalstream.errors import BadInput

from .base import HERE, Request, fields_of, shape, unchecked

BMC_FIELDS = ("driver", "address", "username", "password", "verify_tls", "system_id")
DRIVERS = ("redfish", "ipmi", "manual")
REDFISH_ONLY = ("verify_tls", "system_id")
MAX_USERNAME = 64
MAX_PASSWORD = 128
MAX_IPMI_PASSWORD_BYTES = 20
MAX_ADDRESS = 255
MAX_SYSTEM_ID = 255

_REDFISH = re.compile(r"(?P<scheme>https?)://(?P<host>\[[^\]/]*\]|[^:/\[\]]+)(:(?P<port>[0-9]{1,5}))?/?\Z")
_IPMI_BRACKETED = re.compile(r"\[(?P<host>[^\]]*)\](:(?P<port>[0-9]{1,5}))?\Z")
_SYSTEM_ID = re.compile(r"[A-Za-z0-9._~:@/-]+\Z")


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
    if not rules.is_hostname(host):
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


_ADDRESS = "redfish: http(s)://HOST[:PORT]; ipmi: HOST or HOST:PORT"
_PASSWORD = "stored encrypted; never returned (a machine shows password_set)"


class BmcInput(Request):
    """A machine's BMC; fields a driver does not use are refused."""

    driver: Literal[DRIVERS] = Field(description="redfish, ipmi, or manual (no BMC: someone powers it)")
    address: str | None = Field(None, max_length=MAX_ADDRESS, examples=["https://10.0.0.20"], description=_ADDRESS)
    username: str | None = Field(None, max_length=MAX_USERNAME)
    password: str | None = Field(None, max_length=MAX_PASSWORD, description=_PASSWORD,
                                 json_schema_extra={"format": "password"})
    verify_tls: bool | None = Field(None, description="redfish only: check the BMC's certificate (default true)")
    system_id: str | None = Field(None, max_length=MAX_SYSTEM_ID,
                                  description="redfish only: the system's id or path (default: the BMC's only one)")

    @shape
    def _whole(cls, data: Any) -> Any:
        return check_bmc(data, HERE)


def _limit(n: int) -> Any:
    return Field(None, json_schema_extra={"maxLength": n})


class BmcPatch(Request):
    """Merged into the stored BMC: fields left out stay, null clears one, the password stays unless given;
    another driver starts from nothing. The merged BMC is checked as a whole (`merge_bmc`)."""

    driver: unchecked(Literal[DRIVERS] | None) = None
    address: unchecked(str | None) = _limit(MAX_ADDRESS)
    username: unchecked(str | None) = _limit(MAX_USERNAME)
    password: unchecked(str | None) = Field(None, json_schema_extra={"maxLength": MAX_PASSWORD, "format": "password"})
    verify_tls: unchecked(bool | None) = None
    system_id: unchecked(str | None) = _limit(MAX_SYSTEM_ID)

    @shape
    def _whole(cls, data: Any) -> Any:
        return fields_of(data, cls, HERE)

    def change(self) -> dict:
        return self.model_dump(exclude_unset=True)


class Bmc(BaseModel):
    """A machine's BMC as answered: never its password."""

    driver: Literal[DRIVERS]
    address: str | None
    username: str | None
    verify_tls: bool | None
    system_id: str | None
    password_set: bool
