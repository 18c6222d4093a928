"""Deploy spec: what a kickstart says about one machine's disks, bootloader, network and keys.

Plain data, filled by the kickstart front end (tarball_builder.kickstart) from `ignoredisk`,
`clearpart`, `zerombr`, `reqpart`, `autopart`, `part`, `volgroup`, `logvol`, `raid`, `btrfs`, `%pre`,
`bootloader`, `network`, `sshkey` and `%addon org_metalstream_deploy` (Secure Boot), and carried to the
agent inside the deploy plan as its `storage` (`to_dict` / `from_dict`).
Sizes are MiB, as in kickstart. `line` fields give the kickstart line a value came from.

Storage stacks are named as kickstart names them: a `part` whose mount point is a member name (`pv.01`,
`raid.01`, `btrfs.01`) is a member of the volume group, array or btrfs volume that lists that name; a
`raid` whose mount point is a member name (`pv.02`) is itself such a member. Encryption is asked per
device (`encrypted`); its passphrase is never here: it is a secret of the deploy plan.
"""
from __future__ import annotations

import re
from dataclasses import MISSING, asdict, dataclass, field, fields, is_dataclass
from functools import partial
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
    encrypted: bool = False
    luks_version: str | None = None  # luks1 | luks2 (default luks2)
    cipher: str | None = None
    line: int | None = None

    @property
    def member(self) -> bool:
        """A partition that is a member of an LVM volume group, RAID array or btrfs volume."""
        return self.mountpoint.startswith(MEMBER_PREFIXES)


MEMBER_PREFIXES = ("pv.", "raid.", "btrfs.")


@dataclass
class VolGroupSpec:
    name: str
    pvs: list[str]  # member names: `part pv.01`, `raid pv.02`
    pesize_kib: int | None = None
    reserved_space_mib: int | None = None
    reserved_percent: int | None = None
    line: int | None = None


@dataclass
class LogVolSpec:
    mountpoint: str  # "/", "/home", "swap", or "none" (a thin pool)
    name: str
    vgname: str
    fstype: str | None = None
    size_mib: int | None = None
    grow: bool = False
    max_size_mib: int | None = None
    percent: int | None = None  # of the volume group's free space
    thinpool: bool = False
    thin: bool = False  # a thin volume in the pool `poolname`
    poolname: str | None = None
    chunksize_kib: int | None = None
    label: str | None = None
    fsoptions: str | None = None
    recommended: bool = False
    hibernation: bool = False
    encrypted: bool = False
    luks_version: str | None = None
    cipher: str | None = None
    line: int | None = None


@dataclass
class RaidSpec:
    mountpoint: str  # "/", "/boot", "/boot/efi", "swap", or a member name (pv.02, btrfs.02)
    device: str  # the array's name: /dev/md/<device>
    level: str  # raid0 | raid1 | raid4 | raid5 | raid6 | raid10
    members: list[str]  # `part raid.NN` names
    spares: int = 0
    fstype: str | None = None
    chunksize_kib: int | None = None
    label: str | None = None
    fsoptions: str | None = None
    encrypted: bool = False
    luks_version: str | None = None
    cipher: str | None = None
    line: int | None = None


@dataclass
class BtrfsSpec:
    """`btrfs MOUNT --data=... --label=... btrfs.01 ...` (a volume) or `btrfs MOUNT --subvol --name=NAME VOLUME`
    (a subvolume of the volume whose label or mount point is VOLUME)."""

    mountpoint: str  # "/", "/home", or "none" (a volume mounted only through its subvolumes)
    subvol: bool = False
    name: str | None = None  # subvolume name
    volume: str | None = None  # subvolumes: the parent volume's label or mount point
    members: list[str] = field(default_factory=list)  # volumes: `part btrfs.NN` / `raid btrfs.NN` names
    data_level: str | None = None  # single | raid0 | raid1 | raid10 | ...
    metadata_level: str | None = None
    label: str | None = None
    fsoptions: str | None = None
    line: int | None = None


@dataclass
class PreScript:
    """A `%pre` section: run in the installer before the disks are chosen."""

    script: str = field(metadata={"check": lambda value, location: script_text(value, location)})
    interpreter: str = "/bin/sh"
    erroronfail: bool = False
    log: str | None = None
    line: int | None = None


@dataclass
class DeferredInclude:
    """`%include PATH` of a file a `%pre` writes: the storage commands in it are read on the machine, at
    deploy time, after the `%pre` sections ran."""

    path: str
    line: int | None = None


@dataclass
class AutoPart:
    fstype: str | None = None
    scheme: str = "plain"  # plain | lvm | thinp | btrfs (anaconda's layouts)
    nohome: bool = True
    noswap: bool = True
    noboot: bool = False  # no separate /boot even with `reqpart --add-boot`
    hibernation: bool = False  # swap sized for hibernation from the machine's memory
    encrypted: bool = False
    luks_version: str | None = None
    cipher: str | None = None
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
    volgroups: list[VolGroupSpec] = field(default_factory=list)
    logvols: list[LogVolSpec] = field(default_factory=list)
    raids: list[RaidSpec] = field(default_factory=list)
    btrfs: list[BtrfsSpec] = field(default_factory=list)
    pre_scripts: list[PreScript] = field(default_factory=list)
    deferred_includes: list[DeferredInclude] = field(default_factory=list)
    bootloader: Bootloader | None = None
    network: list[NetworkDevice] = field(default_factory=list)
    hostname: str | None = None
    ssh_keys: list[SshKey] = field(default_factory=list)
    secure_boot: SecureBoot | None = None

    def to_dict(self) -> dict[str, Any]:
        """The spec as JSON; `secure_boot` and the storage stacks only when given, so a spec without them is
        what older agents read."""
        document = asdict(self)
        if self.secure_boot is None:
            del document["secure_boot"]
        for name in STACK_FIELDS:
            if not document[name]:
                del document[name]
        for part in [*document["partitions"], *([document["autopart"]] if document["autopart"] else [])]:
            for name in ENCRYPTION_FIELDS:
                if not part[name]:
                    del part[name]
        return document

    @property
    def stacked(self) -> bool:
        """The layout uses LVM, RAID, btrfs or encryption (anything beyond plain partitions)."""
        auto = self.autopart
        return bool(self.volgroups or self.logvols or self.raids or self.btrfs
                    or any(p.encrypted or p.member for p in self.partitions)
                    or (auto and (auto.scheme != "plain" or auto.encrypted)))

    @classmethod
    def from_dict(cls, data: Any, location: str = "storage") -> "DeploySpec":
        return from_dict(cls, data, location)


ENCRYPTION_FIELDS = ("encrypted", "luks_version", "cipher")
STACK_FIELDS = ("volgroups", "logvols", "raids", "btrfs", "pre_scripts", "deferred_includes")


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
    checks = {f.name: f.metadata.get("check") for f in fields(cls)}
    return cls(**{name: (checks[name] or partial(_convert, hints[name]))(value, rules.field(location, name))
                  for name, value in data.items()})


MAX_SCRIPT = 1024 * 1024
_SCRIPT_CONTROL = re.compile(r"[\x00-\x08\x0b-\x1f\x7f]")


def script_text(value: Any, location: str) -> str:
    """A script body: text of lines (newlines and tabs allowed, no other control character), at most 1 MiB."""
    if not isinstance(value, str):
        raise BadInput("expected a string", location=location)
    if _SCRIPT_CONTROL.search(value.replace("\r\n", "\n")):
        raise BadInput("contains a control character other than newline and tab", location=location)
    if len(value) > MAX_SCRIPT:
        raise BadInput(f"longer than {MAX_SCRIPT} characters", location=location)
    return value


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
