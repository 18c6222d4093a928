"""The storage plan: every disk, partition, RAID array, encrypted device, volume group, logical volume, btrfs
volume and filesystem one deployment makes, as plain data decided before the first write.

Devices are named by references that the apply step turns into device paths as it creates them:

    part:DISK:N     partition N of the planned disk whose key is DISK
    md:NAME         the RAID array /dev/md/NAME
    luks:NAME       the opened LUKS device /dev/mapper/NAME
    lv:VG/LV        the logical volume /dev/VG/LV
    btrfs:UUID      a btrfs volume (mounted through any of its members)

`StoragePlan.devices` lists what sits above the partitions in the order it must be created, so each
device's parts exist before it.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Union

from ..partition import Layout, Partition


def part_ref(disk_key: str, number: int) -> str:
    return f"part:{disk_key}:{number}"


@dataclass(frozen=True)
class TargetDisk:
    """A disk chosen for the deployment, before anything is planned on it."""

    key: str  # the storage section's name for it (sda, a key of the plan's `disks`), or "" for the only disk
    path: str  # /dev/... or a disk image file
    size: int  # bytes
    sector_size: int = 512
    names: tuple[str, ...] = ()  # every name it answers to (sda, /dev/sda, by-id links), for --ondisk and clearpart


@dataclass(frozen=True)
class PlannedDisk:
    key: str  # the name the storage section uses for the disk (sda, a key of the plan's `disks`), or "" for the only one
    path: str  # /dev/... or a disk image file
    layout: Layout  # its GPT; member partitions have role "member" and `Partition.member` set

    def ref(self, part: Partition) -> str:
        return part_ref(self.key, part.number)


@dataclass(frozen=True)
class Array:
    name: str  # /dev/md/NAME
    level: str  # raid0 | raid1 | raid4 | raid5 | raid6 | raid10
    members: tuple[str, ...]  # references, active members first
    spares: int = 0  # how many of `members`, at the end, are spares
    metadata: str = "1.2"  # 1.0 keeps the superblock at the end, so firmware reads an ESP member as plain FAT
    chunk_kib: int | None = None
    uuid: str = ""  # mdadm's form, 8:8:8:8 hex
    line: int | None = None

    @property
    def ref(self) -> str:
        return f"md:{self.name}"


@dataclass(frozen=True)
class Crypt:
    name: str  # /dev/mapper/NAME, "luks-UUID" as the distributions name it
    backing: str  # reference of the device it encrypts
    uuid: str  # the LUKS header's UUID (crypttab and rd.luks.uuid use it)
    luks_version: str = "luks2"
    cipher: str | None = None  # None: cryptsetup's default
    line: int | None = None

    @property
    def ref(self) -> str:
        return f"luks:{self.name}"


@dataclass(frozen=True)
class VolumeGroup:
    name: str
    pvs: tuple[str, ...]  # references
    pesize_kib: int = 4096
    size_mib: int = 0  # what the logical volumes may use: the PVs' extents less metadata and reserved space
    line: int | None = None

    @property
    def ref(self) -> str:
        return f"vg:{self.name}"


@dataclass(frozen=True)
class LogicalVolume:
    vg: str
    name: str
    size_mib: int  # virtual size for a thin volume
    kind: str = "linear"  # linear | thinpool | thin
    pool: str | None = None  # thin volumes: their pool's name
    chunk_kib: int | None = None  # thin pools
    line: int | None = None
    metadata_mib: int | None = None  # thin pools: their metadata LV (lvm keeps a spare of the same size in the VG)

    @property
    def ref(self) -> str:
        return f"lv:{self.vg}/{self.name}"


@dataclass(frozen=True)
class BtrfsVolume:
    uuid: str
    members: tuple[str, ...]  # references
    label: str | None = None
    data_level: str | None = None
    metadata_level: str | None = None
    subvolumes: tuple[str, ...] = ()  # names created at the volume's top level
    line: int | None = None

    @property
    def ref(self) -> str:
        return f"btrfs:{self.uuid}"


StackDevice = Union[Array, Crypt, VolumeGroup, LogicalVolume, BtrfsVolume]


@dataclass(frozen=True)
class Filesystem:
    device: str  # reference of the device that holds it (a btrfs subvolume: its volume's)
    fstype: str  # ext4 | xfs | vfat | swap | btrfs
    mountpoint: str | None  # "/", "/home", "/boot/efi", None for swap
    uuid: str  # chosen up front so fstab, crypttab and grub.cfg can be written before the disk is
    label: str | None = None
    options: str | None = None  # fstab options the kickstart gave (--fsoptions)
    subvol: str | None = None  # btrfs: the subvolume mounted here
    line: int | None = None


@dataclass(frozen=True)
class StoragePlan:
    disks: tuple[PlannedDisk, ...]
    devices: tuple[StackDevice, ...] = ()  # in creation order
    filesystems: tuple[Filesystem, ...] = ()  # made in this order (a btrfs volume once for all its subvolumes)
    notes: tuple[str, ...] = field(default=())  # decisions worth showing in --dry-run (sizes derived from memory, ...)

    @property
    def root(self) -> Filesystem:
        return next(f for f in self.filesystems if f.mountpoint == "/")

    @property
    def boot(self) -> Filesystem:
        """The filesystem holding /boot: a separate /boot, or the root."""
        return next((f for f in self.filesystems if f.mountpoint == "/boot"), self.root)

    @property
    def crypts(self) -> list[Crypt]:
        """Every LUKS device, in creation order (crypttab's lines; the passphrase opens each)."""
        return [d for d in self.devices if isinstance(d, Crypt)]

    @property
    def arrays(self) -> list[Array]:
        return [d for d in self.devices if isinstance(d, Array)]

    @property
    def volume_groups(self) -> list[VolumeGroup]:
        return [d for d in self.devices if isinstance(d, VolumeGroup)]

    @property
    def btrfs_volumes(self) -> list[BtrfsVolume]:
        return [d for d in self.devices if isinstance(d, BtrfsVolume)]

    def disk(self, key: str) -> PlannedDisk:
        return next(d for d in self.disks if d.key == key)

    def device(self, ref: str) -> StackDevice | None:
        return next((d for d in self.devices if d.ref == ref), None)

    def mount_order(self) -> list[Filesystem]:
        """Filesystems to mount below the target root, parents first (/ before /boot before /boot/efi)."""
        mounted = [f for f in self.filesystems if f.mountpoint and f.mountpoint.startswith("/")]
        return sorted(mounted, key=lambda f: (f.mountpoint.rstrip("/").count("/") if f.mountpoint != "/" else 0,
                                              f.mountpoint))

    def stack_under(self, ref: str) -> list[str]:
        """References from `ref` down to the partitions it is built on (itself first)."""
        device = self.device(ref)
        below: tuple[str, ...] = ()
        if isinstance(device, Crypt):
            below = (device.backing,)
        elif isinstance(device, LogicalVolume):
            below = self.device(f"vg:{device.vg}").pvs
        elif isinstance(device, (Array, BtrfsVolume)):
            below = device.members
        elif isinstance(device, VolumeGroup):
            below = device.pvs
        return [ref, *(r for b in below for r in self.stack_under(b))]
