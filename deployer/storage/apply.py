"""Apply a StoragePlan to real disks (block devices or disk image files): the impure half of storage.

Every chosen disk is checked to be unused before the first write, then wiped and given its GPT; its
partitions are reached as kernel partition nodes (block devices) or offset loop devices (image files and
loop devices: md, LVM, LUKS and btrfs sit on any block device, and this also works on kernels without
partition-table support). Each member partition and each created device is wiped of old signatures before
anything is built on it, so a stale RAID superblock or PV label can never be assembled at boot. The stack
is built in `plan.devices` order, filesystems are made with their planned UUIDs and the tree is mounted under
`work/root`. On exit, also after an error or Ctrl-C, everything is released in reverse: unmount, deactivate
the volume groups, close LUKS, stop the arrays, detach the loops.

The passphrase goes to cryptsetup on its standard input only; it is never in an argument vector or a log.
"""
from __future__ import annotations

import logging
import os
import stat
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable, Iterator

from metalstream import proc
from metalstream.errors import BadInput, OperationFailed

from .. import blockdev
from ..blockdev import Target
from . import btrfs, luks, lvm_commands, md
from .model import (Array, BtrfsVolume, Crypt, Filesystem, LogicalVolume, PlannedDisk, StoragePlan, VolumeGroup,
                    part_ref)

log = logging.getLogger("metalstream.storage")

STOP_ATTEMPTS = 5


@dataclass
class AppliedStorage:
    root: Path  # the target's / with every planned filesystem mounted below it (the ESP is not mounted)
    devices: dict[str, str] = field(default_factory=dict)  # reference -> device path
    targets: dict[str, Target] = field(default_factory=dict)  # disk key -> the disk written

    def path(self, ref: str) -> str:
        """The device path of a reference (part:..., md:..., luks:..., lv:..., btrfs:...)."""
        try:
            return self.devices[ref]
        except KeyError:
            raise OperationFailed(f"the storage plan made no device {ref}") from None


def disk_target(disk: PlannedDisk) -> Target:
    """The Target for a planned disk: a block device, or an image file (created sparse by blockdev.wipe)."""
    try:
        is_file = not stat.S_ISBLK(os.stat(disk.path).st_mode)
    except FileNotFoundError:
        is_file = True
    return Target(disk.path, disk.layout.disk_size, is_file, disk.layout.sector_size)


@contextmanager
def apply_storage(plan: StoragePlan, passphrase: str | None, work: Path, *,
                  phase: Callable[[str, str], None] | None = None) -> Iterator[AppliedStorage]:
    """`phase(name, message)` is told when the filesystems are made ("mkfs"), for the install's reporting."""
    if plan.crypts and not passphrase:
        raise BadInput("the layout encrypts devices but the plan gives no passphrase", location="encryption")
    targets = {disk.key: disk_target(disk) for disk in plan.disks}
    for disk in plan.disks:
        blockdev.refuse_if_in_use(targets[disk.key], location=f"disk {disk.key or disk.path}")
    applied = AppliedStorage(work / "root", targets=targets)
    with ExitStack() as stack:
        for disk in plan.disks:
            target = targets[disk.key]
            blockdev.wipe(target)
            blockdev.write_table(target, disk.layout)
            nodes = stack.enter_context(blockdev.partition_devices(target, disk.layout))
            for number, device in nodes.items():
                _wipe_signatures(device)
                applied.devices[part_ref(disk.key, number)] = device
        for device in plan.devices:
            _create(device, plan, applied, passphrase, stack, work)
        if phase is not None:
            phase("mkfs", ", ".join(made(plan)))
        for fs in plan.filesystems:
            argv = blockdev.fs_argv(fs.fstype, fs.uuid, fs.label, applied.path(fs.device))
            if argv:  # btrfs was made with its volume
                proc.run(argv)
        stack.enter_context(_mounted_tree(plan, applied))
        yield applied


def made(plan: StoragePlan) -> list[str]:
    """The filesystems as `fstype on #N` (a partition of the only disk: the plain layout's wording) or on the
    reference of the device that holds them."""
    found = []
    for f in plan.filesystems:
        where = f"#{f.device.rsplit(':', 1)[1]}" if f.device.startswith("part:") and len(plan.disks) == 1 \
            else f.device
        if f"{f.fstype} on {where}" not in found:
            found.append(f"{f.fstype} on {where}")
    return found


def _wipe_signatures(device: str) -> None:
    proc.run(["wipefs", "--all", "--force", device])


def _create(device, plan: StoragePlan, applied: AppliedStorage, passphrase: str | None, stack: ExitStack,
            work: Path) -> None:
    if isinstance(device, Array):
        members = [applied.path(ref) for ref in device.members]
        proc.run(md.create_argv(device, members))
        stack.callback(_stop_array, device)
        path = f"/dev/md/{device.name}"
        blockdev.wait_for_nodes([path])
        _wipe_signatures(path)
    elif isinstance(device, Crypt):
        backing = applied.path(device.backing)
        proc.run(luks.format_argv(device, backing), input=passphrase, timeout=600)
        proc.run(luks.open_argv(device, backing), input=passphrase, timeout=600)
        stack.callback(_release, luks.close_argv(device))
        path = f"/dev/mapper/{device.name}"
        blockdev.wait_for_nodes([path])
        _wipe_signatures(path)
    elif isinstance(device, VolumeGroup):
        pvs = _pvs(device, applied)
        for pv in pvs:
            proc.run(lvm_commands.pvcreate_argv(pv, pvs))
        proc.run(lvm_commands.vgcreate_argv(device, pvs))
        stack.callback(_release, lvm_commands.deactivate_argv(device, pvs))
        path = f"/dev/{device.name}"
    elif isinstance(device, LogicalVolume):
        group = plan.device(f"vg:{device.vg}")
        proc.run(lvm_commands.lvcreate_argv(device, group, _pvs(group, applied)))
        path = lvm_commands.lv_path(device)
        blockdev.wait_for_nodes([path])
    elif isinstance(device, BtrfsVolume):
        members = [applied.path(ref) for ref in device.members]
        proc.run(btrfs.mkfs_argv(device, members))
        stack.callback(_forget_btrfs, members)
        if device.subvolumes:
            _create_subvolumes(device, members, work / f"btrfs-{device.uuid}")
        path = members[0]
    else:
        raise OperationFailed(f"unknown device in the storage plan: {device!r}")
    applied.devices[device.ref] = path


def _pvs(group: VolumeGroup, applied: AppliedStorage) -> list[str]:
    """The PVs' device paths, resolved: LVM compares --devices with the kernel's names."""
    return [os.path.realpath(applied.path(ref)) for ref in group.pvs]


def _create_subvolumes(volume: BtrfsVolume, members: list[str], top: Path) -> None:
    with blockdev.mounted(members[0], top, "btrfs", btrfs.mount_options(members)):
        for name in volume.subvolumes:
            proc.run(["btrfs", "subvolume", "create", top / name])
    top.rmdir()


@contextmanager
def _mounted_tree(plan: StoragePlan, applied: AppliedStorage) -> Iterator[Path]:
    """Every Linux filesystem of the plan below applied.root, parents first (the ESP is written with mtools)."""
    with ExitStack() as stack:
        applied.root.mkdir(parents=True, exist_ok=True)
        for fs in plan.mount_order():
            if fs.fstype == "vfat":
                continue
            where = applied.root / fs.mountpoint.lstrip("/") if fs.mountpoint != "/" else applied.root
            device, options = _mount_source(fs, plan, applied)
            stack.enter_context(blockdev.mounted(device, where, fs.fstype, options))
        yield applied.root


def _mount_source(fs: Filesystem, plan: StoragePlan, applied: AppliedStorage) -> tuple[str, str | None]:
    volume = plan.device(fs.device)
    if isinstance(volume, BtrfsVolume):
        members = [applied.path(ref) for ref in volume.members]
        return members[0], btrfs.mount_options(members, fs.subvol)
    return applied.path(fs.device), None


def _release(argv: list[str]) -> None:
    """Teardown never stops half way: a failure is logged and the next device is released."""
    proc.run(["udevadm", "settle", "--timeout=10"], check=False)
    result = proc.run(argv, check=False)
    if result.returncode != 0:
        log.warning("%s failed: %s", " ".join(argv[:2]), result.stderr.strip())


def _stop_array(array: Array) -> None:
    """udev may still hold a just-closed array for a moment (blkid probing): retry briefly."""
    for attempt in range(STOP_ATTEMPTS):
        proc.run(["udevadm", "settle", "--timeout=10"], check=False)
        result = proc.run(md.stop_argv(array), check=False)
        if result.returncode == 0:
            return
        time.sleep(0.5 * (attempt + 1))
    log.warning("mdadm --stop /dev/md/%s failed: %s", array.name, result.stderr.strip())


def _forget_btrfs(members: list[str]) -> None:
    """The kernel remembers scanned btrfs members; forget them before their loop devices go away."""
    for member in members:
        proc.run(["btrfs", "device", "scan", "--forget", member], check=False)
