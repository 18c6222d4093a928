"""Volume group and logical volume sizes, in extents, as LVM will allocate them (pure arithmetic).

A PV gives `(size - 1 MiB metadata) // PE` extents; the volume group keeps back --reserved-space (MiB) or
--reserved-percent, rounded up to extents. Logical volumes are sized as anaconda's storage library does:
fixed `--size` (rounded up to extents), `--percent` of the space left after every other volume's base size,
then `--grow` volumes share what remains in proportion to their base size up to their --maxsize. A thin pool
is sized the same way in the volume group, keeping room for its metadata and LVM's spare copy of it; thin
volumes are sized the same way inside their pool (a fixed virtual size may exceed the pool: thin volumes
over-commit).
"""
from __future__ import annotations

from dataclasses import dataclass

from metalstream.contracts.deployspec import LogVolSpec
from metalstream.errors import BadInput

from ..partition import Request, grow, recommended_swap_mib

PV_METADATA_KIB = 1024
DEFAULT_PE_KIB = 4096
POOL_METADATA_MIN_MIB = 4
POOL_METADATA_MAX_MIB = 128  # lvm doubles the chunk size rather than let the metadata grow past this


def where(kind: str, index: int, line: int | None) -> str:
    return f"storage.{kind}[{index}]" + (f" (kickstart line {line})" if line else "")


def pv_extents(pv_mib: int, pe_kib: int) -> int:
    return max((pv_mib * 1024 - PV_METADATA_KIB) // pe_kib, 0)


def vg_extents(pv_sizes_mib: list[int], pe_kib: int, reserved_mib: int | None, reserved_percent: int | None) -> int:
    total = sum(pv_extents(size, pe_kib) for size in pv_sizes_mib)
    reserved = -(-(reserved_mib or 0) * 1024 // pe_kib)
    reserved += -(-total * (reserved_percent or 0) // 100)
    return total - reserved


def pool_metadata_mib(pool_mib: int) -> int:
    """Metadata for a pool of `pool_mib` with 64 KiB chunks (64 bytes a chunk), within lvm's bounds."""
    return min(max(-(-pool_mib // 1024), POOL_METADATA_MIN_MIB), POOL_METADATA_MAX_MIB)


@dataclass
class Sized:
    extents: int  # a thin volume: its virtual size
    metadata_extents: int = 0  # thin pools


def size_volumes(vg_name: str, extents: int, pe_kib: int, lvs: list[tuple[int, LogVolSpec]],
                 memory_mib: int | None) -> tuple[dict[int, Sized], list[str]]:
    """Extents for each of the volume group's `lvs` (index in storage.logvols, spec), and notes on the choices.
    Raises BadInput at the volume that does not fit."""
    pe_mib = pe_kib / 1024
    notes: list[str] = []
    allocated = [(i, lv) for i, lv in lvs if not lv.thin]
    pools = [(i, lv) for i, lv in allocated if lv.thinpool]
    meta = {i: -(-pool_metadata_mib(int(extents * pe_mib)) * 1024 // pe_kib) for i, _ in pools}
    reserve = sum(meta.values()) + max(meta.values(), default=0)  # each pool's metadata and one spare
    sized = _share(vg_name, f"volume group {vg_name}", extents - reserve, extents, pe_kib, allocated, memory_mib,
                   notes)
    for i, _ in pools:
        sized[i].metadata_extents = meta[i]
    for pool_index, pool in pools:
        thins = [(i, lv) for i, lv in lvs if lv.thin and lv.poolname == pool.name]
        room = sized[pool_index].extents
        sized.update(_share(vg_name, f"thin pool {vg_name}/{pool.name}", room, room, pe_kib, thins, memory_mib,
                            notes, overcommit=True))
        virtual = sum(sized[i].extents for i, _ in thins)
        if virtual > room:
            notes.append(f"thin volumes in {vg_name}/{pool.name} promise {int(virtual * pe_mib)} MiB on a "
                         f"{int(room * pe_mib)} MiB pool (over-committed)")
    return sized, notes


def _base_extents(i: int, lv: LogVolSpec, pe_kib: int, memory_mib: int | None, notes: list[str]) -> int:
    if lv.recommended or lv.hibernation:
        if memory_mib is None:
            raise BadInput("swap sized from memory (--recommended/--hibernation) needs the machine's memory size",
                           location=where("logvols", i, lv.line))
        size = recommended_swap_mib(memory_mib, hibernation=lv.hibernation)
        if lv.max_size_mib is not None and size > lv.max_size_mib:
            size = lv.max_size_mib
        notes.append(f"swap {lv.vgname}/{lv.name}: {size} MiB for {memory_mib} MiB of memory"
                     + (" (hibernation)" if lv.hibernation else "")
                     + (" (at most --maxsize / a tenth of the disk)" if size == lv.max_size_mib else ""))
    elif lv.size_mib is not None:
        size = lv.size_mib
    elif lv.grow:
        size = 1
    else:
        raise BadInput(f"logical volume {lv.name} needs --size, --percent, --grow or --recommended",
                       location=where("logvols", i, lv.line))
    if size <= 0:
        raise BadInput("size must be positive", location=where("logvols", i, lv.line))
    return -(-size * 1024 // pe_kib)


def _share(vg_name: str, space: str, room: int, whole: int, pe_kib: int, lvs: list[tuple[int, LogVolSpec]],
           memory_mib: int | None, notes: list[str], *, overcommit: bool = False) -> dict[int, Sized]:
    """Fixed sizes, then percentages of what the others' base sizes leave, then growth, within `room` extents."""
    pe_mib = pe_kib / 1024
    base = {i: _base_extents(i, lv, pe_kib, memory_mib, notes) for i, lv in lvs if lv.percent is None}
    percented = [(i, lv) for i, lv in lvs if lv.percent is not None]
    if sum(lv.percent for _, lv in percented) > 100:
        i, lv = percented[-1]
        raise BadInput(f"the --percent sizes in {space} add up to more than 100", location=where("logvols", i, lv.line))
    basis = max(room - sum(base.values()), 0)
    for i, lv in percented:
        if not 0 < lv.percent <= 100:
            raise BadInput("--percent must be between 1 and 100", location=where("logvols", i, lv.line))
        base[i] = max(basis * lv.percent // 100, 1)
    used = 0
    for i, lv in lvs:
        used += base[i]
        if used > room and not overcommit:
            raise BadInput(f"logical volume {lv.name} ({int(base[i] * pe_mib)} MiB) does not fit in {space}: "
                           f"{int(room * pe_mib)} MiB of {int(whole * pe_mib)} MiB usable, "
                           f"{int((used - base[i]) * pe_mib)} MiB already given to the volumes before it",
                           location=where("logvols", i, lv.line))
    requests = {i: Request("lv", None, None, base[i], grow=lv.grow and lv.percent is None,
                           max_mib=-(-lv.max_size_mib * 1024 // pe_kib) if lv.max_size_mib else None)
                for i, lv in lvs}
    growing = list(requests.values())
    grow(growing, max(room - used, 0))
    return {i: Sized(r.final_mib) for i, r in requests.items()}
