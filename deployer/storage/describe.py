"""The storage plan as an indented tree for --dry-run: disks → partitions → RAID/LUKS/LVM/btrfs → filesystems →
mount points. A device built on several parts (an array, a volume group, a btrfs volume) is shown in full under
its first part and named "(above)" under the others. Deterministic: the same plan gives the same text."""
from __future__ import annotations

from ..partition import MIB
from .model import Array, Crypt, Filesystem, LogicalVolume, StoragePlan, VolumeGroup, part_ref
from .planner import LUKS_HEADER_MIB, array_mib

INDENT = "  "


def describe(plan: StoragePlan) -> str:
    sizes = _sizes(plan)
    consumers: dict[str, list[str]] = {}
    for device in plan.devices:
        for below in _built_on(device):
            consumers.setdefault(below, []).append(device.ref)
    shown: set[str] = set()
    lines: list[str] = []

    def tree(ref: str, depth: int) -> None:
        pad = INDENT * depth
        for f in (f for f in plan.filesystems if f.device == ref):
            lines.append(pad + _filesystem(f))
        for above in consumers.get(ref, []):
            if above in shown:
                lines.append(f"{pad}{_name(plan, above)} (above)")
                continue
            shown.add(above)
            lines.append(pad + _device(plan, above, sizes))
            tree(above, depth + 1)

    for disk in plan.disks:
        layout = disk.layout
        lines.append(f"{disk.key or disk.path}: {disk.path}, {layout.disk_size // MIB} MiB, GPT"
                     + ("" if layout.partitions else ", no partitions"))
        for p in layout.partitions:
            what = f"member {p.member}" if p.role == "member" else p.role
            lines.append(f"{INDENT}#{p.number} {layout.length(p) // MIB} MiB {what}")
            tree(part_ref(disk.key, p.number), 2)
    for note in plan.notes:
        lines.append(f"note: {note}")
    return "\n".join(lines)


def _built_on(device) -> tuple[str, ...]:
    if isinstance(device, Crypt):
        return (device.backing,)
    if isinstance(device, LogicalVolume):
        return (f"lv:{device.vg}/{device.pool}",) if device.kind == "thin" else (f"vg:{device.vg}",)
    if isinstance(device, VolumeGroup):
        return device.pvs
    return device.members


def _name(plan: StoragePlan, ref: str) -> str:
    device = plan.device(ref)
    if isinstance(device, Array):
        return f"md/{device.name}"
    if isinstance(device, Crypt):
        return device.name
    if isinstance(device, VolumeGroup):
        return f"vg {device.name}"
    if isinstance(device, LogicalVolume):
        return f"lv {device.vg}/{device.name}"
    return f"btrfs {device.label or device.uuid}"


def _sizes(plan: StoragePlan) -> dict[str, int]:
    """MiB of every partition, array and LUKS device (volume groups and volumes carry their own)."""
    sizes = {part_ref(d.key, p.number): d.layout.length(p) // MIB for d in plan.disks for p in d.layout.partitions}
    for device in plan.devices:
        if isinstance(device, Array):
            active = device.members[:len(device.members) - device.spares]
            sizes[device.ref] = array_mib(device.level, [sizes[m] for m in active])
        elif isinstance(device, Crypt):
            sizes[device.ref] = sizes.get(device.backing, 0) - LUKS_HEADER_MIB[device.luks_version]
        elif isinstance(device, LogicalVolume):
            sizes[device.ref] = device.size_mib
    return sizes


def _device(plan: StoragePlan, ref: str, sizes: dict[str, int]) -> str:
    d = plan.device(ref)
    name = _name(plan, ref)
    if isinstance(d, Array):
        spare = f" + {d.spares} spare" if d.spares else ""
        return (f"{name}: {d.level}, {sizes[ref]} MiB, {len(d.members) - d.spares} members{spare}, "
                f"metadata {d.metadata}, uuid {d.uuid}")
    if isinstance(d, Crypt):
        return f"{name}: {d.luks_version.upper()}, {sizes[ref]} MiB, cipher {d.cipher or 'default'}"
    if isinstance(d, VolumeGroup):
        return f"{name}: {d.size_mib} MiB, PE {d.pesize_kib // 1024} MiB, {len(d.pvs)} PV(s)"
    if isinstance(d, LogicalVolume):
        if d.kind == "thinpool":
            return f"{name}: thin pool {d.size_mib} MiB (metadata {d.metadata_mib} MiB)"
        return f"{name}: {'thin, virtual ' if d.kind == 'thin' else ''}{d.size_mib} MiB"
    levels = ", ".join(f"{k} {v}" for k, v in (("data", d.data_level), ("metadata", d.metadata_level)) if v)
    return f"{name}: uuid {d.uuid}" + (f", {levels}" if levels else "") + \
        (f", subvolumes {', '.join(d.subvolumes)}" if d.subvolumes else "")


def _filesystem(f: Filesystem) -> str:
    where = f.mountpoint or "(no mount point)" if f.fstype != "swap" else "swap"
    extra = "".join(f", {k} {v}" for k, v in (("subvol", f.subvol), ("label", f.label), ("options", f.options)) if v)
    return f"{f.fstype} uuid {f.uuid}{extra} → {where}"
