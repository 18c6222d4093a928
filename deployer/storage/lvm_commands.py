"""LVM command lines for the planned volume groups and logical volumes.

Every command carries `--devices` naming exactly the plan's physical volumes, so LVM neither reads nor
changes any other volume group on the machine (an old VG on a disk not chosen, or the host's own when run
on a workstation); the devices file is not consulted or written.
"""
from __future__ import annotations

from .model import LogicalVolume, VolumeGroup


def _scope(pvs: list[str]) -> list[str]:
    return ["--devices", ",".join(pvs)]


def pvcreate_argv(pv: str, pvs: list[str]) -> list[str]:
    return ["pvcreate", *_scope(pvs), "--yes", "--force", pv]


def vgcreate_argv(group: VolumeGroup, pvs: list[str]) -> list[str]:
    return ["vgcreate", *_scope(pvs), "--yes", "--physicalextentsize", f"{group.pesize_kib}k", group.name, *pvs]


def lvcreate_argv(volume: LogicalVolume, group: VolumeGroup, pvs: list[str]) -> list[str]:
    extents = volume.size_mib * 1024 // group.pesize_kib
    common = ["lvcreate", *_scope(pvs), "--yes", "--name", volume.name]
    if volume.kind == "thinpool":  # lvm zeroes a new pool's first blocks and refuses --wipesignatures for it
        return [*common, "--type", "thin-pool", "--extents", str(extents),
                *(["--poolmetadatasize", f"{volume.metadata_mib}m"] if volume.metadata_mib else []),
                *(["--chunksize", f"{volume.chunk_kib}k"] if volume.chunk_kib else []), group.name]
    if volume.kind == "thin":
        return [*common, "--type", "thin", "--virtualsize", f"{volume.size_mib}m", "--thinpool", volume.pool,
                group.name]
    return [*common, "--wipesignatures", "y", "--extents", str(extents), group.name]


def deactivate_argv(group: VolumeGroup, pvs: list[str]) -> list[str]:
    return ["vgchange", *_scope(pvs), "--activate", "n", group.name]


def lv_path(volume: LogicalVolume) -> str:
    """The device-mapper node (/dev/VG/LV links need udev; this name is the kernel's)."""
    return "/dev/mapper/" + "-".join(part.replace("-", "--") for part in (volume.vg, volume.name))
