"""Deploy spec: what a kickstart says about one machine's disks, bootloader, network and keys.

Plain data, filled by the kickstart front end (tarball_builder.kickstart) from `ignoredisk`,
`clearpart`, `zerombr`, `reqpart`, `autopart`, `part`, `bootloader`, `network`, `sshkey` and
`%addon org_metalstream_deploy` (Secure Boot), and carried to the agent inside the deploy plan as
its `storage` (`to_dict` / `from_dict`).
Sizes are MiB, as in kickstart. `line` fields give the kickstart line a value came from.
"""
from __future__ import annotations

from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from typing import Any, get_args, get_origin, get_type_hints

from ..errors import BadInput
from . import rules
from .network import NetworkDevice  # noqa: F401 (defined in .network; imported from here too)


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
    recommended: bool = False  # swap sized from the machine's memory (part swap --recommended), size_mib unused
    hibernation: bool = False  # swap sized for hibernation: the recommended size plus the memory
    line: int | None = None


@dataclass
class AutoPart:
    fstype: str | None = None
    scheme: str = "plain"  # only plain partitions are supported; lvm/btrfs/thinp are errors at lint
    nohome: bool = True
    noswap: bool = True
    noboot: bool = False  # no separate /boot even with `reqpart --add-boot`
    hibernation: bool = False  # swap sized for hibernation from the machine's memory
    line: int | None = None


@dataclass
class Bootloader:
    location: str = "mbr"  # mbr | partition | none
    append: str = ""  # extra kernel arguments
    timeout: int | None = None
    boot_drive: str | None = None
    line: int | None = None


@dataclass
class SshKey:
    user: str
    key: str
    line: int | None = None


@dataclass
class SecureBoot:
    """`secure_boot=true` in `%addon org_metalstream_deploy`: the machine boots the image through the
    distribution's signed shim, grub and kernel, with Secure Boot on."""

    required: bool = True
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
    secure_boot: SecureBoot | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON; `secure_boot` only when given, so a spec without it is what older agents read."""
        document = asdict(self)
        if self.secure_boot is None:
            del document["secure_boot"]
        return document

    @classmethod
    def from_dict(cls, data: Any, location: str = "storage") -> "DeploySpec":
        return from_dict(cls, data, location)


def from_dict(cls: type, data: Any, location: str) -> Any:
    """Build dataclass `cls` from plain JSON data, checking every value against its annotation.

    Nested dataclasses and lists of them are built recursively; an unknown key, a missing required
    one or a value of the wrong type raises BadInput naming its place (`storage.partitions[0].size_mib`).
    """
    if data is None:
        return None
    names = tuple(f.name for f in fields(cls))
    rules.expect_object(data, location, names)
    hints = get_type_hints(cls)
    required = [f.name for f in fields(cls) if f.default is MISSING and f.default_factory is MISSING]
    for name in required:
        if name not in data:
            raise BadInput("is required", location=rules.field(location, name))
    return cls(**{name: _convert(hints[name], value, rules.field(location, name)) for name, value in data.items()})


def _convert(hint: Any, value: Any, location: str) -> Any:
    optional = type(None) in get_args(hint)
    if value is None:
        if optional:
            return None
        raise BadInput("must not be null", location=location)
    kinds = [a for a in get_args(hint) if a is not type(None)] if optional else [hint]
    kind = kinds[0]
    if is_dataclass(kind):
        return from_dict(kind, value, location)
    if get_origin(kind) is list:
        (item,) = get_args(kind)
        return [_convert(item, v, f"{location}[{i}]") for i, v in enumerate(rules.expect_list(value, location))]
    if kind is bool:
        return rules.boolean(value, location)
    if kind is int:
        return rules.integer(value, location)
    if kind is str:
        return rules.text(value, location)
    raise TypeError(f"{location}: no rule for {kind!r}")
