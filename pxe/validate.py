"""Validation of everything a client can send: MACs, names, hostnames, kernel args, payloads.

Pure functions (no Flask, no database). Each failure raises BadInput whose `location` names the
JSON field, so the API can answer with a 400 that says exactly what is wrong.
"""
from __future__ import annotations

import re
from typing import Any

from deployer.errors import BadInput

# Patterns end in \Z, not $: `$` also matches before a trailing newline, which would let "x\n" through.
_MAC_HEX = re.compile(r"^[0-9a-f]{12}\Z")
_HOST_LABEL = re.compile(r"^[a-z0-9]([a-z0-9-]{0,61}[a-z0-9])?\Z")
# One kernel argument: no spaces, no shell or iPXE/GRUB metacharacters ($ { } ; & | ` \ # quotes).
KERNEL_ARG = re.compile(r"^[A-Za-z0-9._:/=,+@-]{1,256}\Z")
SHA256 = re.compile(r"^[0-9a-f]{64}\Z")
IMAGE_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,127}\Z")
_PASSWORD_HASH = re.compile(r"^\$[0-9a-z]{1,3}\$[A-Za-z0-9./$=,+-]{8,512}\Z")
_SSH_KEY = re.compile(
    r"^(ssh-ed25519|ssh-rsa|ecdsa-sha2-nistp(256|384|521)|sk-ssh-ed25519@openssh\.com|"
    r"sk-ecdsa-sha2-nistp256@openssh\.com) [A-Za-z0-9+/]+={0,3}( [\x21-\x7e][\x20-\x7e]{0,200})?\Z"
)
_SSH_ADDRESS = re.compile(r"^(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})\Z")
_SERIALISH = re.compile(r"^[\x21-\x7e]{1,256}\Z")

BOOT_MODES = ("bios", "uefi", "both")
DISK_HINT_FIELDS = ("serial", "wwn", "by_path", "model", "name", "min_size_gib", "max_size_gib", "rotational")
DEPLOYMENT_FIELDS = (
    "mac", "image", "image_sha256", "hostname", "disk_hints", "boot_mode", "root_password_hash",
    "ssh_keys", "kernel_args", "kickstart", "ssh_address",
)
EVENT_PHASES = ("start", "disk", "partition", "mkfs", "stream", "verify", "configure", "bootloader", "finish")
EVENT_FIELDS = ("phase", "message", "bytes_done", "bytes_total", "time")
RESULT_FIELDS = ("success", "phase", "error", "log", "root_uuid", "time")
MAX_KICKSTART = 256 * 1024
MAX_LOG = 8 * 1024 * 1024


def normalize_mac(value: Any, field: str = "mac") -> str:
    """`aa:bb:cc:dd:ee:ff`, `AA-BB-CC-DD-EE-FF` or `aabbccddeeff` → `aa:bb:cc:dd:ee:ff`."""
    if not isinstance(value, str):
        raise BadInput("must be a MAC address string", location=field)
    raw = value.strip().lower()
    if re.fullmatch(r"([0-9a-f]{2}[:-]){5}[0-9a-f]{2}", raw):
        if raw[2] != raw[5] or len(set(raw[2::3])) != 1:
            raise BadInput(f"not a MAC address (mixed separators): {value!r}", location=field)
        raw = raw.replace(":", "").replace("-", "")
    if not _MAC_HEX.match(raw):
        raise BadInput(f"not a MAC address: {value!r} (want aa:bb:cc:dd:ee:ff, AA-BB-..., or aabbccddeeff)",
                       location=field)
    return ":".join(raw[i:i + 2] for i in range(0, 12, 2))


def check_hostname(value: Any, field: str = "hostname") -> str:
    if not isinstance(value, str) or not value:
        raise BadInput("must be a non-empty string", location=field)
    if not value.isascii() or len(value) > 253:
        raise BadInput("must be ASCII and at most 253 characters", location=field)
    for label in value.lower().split("."):
        if not _HOST_LABEL.match(label):
            raise BadInput(f"not a valid hostname: {value!r} (letters, digits, '-' and '.' only)", location=field)
    return value.lower()


def check_kernel_arg(value: Any, field: str) -> str:
    if not isinstance(value, str) or not KERNEL_ARG.match(value):
        raise BadInput(f"not an allowed kernel argument: {value!r} (one argument per list item; letters, digits "
                       "and . _ : / = , + @ - only)", location=field)
    return value


def check_image_name(value: Any, field: str = "image") -> str:
    if not isinstance(value, str) or not IMAGE_NAME.match(value) or ".." in value:
        raise BadInput(f"not a valid image name: {value!r} (letters, digits, '.', '_', '-'; no '..')",
                       location=field)
    return value


def check_sha256(value: Any, field: str) -> str:
    if not isinstance(value, str) or not SHA256.match(value):
        raise BadInput("must be a sha256 checksum (64 lowercase hex digits)", location=field)
    return value


def _check_fields(data: Any, allowed: tuple[str, ...], where: str) -> dict:
    if not isinstance(data, dict):
        raise BadInput("must be a JSON object", location=where or "body")
    unknown = sorted(set(data) - set(allowed))
    if unknown:
        prefix = f"{where}." if where else ""
        raise BadInput(f"unknown field (allowed: {', '.join(allowed)})", location=prefix + unknown[0])
    return data


def _optional_str(data: dict, key: str, where: str, pattern: re.Pattern = _SERIALISH) -> str | None:
    value = data.get(key)
    if value is None:
        return None
    if not isinstance(value, str) or not pattern.match(value):
        raise BadInput("must be a printable ASCII string without spaces", location=f"{where}.{key}")
    return value


def _optional_number(data: dict, key: str, where: str) -> float | None:
    value = data.get(key)
    if value is None:
        return None
    if isinstance(value, bool) or not isinstance(value, (int, float)) or value < 0:
        raise BadInput("must be a non-negative number", location=f"{where}.{key}")
    return value


def check_disk_hints(data: Any) -> dict:
    if data is None:
        data = {}
    _check_fields(data, DISK_HINT_FIELDS, "disk_hints")
    hints = {key: _optional_str(data, key, "disk_hints") for key in ("serial", "wwn", "by_path", "model", "name")}
    hints["min_size_gib"] = _optional_number(data, "min_size_gib", "disk_hints")
    hints["max_size_gib"] = _optional_number(data, "max_size_gib", "disk_hints")
    if None not in (hints["min_size_gib"], hints["max_size_gib"]) and hints["min_size_gib"] > hints["max_size_gib"]:
        raise BadInput("must not exceed max_size_gib", location="disk_hints.min_size_gib")
    rotational = data.get("rotational")
    if rotational is not None and not isinstance(rotational, bool):
        raise BadInput("must be true, false or null", location="disk_hints.rotational")
    hints["rotational"] = rotational
    return hints


def check_deployment(data: Any) -> dict:
    """Validate a POST /api/v1/deployments body; return the normalised request (kickstart still unparsed)."""
    _check_fields(data, DEPLOYMENT_FIELDS, "")
    for required in ("mac", "image"):
        if required not in data:
            raise BadInput("is required", location=required)
    out: dict[str, Any] = {
        "mac": normalize_mac(data["mac"]),
        "image": check_image_name(data["image"]),
        "image_sha256": None,
        "hostname": None,
        "disk_hints": check_disk_hints(data.get("disk_hints")),
        "boot_mode": data.get("boot_mode", "both"),
        "root_password_hash": None,
        "ssh_keys": [],
        "kernel_args": [],
        "kickstart": None,
        "ssh_address": None,
    }
    if data.get("image_sha256") is not None:
        out["image_sha256"] = check_sha256(data["image_sha256"], "image_sha256")
    if data.get("hostname") is not None:
        out["hostname"] = check_hostname(data["hostname"])
    if out["boot_mode"] not in BOOT_MODES:
        raise BadInput(f"must be one of {', '.join(BOOT_MODES)}", location="boot_mode")
    if data.get("root_password_hash") is not None:
        value = data["root_password_hash"]
        if not isinstance(value, str) or not _PASSWORD_HASH.match(value):
            raise BadInput("must be a crypt(3) hash such as $6$salt$hash (never a plain password)",
                           location="root_password_hash")
        out["root_password_hash"] = value
    keys = data.get("ssh_keys") or []
    if not isinstance(keys, list):
        raise BadInput("must be a list of public keys", location="ssh_keys")
    for i, key in enumerate(keys):
        if not isinstance(key, str) or not _SSH_KEY.match(key):
            raise BadInput("not a single-line OpenSSH public key", location=f"ssh_keys[{i}]")
    out["ssh_keys"] = list(keys)
    args = data.get("kernel_args") or []
    if not isinstance(args, list):
        raise BadInput("must be a list of kernel arguments (one per item)", location="kernel_args")
    out["kernel_args"] = [check_kernel_arg(arg, f"kernel_args[{i}]") for i, arg in enumerate(args)]
    kickstart = data.get("kickstart")
    if kickstart is not None:
        if not isinstance(kickstart, str) or len(kickstart) > MAX_KICKSTART or "\x00" in kickstart:
            raise BadInput(f"must be kickstart text (at most {MAX_KICKSTART} bytes, no NUL)", location="kickstart")
        out["kickstart"] = kickstart
    if data.get("ssh_address") is not None:
        value = data["ssh_address"]
        match = _SSH_ADDRESS.match(value) if isinstance(value, str) else None
        if not match or not 0 < int(match["port"]) < 65536:
            raise BadInput("must be HOST:PORT", location="ssh_address")
        out["ssh_address"] = value
    return out


def check_event(data: Any) -> dict:
    _check_fields(data, EVENT_FIELDS, "")
    phase = data.get("phase")
    if phase not in EVENT_PHASES:
        raise BadInput(f"must be one of {', '.join(EVENT_PHASES)}", location="phase")
    message = data.get("message", "")
    if not isinstance(message, str) or len(message) > 4096:
        raise BadInput("must be a string of at most 4096 characters", location="message")
    out = {"phase": phase, "message": message}
    for key in ("bytes_done", "bytes_total"):
        value = data.get(key)
        if value is not None and (isinstance(value, bool) or not isinstance(value, int) or value < 0):
            raise BadInput("must be a non-negative integer", location=key)
        out[key] = value
    out["time"] = _check_time(data)
    return out


def check_result(data: Any) -> dict:
    _check_fields(data, RESULT_FIELDS, "")
    if not isinstance(data.get("success"), bool):
        raise BadInput("is required and must be true or false", location="success")
    phase = data.get("phase")
    if phase not in EVENT_PHASES:
        raise BadInput(f"must be one of {', '.join(EVENT_PHASES)}", location="phase")
    error = data.get("error")
    if error is not None and not isinstance(error, str):
        raise BadInput("must be a string or null", location="error")
    if not data["success"] and not error:
        raise BadInput("is required when success is false", location="error")
    log = data.get("log", "")
    if not isinstance(log, str) or len(log) > MAX_LOG:
        raise BadInput(f"must be a string of at most {MAX_LOG} characters", location="log")
    root_uuid = data.get("root_uuid")
    if root_uuid is not None and (not isinstance(root_uuid, str) or not re.fullmatch(r"[0-9A-Fa-f-]{4,64}", root_uuid)):
        raise BadInput("must be a filesystem UUID", location="root_uuid")
    if data["success"] and not root_uuid:
        raise BadInput("is required when success is true", location="root_uuid")
    return {"success": data["success"], "phase": phase, "error": error, "log": log, "root_uuid": root_uuid,
            "time": _check_time(data)}


def _check_time(data: dict) -> float | None:
    value = data.get("time")
    if value is not None and (isinstance(value, bool) or not isinstance(value, (int, float))):
        raise BadInput("must be a number (seconds since the epoch)", location="time")
    return value
