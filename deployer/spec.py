"""Deploy spec: what a kickstart says about one machine's disk, bootloader and network.

Plain data, filled by the kickstart front end (tarball_builder.kickstart) from `ignoredisk`,
`clearpart`, `zerombr`, `reqpart`, `autopart`, `part`, `bootloader`, `network` and `sshkey`,
and carried to the agent inside the deploy plan (`to_dict` / `from_dict`). It lives in the
deployer package because the agent, which ships alone in the installer environment, reads it.
Sizes are MiB, as in kickstart. `line` fields give the kickstart line a value came from.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field, fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints


@dataclass
class IgnoreDisk:
    only_use: list[str] = field(default_factory=list)
    ignore: list[str] = field(default_factory=list)
    line: int | None = None


@dataclass
class ClearPart:
    mode: str = "none"  # none | all | linux | list
    drives: list[str] = field(default_factory=list)
    partitions: list[str] = field(default_factory=list)  # for mode "list"
    initlabel: bool = False
    disklabel: str = "gpt"
    line: int | None = None


@dataclass
class PartSpec:
    mountpoint: str  # "/", "/boot", "/boot/efi", "swap", "biosboot", "/srv", ...
    fstype: str | None = None  # ext4 | xfs | vfat | efi | swap | biosboot | None (default)
    size_mib: int | None = None
    grow: bool = False
    max_size_mib: int | None = None
    ondisk: str | None = None
    label: str | None = None
    fsoptions: str | None = None
    line: int | None = None


@dataclass
class AutoPart:
    fstype: str | None = None
    scheme: str = "plain"  # only plain partitions are supported; lvm/btrfs are reported as warnings
    nohome: bool = True
    noswap: bool = True
    line: int | None = None


@dataclass
class Bootloader:
    location: str = "mbr"  # mbr | partition | none
    append: str = ""  # extra kernel arguments
    timeout: int | None = None
    boot_drive: str | None = None
    line: int | None = None


@dataclass
class NetworkDevice:
    device: str | None = None  # interface name, MAC, "link", "bootif" or None = all wired NICs
    bootproto: str = "dhcp"  # dhcp | static
    ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    nameservers: list[str] = field(default_factory=list)
    ipv6: str | None = None
    mtu: int | None = None
    onboot: bool = True
    hostname: str | None = None
    line: int | None = None


@dataclass
class SshKey:
    user: str
    key: str
    line: int | None = None


@dataclass
class DeploySpec:
    ignoredisk: IgnoreDisk | None = None
    clearpart: ClearPart | None = None
    zerombr: bool = False
    reqpart: bool = False
    reqpart_add_boot: bool = False
    autopart: AutoPart | None = None
    partitions: list[PartSpec] = field(default_factory=list)
    bootloader: Bootloader | None = None
    network: list[NetworkDevice] = field(default_factory=list)
    hostname: str | None = None
    ssh_keys: list[SshKey] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> "DeploySpec":
        return from_dict(cls, data)


def from_dict(cls: type, data: Any) -> Any:
    """Build dataclass `cls` from plain JSON data, recursing into nested dataclasses and lists.

    Unknown keys raise KeyError naming the key, so a misspelt field is never silently dropped.
    """
    if data is None:
        return None
    hints = get_type_hints(cls)
    names = {f.name for f in fields(cls)}
    unknown = set(data) - names
    if unknown:
        raise KeyError(f"unknown field(s) for {cls.__name__}: {', '.join(sorted(unknown))}")
    kwargs = {}
    for name, value in data.items():
        kwargs[name] = _convert(hints[name], value)
    return cls(**kwargs)


def _convert(hint: Any, value: Any) -> Any:
    if value is None:
        return None
    origin = get_origin(hint)
    args = [a for a in get_args(hint) if a is not type(None)]
    if origin is list and args and is_dataclass(args[0]):
        return [from_dict(args[0], item) for item in value]
    if is_dataclass(hint):
        return from_dict(hint, value)
    if args and len(args) == 1 and is_dataclass(args[0]):  # Optional[Dataclass]
        return from_dict(args[0], value)
    return value
