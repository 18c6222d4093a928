"""How a kickstart's storage lines fit together: member names, RAID and btrfs levels, volume groups and their
logical volumes, btrfs subvolumes, mount points; and (storage_fit) what /boot may sit on, sizes that cannot fit,
disks. Each problem is an error at the line that makes it, so a layout that lints clean is one the agent can build
as written.

Names another line must define (members, volume groups, thin pools, btrfs volumes) are only checked when all
the storage text is here: a `%include` deferred to deploy time may define them.
"""
from __future__ import annotations

from metalstream.contracts.deployspec import LogVolSpec, RaidSpec

from .diagnostics import Findings
from .storage_fit import check_boot, check_disks, check_vg_sizes, note_encryption
from .storage_layout import Layout, mounts

# Anaconda's (blivet's) smallest number of active members for each level.
RAID_MIN_MEMBERS = {"raid0": 2, "raid1": 2, "raid4": 3, "raid5": 3, "raid6": 4, "raid10": 4}
BTRFS_MIN_MEMBERS = {"single": 1, "raid0": 2, "raid1": 2, "raid10": 4}  # the levels pykickstart accepts
_USER = {"pv.": "volgroup", "raid.": "raid", "btrfs.": "btrfs"}


def check_storage(layout: Layout, findings: Findings) -> None:
    _check_members(layout, findings)
    _check_raid_levels(layout, findings)
    _check_btrfs_levels(layout, findings)
    _check_volume_groups(layout, findings)
    _check_subvolumes(layout, findings)
    _check_mountpoints(layout, findings)
    check_boot(layout, findings)
    check_vg_sizes(layout, findings)
    check_disks(layout, findings)
    note_encryption(layout, findings)


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
        _check_member_disks(line, raid, layout, findings)
        least = RAID_MIN_MEMBERS.get(raid.level)
        if least is None or not raid.members:  # no members: an existing array, refused at its option
            continue
        active = len(raid.members) - raid.spares
        if active < least:
            spares = f" besides its {raid.spares} spare(s)" if raid.spares else ""
            findings.error(line, f"raid {raid.mountpoint}: {raid.level.upper()} needs at least {least} members"
                                 f"{spares}, {max(active, 0)} given")


def _check_member_disks(line: int, raid: RaidSpec, layout: Layout, findings: Findings) -> None:
    """A redundant array with two members on one named disk does not survive losing that disk."""
    if raid.level == "raid0":
        return
    disks: dict[str, str] = {}
    for _line, part in layout.parts:
        if part.mountpoint in raid.members and part.ondisk:
            if part.ondisk in disks:
                findings.warn(line, f"raid {raid.mountpoint}: {disks[part.ondisk]} and {part.mountpoint} are both on "
                                    f"{part.ondisk}: the array does not survive losing that disk")
                return
            disks[part.ondisk] = part.mountpoint


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


def _check_mountpoints(layout: Layout, findings: Findings) -> None:
    seen: dict[str, tuple[int, str]] = {}
    for line, mountpoint, what in mounts(layout):
        if mountpoint in seen:
            earlier_line, earlier = seen[mountpoint]
            findings.error(line, f"{what} {mountpoint}: {mountpoint} is already mounted from `{earlier}` at "
                                 f"{findings.place(earlier_line)}")
            continue
        seen[mountpoint] = (line, what)
