"""btrfs command lines for the planned volumes and their subvolumes."""
from __future__ import annotations

from .model import BtrfsVolume


def mkfs_argv(volume: BtrfsVolume, members: list[str]) -> list[str]:
    return ["mkfs.btrfs", "--force", "--quiet", "--uuid", volume.uuid,
            *(["--label", volume.label] if volume.label else []),
            *(["--data", volume.data_level] if volume.data_level else []),
            *(["--metadata", volume.metadata_level] if volume.metadata_level else []), *members]


def mount_options(members: list[str], subvol: str | None = None) -> str:
    """Naming every member lets the kernel assemble a multi-device volume without a `btrfs device scan`."""
    return ",".join([*(f"device={m}" for m in members), *([f"subvol={subvol}"] if subvol else [])])
