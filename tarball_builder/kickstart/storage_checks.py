"""How a kickstart's storage lines fit together: member names, RAID levels, volume groups and their logical
volumes, btrfs subvolumes, mount points, what /boot may sit on, and sizes that cannot fit. Each problem is an
error at the line that makes it, so a layout that lints clean is one the agent can build as written.

Names another line must define (members, volume groups, thin pools, btrfs volumes) are only checked when all
the storage text is here: a `%include` deferred to deploy time may define them.
"""
from __future__ import annotations

from dataclasses import dataclass, field

from metalstream.contracts.deployspec import (
    AutoPart,
    BtrfsSpec,
    IgnoreDisk,
    LogVolSpec,
    PartSpec,
    RaidSpec,
    VolGroupSpec,
)

from .diagnostics import Findings

# Anaconda's (blivet's) smallest number of active members for each level.
RAID_MIN_MEMBERS = {"raid0": 2, "raid1": 2, "raid4": 3, "raid5": 3, "raid6": 4, "raid10": 4}
BTRFS_MIN_MEMBERS = {"single": 1, "raid0": 2, "raid1": 2, "raid10": 4}  # the levels pykickstart accepts
BOOT_MOUNTS = ("/boot", "/boot/efi", "biosboot")
GRUB_READS = "grub here reads /boot from a plain partition or an md RAID1 of ext4/xfs"
_USER = {"pv.": "volgroup", "raid.": "raid", "btrfs.": "btrfs"}


@dataclass
class Layout:
    """The storage lines of one kickstart as (line of the expanded text, spec element) pairs."""

    parts: list[tuple[int, PartSpec]] = field(default_factory=list)
    volgroups: list[tuple[int, VolGroupSpec]] = field(default_factory=list)
    logvols: list[tuple[int, LogVolSpec]] = field(default_factory=list)
    raids: list[tuple[int, RaidSpec]] = field(default_factory=list)
    btrfs: list[tuple[int, BtrfsSpec]] = field(default_factory=list)
    autopart: tuple[int, AutoPart] | None = None
    ignoredisk: IgnoreDisk | None = None
    complete: bool = True  # False: a deferred or missing %include may hold more storage lines


def check_storage(layout: Layout, findings: Findings) -> None:
    _check_members(layout, findings)
    _check_raid_levels(layout, findings)
    _check_btrfs_levels(layout, findings)
    _check_volume_groups(layout, findings)
    _check_subvolumes(layout, findings)
    _check_mountpoints(layout, findings)
    _check_boot(layout, findings)
    _check_vg_sizes(layout, findings)
    _check_disks(layout, findings)
    _note_encryption(layout, findings)


def _prefix(name: str) -> str:
    return next((p for p in _USER if name.startswith(p)), "")


def _check_members(layout: Layout, findings: Findings) -> None:
    """Each member name is defined once (`part NAME` or `raid NAME`), used by exactly one volgroup, raid or
    btrfs volume of its kind, and every name used is defined."""
    defined: dict[str, tuple[int, str]] = {}
    definitions = [(line, f"part {p.mountpoint}", p.mountpoint) for line, p in layout.parts if p.member]
    definitions += [(line, f"raid {r.mountpoint}", r.mountpoint) for line, r in layout.raids if r.mountpoint.startswith(
        tuple(_USER))]
    for line, what, name in sorted(definitions):
        if name in defined:
            findings.error(line, f"{what}: {name} is already defined at {findings.place(defined[name][0])}")
            continue
        if what.startswith("raid") and name.startswith("raid."):
            findings.error(line, f"{what}: an array cannot be a member of another array (nested RAID)")
        defined[name] = (line, what)
    uses = [(line, f"volgroup {g.name}", "pv.", g.pvs) for line, g in layout.volgroups]
    uses += [(line, f"raid {r.mountpoint}", "raid.", r.members) for line, r in layout.raids]
    uses += [(line, f"btrfs {b.mountpoint}", "btrfs.", b.members) for line, b in layout.btrfs if not b.subvol]
    used: dict[str, int] = {}
    for line, what, prefix, names in sorted(uses, key=lambda use: use[0]):
        foreign = [n for n in names if not n.startswith(prefix)]
        again = [n for n in names if n.startswith(prefix) and n in used]
        undefined = [n for n in names if n.startswith(prefix) and n not in used and n not in defined]
        if foreign:
            findings.error(line, f"{what}: {', '.join(foreign)}: not {_USER[prefix]} members (those are named "
                                 f"{prefix}NN)")
        if again:
            places = ", ".join(f"{n} at {findings.place(used[n])}" for n in again)
            findings.error(line, f"{what}: already used: {places}")
        if undefined and layout.complete:
            findings.error(line, f"{what}: not defined: {', '.join(undefined)} (add `part NAME ...`"
                                 + (" or `raid NAME ...`)" if prefix != "raid." else ")"))
        for name in names:
            used.setdefault(name, line)
    if layout.complete:
        for name, (line, what) in defined.items():
            if name not in used:
                findings.error(line, f"{what}: no {_USER[_prefix(name)]} uses {name}")


def _check_raid_levels(layout: Layout, findings: Findings) -> None:
    devices: dict[str, int] = {}
    for line, raid in layout.raids:
        if raid.device in devices:
            findings.error(line, f"raid {raid.mountpoint}: --device={raid.device} is already an array at "
                                 f"{findings.place(devices[raid.device])}")
        devices.setdefault(raid.device, line)
        least = RAID_MIN_MEMBERS.get(raid.level)
        if least is None or not raid.members:  # no members: an existing array, refused at its option
            continue
        active = len(raid.members) - raid.spares
        if active < least:
            spares = f" besides its {raid.spares} spare(s)" if raid.spares else ""
            findings.error(line, f"raid {raid.mountpoint}: {raid.level.upper()} needs at least {least} members"
                                 f"{spares}, {max(active, 0)} given")


def _check_btrfs_levels(layout: Layout, findings: Findings) -> None:
    for line, volume in layout.btrfs:
        for option, level in (("--data", volume.data_level), ("--metadata", volume.metadata_level)):
            least = BTRFS_MIN_MEMBERS.get(level or "single", 1)
            if not volume.subvol and len(volume.members) < least:
                findings.error(line, f"btrfs {volume.mountpoint}: {option}={level} needs at least {least} members, "
                                     f"{len(volume.members)} given")


def _check_volume_groups(layout: Layout, findings: Findings) -> None:
    groups: dict[str, int] = {}
    for line, group in layout.volgroups:
        if group.name in groups:
            findings.error(line, f"volgroup {group.name}: already defined at {findings.place(groups[group.name])}")
        groups.setdefault(group.name, line)
    names: dict[tuple[str, str], tuple[int, LogVolSpec]] = {}
    for line, lv in layout.logvols:
        what = f"logvol {lv.mountpoint}"
        if lv.vgname not in groups and layout.complete:
            findings.error(line, f"{what}: volume group {lv.vgname} is not defined: add `volgroup {lv.vgname} pv.NN`")
        key = (lv.vgname, lv.name)
        if key in names:
            findings.error(line, f"{what}: volume group {lv.vgname} already has a volume {lv.name} "
                                 f"(at {findings.place(names[key][0])})")
        names.setdefault(key, (line, lv))
    for line, lv in layout.logvols:
        if not lv.thin or not lv.poolname:
            continue
        pool = names.get((lv.vgname, lv.poolname))
        if pool is None and layout.complete or pool is not None and not pool[1].thinpool:
            findings.error(line, f"logvol {lv.mountpoint}: --poolname={lv.poolname}: volume group {lv.vgname} has no "
                                 f"thin pool of that name (`logvol none --thinpool --name={lv.poolname} ...`)")


def _check_subvolumes(layout: Layout, findings: Findings) -> None:
    volumes = [b for _line, b in layout.btrfs if not b.subvol]
    names: dict[tuple[int, str], int] = {}
    for line, sub in layout.btrfs:
        if not sub.subvol:
            continue
        parent = next((i for i, v in enumerate(volumes) if sub.volume and sub.volume in (v.label, v.mountpoint)
                       and sub.volume != "none"), None)
        if parent is None:
            if layout.complete:
                findings.error(line, f"btrfs {sub.mountpoint}: {sub.volume} is not a btrfs volume of this layout "
                                     "(name a `btrfs` volume by its --label or mount point)")
            continue
        key = (parent, sub.name or "")
        if key in names:
            findings.error(line, f"btrfs {sub.mountpoint}: the volume already has a subvolume {sub.name} (at "
                                 f"{findings.place(names[key])})")
        names.setdefault(key, line)


def _mounts(layout: Layout) -> list[tuple[int, str, str]]:
    """(line, mount point, what) of everything mounted at a path (not members, swap or thin pools)."""
    mounts = [(line, p.mountpoint, "part") for line, p in layout.parts if p.mountpoint.startswith("/")]
    mounts += [(line, v.mountpoint, "logvol") for line, v in layout.logvols if v.mountpoint.startswith("/")]
    mounts += [(line, r.mountpoint, "raid") for line, r in layout.raids if r.mountpoint.startswith("/")]
    mounts += [(line, b.mountpoint, "btrfs") for line, b in layout.btrfs if b.mountpoint.startswith("/")]
    return sorted(mounts)


def _check_mountpoints(layout: Layout, findings: Findings) -> None:
    seen: dict[str, tuple[int, str]] = {}
    for line, mountpoint, what in _mounts(layout):
        if mountpoint in seen:
            earlier_line, earlier = seen[mountpoint]
            findings.error(line, f"{what} {mountpoint}: {mountpoint} is already mounted from `{earlier}` at "
                                 f"{findings.place(earlier_line)}")
            continue
        seen[mountpoint] = (line, what)


def _root_stack(layout: Layout) -> tuple[int, str] | None:
    """(line, what) when / is on something grub here does not read /boot from."""
    for line, part in layout.parts:
        if part.mountpoint == "/" and part.encrypted:
            return line, "LUKS"
    for line, lv in layout.logvols:
        if lv.mountpoint == "/":
            return line, "LVM"
    for line, raid in layout.raids:
        if raid.mountpoint == "/" and (raid.level != "raid1" or raid.encrypted):
            return line, "LUKS" if raid.encrypted else raid.level.upper()
    for line, volume in layout.btrfs:
        if volume.mountpoint == "/":
            return line, "btrfs"
    return None


def _check_boot(layout: Layout, findings: Findings) -> None:
    for line, part in layout.parts:
        if part.mountpoint in BOOT_MOUNTS and part.encrypted:
            findings.error(line, f"part {part.mountpoint}: cannot be encrypted: {GRUB_READS}")
    for line, lv in layout.logvols:
        if lv.mountpoint in BOOT_MOUNTS:
            findings.error(line, f"logvol {lv.mountpoint}: cannot be on LVM: {GRUB_READS}")
    for line, volume in layout.btrfs:
        if volume.mountpoint in BOOT_MOUNTS:
            findings.error(line, f"btrfs {volume.mountpoint}: cannot be on btrfs: {GRUB_READS}")
    for line, raid in layout.raids:
        if raid.mountpoint in BOOT_MOUNTS and (raid.level != "raid1" or raid.encrypted):
            kind = "LUKS" if raid.encrypted else raid.level.upper()
            findings.error(line, f"raid {raid.mountpoint}: cannot be on {kind}: {GRUB_READS}")
    if layout.autopart is not None:
        line, auto = layout.autopart
        if auto.noboot and (auto.scheme != "plain" or auto.encrypted):
            findings.error(line, f"autopart --noboot: the {auto.scheme}{' encrypted' if auto.encrypted else ''} "
                                 f"layout needs its plain /boot: {GRUB_READS}")
    root = _root_stack(layout)
    has_boot = any(m == "/boot" for _line, m, _what in _mounts(layout))
    if root is not None and not has_boot and layout.complete:
        line, kind = root
        findings.error(line, f"/ is on {kind} and the layout has no /boot: add `part /boot --size=1024` "
                             f"({GRUB_READS})")


def _pv_size(name: str, layout: Layout) -> int | None:
    """The size in MiB a physical volume has at most, when every partition under it has a fixed size."""
    part = next((p for _line, p in layout.parts if p.mountpoint == name), None)
    if part is not None:
        return part.size_mib if part.size_mib and not part.grow and not part.recommended else None
    raid = next((r for _line, r in layout.raids if r.mountpoint == name), None)
    if raid is None:
        return None
    sizes = [_pv_size(m, layout) for m in raid.members]
    if not sizes or None in sizes:
        return None
    active = len(sizes) - raid.spares
    smallest = min(sizes)
    data_members = {"raid0": active, "raid1": 1, "raid4": active - 1, "raid5": active - 1, "raid6": active - 2,
                    "raid10": active // 2}.get(raid.level)
    return smallest * data_members if data_members and data_members > 0 else None


def _check_vg_sizes(layout: Layout, findings: Findings) -> None:
    """An upper bound of each volume group's size from fixed-size members (no metadata, LUKS headers or extent
    rounding taken off): logical volumes that need more cannot fit. Other cases are the planner's to check."""
    for _line, group in layout.volgroups:
        sizes = [_pv_size(pv, layout) for pv in group.pvs]
        if not sizes or None in sizes:
            continue
        capacity = sum(sizes)
        capacity -= group.reserved_space_mib or 0
        capacity = capacity * (100 - (group.reserved_percent or 0)) // 100
        needed = 0
        for line, lv in layout.logvols:
            if lv.vgname != group.name or lv.thin or not lv.size_mib:
                continue
            needed += lv.size_mib
            if needed <= capacity:
                continue
            if lv.size_mib > capacity:
                findings.error(line, f"logvol {lv.mountpoint}: --size={lv.size_mib} MiB is larger than volume group "
                                     f"{group.name} (at most {capacity} MiB from its fixed-size members)")
            else:
                findings.error(line, f"logvol {lv.mountpoint}: volume group {group.name} holds at most {capacity} MiB "
                                     f"(its members have fixed sizes) and its volumes need {needed} MiB by this line")
            break


def _bare(disk: str) -> str:
    return disk.removeprefix("/dev/")


def _check_disks(layout: Layout, findings: Findings) -> None:
    ignore = layout.ignoredisk
    if ignore is None:
        return
    only = {_bare(d) for d in ignore.only_use}
    ignored = {_bare(d) for d in ignore.ignore}
    for line, part in layout.parts:
        if not part.ondisk:
            continue
        disk = _bare(part.ondisk)
        if only and disk not in only:
            findings.error(line, f"part {part.mountpoint}: --ondisk={part.ondisk} is not among "
                                 f"`ignoredisk --only-use={','.join(ignore.only_use)}`")
        elif disk in ignored:
            findings.error(line, f"part {part.mountpoint}: --ondisk={part.ondisk} is a disk `ignoredisk --drives` "
                                 "ignores")


def _note_encryption(layout: Layout, findings: Findings) -> None:
    lines = [line for line, p in layout.parts if p.encrypted]
    lines += [line for line, v in layout.logvols if v.encrypted]
    lines += [line for line, r in layout.raids if r.encrypted]
    if layout.autopart is not None and layout.autopart[1].encrypted:
        lines.append(layout.autopart[0])
    if lines:
        findings.warn(min(lines), "--encrypted: the deploy plan must carry `encryption.passphrase` (the agent refuses "
                                  "a plan without one; the kickstart never holds it)")
