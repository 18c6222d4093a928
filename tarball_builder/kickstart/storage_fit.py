"""Where a kickstart's storage may sit and whether it fits: /boot, the ESP and biosboot only on what grub here
reads, / on a stack only with a separate /boot, logical volumes within fixed-size volume groups, `--ondisk`
within `ignoredisk`, and the note that encryption needs the plan's passphrase."""
from __future__ import annotations

from .diagnostics import Findings
from .storage_layout import Layout, mounts

BOOT_MOUNTS = ("/boot", "/boot/efi", "biosboot")
GRUB_READS = "grub here reads /boot from a plain partition or an md RAID1 of ext4/xfs"


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


def check_boot(layout: Layout, findings: Findings) -> None:
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
        encrypted = raid.encrypted or any(p.encrypted for _l, p in layout.parts if p.mountpoint in raid.members)
        if raid.mountpoint in BOOT_MOUNTS and (raid.level != "raid1" or encrypted):
            kind = "LUKS" if encrypted else raid.level.upper()
            findings.error(line, f"raid {raid.mountpoint}: cannot be on {kind}: {GRUB_READS}")
    if layout.autopart is not None:
        line, auto = layout.autopart
        if auto.noboot and (auto.scheme != "plain" or auto.encrypted):
            findings.error(line, f"autopart --noboot: the {auto.scheme}{' encrypted' if auto.encrypted else ''} "
                                 f"layout needs its plain /boot: {GRUB_READS}")
    root = _root_stack(layout)
    has_boot = layout.reqpart_boot or any(m == "/boot" for _line, m, _what in mounts(layout))
    if root is not None and not has_boot and layout.complete:
        line, kind = root
        findings.error(line, f"/ is on {kind} and the layout has no /boot: add `part /boot --size=1024` "
                             f"or `reqpart --add-boot` ({GRUB_READS})")


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


def check_vg_sizes(layout: Layout, findings: Findings) -> None:
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


def check_disks(layout: Layout, findings: Findings) -> None:
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


def note_encryption(layout: Layout, findings: Findings) -> None:
    lines = [line for line, p in layout.parts if p.encrypted]
    lines += [line for line, v in layout.logvols if v.encrypted]
    lines += [line for line, r in layout.raids if r.encrypted]
    if layout.autopart is not None and layout.autopart[1].encrypted:
        lines.append(layout.autopart[0])
    if lines:
        findings.note(min(lines), "--encrypted: the deploy plan must carry `encryption.passphrase` (the agent refuses "
                                  "a plan without one; the kickstart never holds it)")
