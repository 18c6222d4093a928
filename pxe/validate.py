"""Validation of a deployment request (POST /api/v1/deployments). Pure: no Flask, no database.

Every field goes through the shared rules of metalstream.contracts, so the API accepts and refuses
exactly what `metalstream install` and the agent's plan reader do. Each failure raises BadInput
whose `location` names the JSON field, so the API answers with a 400 that says what is wrong.
"""
from __future__ import annotations

import re
from typing import Any

from metalstream.contracts import rules, secureboot
from metalstream.contracts.network import check_network, read_network_device
from metalstream.contracts.plan import REBOOT_METHODS, DiskHints, read_ssh_keys
from metalstream.errors import BadInput

from . import bootpath
from .plan import secure_boot_requested

DEPLOYMENT_FIELDS = (
    "mac", "image", "image_sha256", "hostname", "disk_hints", "boot_mode", "root_password_hash",
    "ssh_keys", "kernel_args", "kickstart", "ssh_address", "secure_boot", "network",
    "reboot_method", "machine", "boot_path",
)
MAX_NETWORK_DEVICES = 64
MAX_KICKSTART = 256 * 1024
MAX_KERNEL_ARGS = 64
_SSH_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})\Z")


def check_deployment(data: Any) -> dict:
    """Validate a POST /api/v1/deployments body; return the normalised request (kickstart still unparsed)."""
    rules.expect_object(data, "", DEPLOYMENT_FIELDS)
    given = lambda key: data.get(key) is not None  # noqa: E731
    if "image" not in data:
        raise BadInput("is required", location="image")
    if "mac" not in data and "machine" not in data:
        raise BadInput("is required (or name a registered machine with `machine`)", location="mac")
    kernel_args = rules.expect_list(data.get("kernel_args") or [], "kernel_args", max_items=MAX_KERNEL_ARGS)
    return {
        "mac": rules.mac(data["mac"], "mac") if "mac" in data else None,
        "image": rules.image_name(data["image"], "image"),
        "image_sha256": rules.sha256(data["image_sha256"], "image_sha256") if given("image_sha256") else None,
        "hostname": rules.hostname(data["hostname"], "hostname") if given("hostname") else None,
        "disk_hints": DiskHints.from_json(data.get("disk_hints")).to_json(),
        "boot_mode": rules.boot_mode(data.get("boot_mode", "both"), "boot_mode"),
        "root_password_hash": (rules.password_hash(data["root_password_hash"], "root_password_hash")
                               if given("root_password_hash") else None),
        "ssh_keys": read_ssh_keys(data.get("ssh_keys"), "ssh_keys"),
        "kernel_args": [rules.kernel_arg(arg, f"kernel_args[{i}]") for i, arg in enumerate(kernel_args)],
        "kickstart": _kickstart(data["kickstart"]) if given("kickstart") else None,
        "ssh_address": _ssh_address(data["ssh_address"]) if given("ssh_address") else None,
        # only when given (true or false, and false overrides the kickstart's): a request without it keeps
        # the digest it had before the field existed
        **({"secure_boot": rules.boolean(data["secure_boot"], "secure_boot")} if given("secure_boot") else {}),
        # likewise: this host's network devices (the plan's `network`), winning over the kickstart's
        **({"network": _network(data["network"])} if given("network") else {}),
        # likewise: firmware | kexec, else the service's default (`metalstream serve --reboot-method`)
        **({"reboot_method": rules.one_of(data["reboot_method"], REBOOT_METHODS, "reboot_method")}
           if given("reboot_method") else {}),
        # likewise: the registered machine (id or name) it installs; without `mac`, the machine's only MAC
        **({"machine": _machine_ref(data["machine"])} if "machine" in data else {}),
        # likewise: auto | ipxe | shim-grub, the network boot path a UEFI client is sent on (pxe/bootpath.py)
        **({"boot_path": rules.one_of(data["boot_path"], bootpath.BOOT_PATH_CHOICES, "boot_path")}
           if given("boot_path") else {}),
    }


def check_secure_boot(request: dict, storage: dict | None, image: dict) -> None:
    """A deployment that asks for Secure Boot (its `secure_boot`, else its kickstart's deploy add-on) needs a
    UEFI boot mode and an image with the distribution's signed shim, grub and kernel; else BadInput
    located at the field that asked (`secure_boot`, or `kickstart:LINE`)."""
    if not secure_boot_requested(request, storage):
        return
    from_kickstart = (storage or {}).get("secure_boot") or {}
    if "secure_boot" in request:
        location = "secure_boot"
    else:
        location = f"kickstart:{from_kickstart['line']}" if from_kickstart.get("line") else "kickstart"
    secureboot.check_boot_mode(request["boot_mode"], location)
    refusal = secureboot.image_refusal(image["name"], image["manifest"])
    if refusal:
        raise BadInput(refusal, location=location)


def check_boot_path(request: dict, storage: dict | None) -> None:
    """A forced boot path the deployment cannot take (shim-grub on BIOS, iPXE under Secure Boot): BadInput at
    `boot_path`."""
    refusal = bootpath.refusal(request.get("boot_path", "auto"), request["boot_mode"],
                               secure_boot_requested(request, storage))
    if refusal:
        raise BadInput(refusal, location="boot_path")


def _network(value: Any) -> list[dict]:
    """The host's network devices (metalstream.contracts.network), refused at the field (`network[1].vlan_id`)."""
    items = rules.expect_list(value, "network", max_items=MAX_NETWORK_DEVICES)
    devices = check_network([read_network_device(item, f"network[{i}]") for i, item in enumerate(items)], "network")
    return [device.to_json() for device in devices]


def _machine_ref(value: Any) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isascii() or not value.isprintable():
        raise BadInput("must be a machine's id or name", location="machine")
    return value.lower()


def _kickstart(value: Any) -> str:
    if not isinstance(value, str) or len(value) > MAX_KICKSTART or "\x00" in value:
        raise BadInput(f"must be kickstart text (at most {MAX_KICKSTART} bytes, no NUL)", location="kickstart")
    return value


def _ssh_address(value: Any) -> str:
    match = _SSH_ADDRESS.match(value) if isinstance(value, str) else None
    if not match or not 0 < int(match["port"]) < 65536:
        raise BadInput("must be HOST:PORT", location="ssh_address")
    return value
