"""POST /api/v1/deployments, the filters of GET /api/v1/deployments, and the deployment answers."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, BeforeValidator, Field

from metalstream.contracts import rules
from metalstream.contracts.plan import REBOOT_METHODS, DiskHints, read_disks, read_passphrase, read_ssh_keys
from metalstream.errors import BadInput

from ..bootpath import BOOT_PATH_CHOICES

from .base import Query, Request, choice, fields_of, model_of, optional, require, rule, shape
from .common import Number
from .network import NetworkDeviceModel, as_json, read_network

MAX_KICKSTART = 256 * 1024
MAX_KERNEL_ARGS = 64
_SSH_ADDRESS = re.compile(r"(?P<host>[A-Za-z0-9.-]{1,253}|\[[0-9A-Fa-f:.]+\]):(?P<port>[0-9]{1,5})\Z")


def _machine_ref(value: Any, location: str) -> str:
    if not isinstance(value, str) or not 0 < len(value) <= 64 or not value.isascii() or not value.isprintable():
        raise BadInput("must be a machine's id or name", location=location)
    return value.lower()


def _kickstart(value: Any, location: str) -> str:
    if not isinstance(value, str) or len(value) > MAX_KICKSTART or "\x00" in value:
        raise BadInput(f"must be kickstart text (at most {MAX_KICKSTART} bytes, no NUL)", location=location)
    return value


def _ssh_address(value: Any, location: str) -> str:
    match = _SSH_ADDRESS.match(value) if isinstance(value, str) else None
    if not match or not 0 < int(match["port"]) < 65536:
        raise BadInput("must be HOST:PORT", location=location)
    return value


def _kernel_args(value: Any, location: str) -> list:
    return rules.expect_list(value or [], location, max_items=MAX_KERNEL_ARGS)


DiskHintsInput = model_of(DiskHints, "Which disk to install to (all optional; docs/agent.md).",
                          min_size_gib=(Number | None, None), max_size_gib=(Number | None, None))


def _disks(value: Any, location: str) -> dict:
    return {name: hints.to_json() for name, hints in read_disks(value, location).items()}


class DeploymentCreate(Request):
    """A deployment: which machine (`mac`, or a registered `machine`), which image, and how."""

    mac: Annotated[str, rule(rules.mac)] = Field(
        None, examples=["52:54:00:12:34:56"],
        description="the MAC that network-boots; with `machine`, one of its MACs (default: its only one)")
    image: Annotated[str, rule(rules.image_name)]
    image_sha256: Annotated[str | None, optional(rules.sha256)] = Field(None, pattern="^[0-9a-f]{64}$")
    hostname: Annotated[str | None, optional(rules.hostname)] = None
    disk_hints: Annotated[DiskHintsInput | None, rule(
        lambda value, at: DiskHints.from_json(value, at).to_json())] = None
    boot_mode: Annotated[Literal[rules.BOOT_MODES], rule(rules.boot_mode)] = "both"
    root_password_hash: Annotated[str | None, optional(rules.password_hash)] = None
    ssh_keys: Annotated[list[str] | None, rule(read_ssh_keys)] = []
    kernel_args: Annotated[list[Annotated[str, rule(rules.kernel_arg)]] | None, rule(_kernel_args)] = \
        Field([], max_length=MAX_KERNEL_ARGS, description="null: none")
    kickstart: Annotated[str | None, optional(_kickstart)] = None
    ssh_address: Annotated[str | None, optional(_ssh_address)] = Field(None, examples=["127.0.0.1:2222"])
    secure_boot: Annotated[bool | None, optional(rules.boolean)] = Field(
        None, description="boot the image's signed shim, grub and kernel with Secure Boot on (400 when the image "
                          "lacks them or boot_mode is bios); when given, true or false overrides the kickstart's "
                          "secure_boot")
    network: Annotated[list[NetworkDeviceModel] | None, BeforeValidator(read_network)] = Field(
        None, description="this host's network devices (docs/agent.md); when given, they replace the kickstart's "
                          "network lines")
    reboot_method: Annotated[Literal[REBOOT_METHODS] | None, choice(REBOOT_METHODS, nullable=True)] = \
        Field(None, description="how the agent boots the installed system: a firmware reboot, or kexec into its "
                                "kernel (a firmware reboot where kexec is not possible; an event says which). "
                                "Default: `metalstream serve --reboot-method`")
    machine: Annotated[str, rule(_machine_ref)] = Field(
        None, description="a registered machine's id or name (/api/v1/machines)")
    boot_path: Annotated[Literal[BOOT_PATH_CHOICES] | None, choice(BOOT_PATH_CHOICES, nullable=True)] = Field(
        None, description="the network boot path a UEFI client is sent on: auto (the loader DHCP named), ipxe or "
                          "shim-grub (400 for shim-grub with boot_mode bios, and for ipxe with Secure Boot). "
                          "Default: `metalstream serve --boot-path`")
    disks: Annotated[dict[str, DiskHintsInput] | None, optional(_disks)] = Field(
        None, description="hints for each disk the kickstart's storage section names (`part --ondisk=NAME`, "
                          "`clearpart --drives=NAME`, `ignoredisk`, `bootloader --boot-drive`), by that name; 400 for "
                          "a name the kickstart does not use")
    encryption_passphrase: Annotated[str | None, optional(read_passphrase)] = Field(
        None, json_schema_extra={"writeOnly": True},
        description="the LUKS passphrase of the kickstart's `--encrypted` devices: required when the kickstart "
                    "encrypts a device, refused when it encrypts nothing. Stored encrypted, given only to the "
                    "deployment's agent in its plan, never answered (`encryption_passphrase_set` says whether one "
                    "is held)")

    @shape
    def _shape(cls, data: Any) -> Any:
        fields_of(data, cls)
        require(data, "image")
        if "mac" not in data and "machine" not in data:
            raise BadInput("is required (or name a registered machine with `machine`)", location="mac")
        _kernel_args(data.get("kernel_args"), "kernel_args")  # checked before the other fields, as it always was
        return data

    def request(self) -> dict:
        """The normalised request as stored (kickstart still unparsed); fields added later only when given. Never
        the passphrase: it is stored apart, sealed (pxe.deployments.create)."""
        optional_fields = {"secure_boot": self.secure_boot, "reboot_method": self.reboot_method,
                           "machine": self.machine, "boot_path": self.boot_path,
                           "network": None if self.network is None else as_json(self.network),
                           "disks": None if self.disks is None else {
                               name: hints.model_dump() for name, hints in self.disks.items()}}
        return {
            "mac": self.mac, "image": self.image, "image_sha256": self.image_sha256, "hostname": self.hostname,
            "disk_hints": (self.disk_hints.model_dump() if self.disk_hints else DiskHints().to_json()),
            "boot_mode": self.boot_mode, "root_password_hash": self.root_password_hash, "ssh_keys": self.ssh_keys,
            "kernel_args": self.kernel_args, "kickstart": self.kickstart, "ssh_address": self.ssh_address,
            **{key: value for key, value in optional_fields.items() if value is not None},
        }


class DeploymentFilters(Query):
    """GET /api/v1/deployments: each filter given narrows the list."""

    state: Annotated[Literal[rules.STATES], choice(rules.STATES)] = Field(
        None, description="only deployments in this state")
    mac: Annotated[str, rule(rules.mac)] = Field(
        None, examples=["52:54:00:12:34:56"], description="only deployments that network-boot this MAC")


class FirstStage(BaseModel):
    loader: str
    client: str
    mac: str | None
    at: float


class SecureBootState(BaseModel):
    requested: bool = Field(description="asked for by the request or its kickstart")
    installer: bool | None = Field(description="the installer booted with Secure Boot on (reported by the agent)")
    target: bool | None = Field(description="the installed system booted with Secure Boot on (the activation check)")


class Deployment(BaseModel):
    """A deployment: its state, progress and the request as sent (secrets replaced by their sha256)."""

    id: str
    mac: str
    image: str
    hostname: str | None = None
    state: Literal[rules.STATES]
    phase: str | None = None
    message: str | None = None
    error: str | None = None
    bytes_done: int | None = None
    bytes_total: int | None = None
    eta_seconds: float | None = None
    created_at: float
    updated_at: float
    last_seen_at: float | None = None
    root_uuid: str | None = None
    check_message: str | None = None
    request: dict = Field(description="the request as sent, secrets replaced by their sha256")
    boot_path: str | None = Field(description="how the machine reached the installer: ipxe, grub-http, "
                                              "shim-grub or shim-grub-http (null until its boot script is served)")
    first_stage: FirstStage | None = Field(description="the last first-stage loader it fetched over TFTP")
    secure_boot: SecureBootState
    events: list[dict] | None = None
    machine: str | None = Field(None, description="the id of the machine it installs (null: a MAC of no "
                                                  "registered machine)")
    encryption_passphrase_set: bool = Field(description="a LUKS passphrase is held for its agent (never answered)")


class DeploymentList(BaseModel):
    deployments: list[Deployment]
