"""StoragePlans built by hand (not by the planner) for the apply tests: each stack on given disk paths.

Imported by tests/test_storage_apply.py on this machine and by tests/storage_apply_checks.py inside the
installer VM (whose kernel has md and device-mapper, which this machine's may lack).
"""
from __future__ import annotations

import uuid

from deployer.partition import Request, place
from deployer.storage.model import (Array, BtrfsVolume, Crypt, Filesystem, LogicalVolume, PlannedDisk, StoragePlan,
                                    VolumeGroup)

GIB = 1 << 30
PASSPHRASE = "correct horse battery staple 13"


def _uuid() -> str:
    return str(uuid.uuid4())


def _disk(key: str, path: str, requests: list[Request], size: int) -> PlannedDisk:
    return PlannedDisk(key, path, place(requests, size, 512, _uuid))


def _esp_boot(key: str, path: str, member: str, size: int) -> PlannedDisk:
    return _disk(key, path, [Request("esp", "/boot/efi", "vfat", 512), Request("boot", "/boot", "ext4", 300),
                             Request("member", None, None, 1000, grow=True, member=member)], size)


def _esp_boot_filesystems(disk: PlannedDisk) -> tuple[Filesystem, ...]:
    return tuple(Filesystem(disk.ref(p), p.fstype, p.mountpoint, p.fs_uuid) for p in disk.layout.partitions[:2])


def lvm_plan(path: str, size: int = 4 * GIB) -> StoragePlan:
    """/boot/efi and /boot on partitions; VG vgsys on a PV: root, home, swap and a thin volume in a pool."""
    disk = _esp_boot("vda", path, "pv.01", size)
    group = VolumeGroup("vgsys", ("part:vda:3",), 4096, 0)
    volumes = (LogicalVolume("vgsys", "root", 1200), LogicalVolume("vgsys", "home", 300),
               LogicalVolume("vgsys", "swap", 128), LogicalVolume("vgsys", "pool", 400, "thinpool", metadata_mib=8),
               LogicalVolume("vgsys", "data", 600, "thin", pool="pool"))
    return StoragePlan(disks=(disk,), devices=(group, *volumes), filesystems=(
        *_esp_boot_filesystems(disk),
        Filesystem("lv:vgsys/root", "ext4", "/", _uuid()), Filesystem("lv:vgsys/home", "xfs", "/home", _uuid()),
        Filesystem("lv:vgsys/swap", "swap", None, _uuid()), Filesystem("lv:vgsys/data", "ext4", "/data", _uuid())))


def raid1_plan(path_a: str, path_b: str, size: int = 3 * GIB) -> StoragePlan:
    """The ESP on RAID1 metadata 1.0, /boot and / on RAID1 (metadata 1.2), a BIOS boot partition on each disk."""
    disks = tuple(_disk(key, path, [Request("biosboot", None, None, 1),
                                    Request("member", None, None, 512, member=f"raid.e{n}"),
                                    Request("member", None, None, 300, member=f"raid.b{n}"),
                                    Request("member", None, None, 1000, grow=True, member=f"raid.r{n}")], size)
                  for n, (key, path) in enumerate((("vda", path_a), ("vdb", path_b)), start=1))

    def md_uuid() -> str:
        digits = uuid.uuid4().hex
        return ":".join(digits[k:k + 8] for k in range(0, 32, 8))

    arrays = (Array("esp", "raid1", ("part:vda:2", "part:vdb:2"), metadata="1.0", uuid=md_uuid()),
              Array("boot", "raid1", ("part:vda:3", "part:vdb:3"), uuid=md_uuid()),
              Array("root", "raid1", ("part:vda:4", "part:vdb:4"), uuid=md_uuid()))
    esp_uuid = _uuid().replace("-", "")[:8].upper()
    return StoragePlan(disks=disks, devices=arrays, filesystems=(
        Filesystem("md:esp", "vfat", "/boot/efi", f"{esp_uuid[:4]}-{esp_uuid[4:]}"),
        Filesystem("md:boot", "ext4", "/boot", _uuid()), Filesystem("md:root", "ext4", "/", _uuid())))


def luks_on_lvm_plan(path: str, size: int = 4 * GIB) -> StoragePlan:
    """An encrypted PV (LUKS2) holding VG vgcrypt: root and swap."""
    disk = _esp_boot("vdb", path, "pv.01", size)
    luks_uuid = _uuid()
    crypt = Crypt(f"luks-{luks_uuid}", "part:vdb:3", luks_uuid)
    group = VolumeGroup("vgcrypt", (crypt.ref,), 4096, 0)
    return StoragePlan(disks=(disk,), devices=(crypt, group, LogicalVolume("vgcrypt", "root", 1500),
                                               LogicalVolume("vgcrypt", "swap", 128)), filesystems=(
        *_esp_boot_filesystems(disk), Filesystem("lv:vgcrypt/root", "ext4", "/", _uuid()),
        Filesystem("lv:vgcrypt/swap", "swap", None, _uuid())))


def btrfs_plan(path: str, size: int = 3 * GIB) -> StoragePlan:
    """/boot/efi and /boot on partitions; a btrfs volume with subvolumes root (/) and home (/home)."""
    disk = _esp_boot("vda", path, "btrfs.01", size)
    volume = BtrfsVolume(_uuid(), ("part:vda:3",), "system", "single", "dup", ("root", "home"))
    return StoragePlan(disks=(disk,), devices=(volume,), filesystems=(
        *_esp_boot_filesystems(disk), Filesystem(volume.ref, "btrfs", "/", volume.uuid, subvol="root"),
        Filesystem(volume.ref, "btrfs", "/home", volume.uuid, subvol="home", options="compress=zstd")))


def install_specs() -> dict[str, tuple]:
    """Deploy specs for whole installs in the installer VM: name -> (boot mode, spec, {disk: path}, passphrase)."""
    from metalstream.contracts.deployspec import (ClearPart, DeploySpec, LogVolSpec, PartSpec, RaidSpec,
                                                  VolGroupSpec)

    lvm_luks = DeploySpec(zerombr=True, clearpart=ClearPart("all"), reqpart=True, reqpart_add_boot=True,
                          partitions=[PartSpec("pv.01", size_mib=2000, grow=True, encrypted=True)],
                          volgroups=[VolGroupSpec("vgsys", ["pv.01"])],
                          logvols=[LogVolSpec("/", "root", "vgsys", fstype="ext4", size_mib=1500, grow=True),
                                   LogVolSpec("swap", "swap", "vgsys", size_mib=128)])
    raid = DeploySpec(zerombr=True, clearpart=ClearPart("all"), partitions=[
        PartSpec("biosboot", fstype="biosboot", size_mib=1, ondisk="vda"),
        PartSpec("biosboot", fstype="biosboot", size_mib=1, ondisk="vdb"),
        *(PartSpec(f"raid.{kind}{n}", size_mib=size, grow=kind == "r", ondisk=disk)
          for kind, size in (("e", 512), ("b", 400), ("r", 1500)) for n, disk in ((1, "vda"), (2, "vdb")))],
        raids=[RaidSpec("/boot/efi", "esp", "raid1", ["raid.e1", "raid.e2"], fstype="efi"),
               RaidSpec("/boot", "boot", "raid1", ["raid.b1", "raid.b2"], fstype="ext4"),
               RaidSpec("/", "root", "raid1", ["raid.r1", "raid.r2"], fstype="ext4")])
    return {"install-luks-lvm-uefi": ("uefi", lvm_luks, {"vda": "/dev/vda"}, PASSPHRASE),
            "install-raid1-both": ("both", raid, {"vda": "/dev/vda", "vdb": "/dev/vdb"}, None)}
