"""Apply a partition layout to a real target: a block device or a disk image file.

The thin, impure half of partitioning: wipe old signatures first (so a failed install never boots a
half system), write the table with sfdisk, reach the partitions (kernel partition nodes on block
devices, offset loop devices on image files: this host kernel has no partition-table support),
make the filesystems with the UUIDs chosen by the planner, and mount them. Every loop device and
mount is released by the context managers, also on failure or Ctrl-C.
"""
from __future__ import annotations

import json
import logging
import os
import re
import stat
import time
from contextlib import ExitStack, contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from metalstream import proc
from metalstream.errors import BadInput, OperationFailed

from .partition import Layout, Partition, render_sfdisk

log = logging.getLogger("metalstream.blockdev")

MIB = 1 << 20
WAIT_TIMEOUT = 30.0


@dataclass(frozen=True)
class Target:
    path: str
    size: int  # bytes
    is_file: bool  # a disk image file (partitions via offset loops) or a block device
    sector_size: int = 512  # logical sector size

    @property
    def names(self) -> tuple[str, ...]:
        """What a kickstart may call this disk (`clearpart --drives`, `part --ondisk`)."""
        return (os.path.basename(self.path), self.path)

    @property
    def via_offset_loops(self) -> bool:
        """Reach partitions through offset loop devices: image files, and loop devices (whose partition
        scanning is off by default, and absent on kernels without partition-table support)."""
        return self.is_file or os.path.basename(self.path).startswith("loop")

    def partition_node(self, number: int) -> str:
        return f"{self.path}{'p' if self.path[-1].isdigit() else ''}{number}"


def open_target(path: str, *, create_size: int | None = None) -> Target:
    """The install target at `path`. Nothing is written here: a missing image file (or one smaller than
    `create_size`) is created or grown, sparse, by `wipe`, the first write of an install."""
    try:
        st = os.stat(path)
    except FileNotFoundError:
        if create_size is None:
            raise BadInput(f"{path} does not exist (pass --size to create a sparse disk image file)",
                           location="--to") from None
        if not os.path.isdir(os.path.dirname(os.path.abspath(path))):
            raise BadInput(f"directory {os.path.dirname(os.path.abspath(path))} does not exist", location="--to")
        return Target(path, create_size, True)
    if stat.S_ISREG(st.st_mode):
        return Target(path, max(st.st_size, create_size or 0), True)
    if stat.S_ISBLK(st.st_mode):
        size = int(proc.run(["blockdev", "--getsize64", path]).stdout.strip())
        sector = int(proc.run(["blockdev", "--getss", path]).stdout.strip())
        return Target(path, size, False, sector)
    raise BadInput(f"{path} is neither a block device nor a regular file", location="--to")


def refuse_if_in_use(target: Target, *, location: str = "--to") -> None:
    """A block device that is mounted, swapped on, or held (dm, md), or an image file already attached to a
    loop device, is never touched."""
    if target.is_file:
        attached = proc.run(["losetup", "--associated", target.path], check=False).stdout.strip() \
            if os.path.exists(target.path) else ""
        if attached:
            raise BadInput(f"{target.path} is in use (attached: {attached.splitlines()[0].split(':')[0]}); "
                           "refusing to touch it", location=location)
        return
    own = re.compile(re.escape(target.path) + r"(p?\d+)?")
    busy = []
    for table in ("/proc/mounts", "/proc/swaps"):
        with open(table) as f:
            busy += [line.split()[0] for line in f if line.strip() and own.fullmatch(line.split()[0])]
    name = os.path.basename(target.path)
    for block in [name, *sorted(p for p in os.listdir(f"/sys/class/block/{name}") if p.startswith(name))] \
            if os.path.isdir(f"/sys/class/block/{name}") else []:
        holders_dir = f"/sys/class/block/{block}/holders"
        busy += [f"held by {h}" for h in (os.listdir(holders_dir) if os.path.isdir(holders_dir) else [])]
    if busy:
        raise BadInput(f"{target.path} is in use ({', '.join(sorted(set(busy)))}); refusing to touch it",
                       location=location)


def existing_signatures(target: Target) -> tuple[str, ...]:
    """Partition tables and filesystems already on the target (empty for a blank disk or new file)."""
    if target.size == 0 or (target.is_file and not os.path.exists(target.path)):
        return ()  # a new image file (or one --dry-run did not create)
    out = proc.run(["wipefs", "--no-act", "--json", target.path]).stdout
    found = json.loads(out).get("signatures", []) if out.strip() else []
    names = [s.get("type") for s in found if s.get("type")]
    if not target.is_file:
        parent = os.path.basename(target.path)
        names += sorted(p for p in os.listdir(f"/sys/class/block/{parent}") if p.startswith(parent))
    return tuple(dict.fromkeys(names))


def wipe(target: Target) -> None:
    """Erase every signature, boot code and both GPT copies: from here on the disk boots nothing.
    An image file is first created or grown (sparse) to the target size."""
    zeros = bytes(MIB)
    fd = os.open(target.path, os.O_WRONLY | (os.O_CREAT if target.is_file else 0), 0o644)
    try:
        if target.is_file and os.fstat(fd).st_size < target.size:
            os.ftruncate(fd, target.size)
        proc.run(["wipefs", "--all", "--force", target.path])
        os.pwrite(fd, zeros, 0)
        if target.size > 2 * MIB:
            os.pwrite(fd, zeros, target.size - MIB)
        os.fsync(fd)
    finally:
        os.close(fd)


def write_table(target: Target, layout: Layout) -> None:
    # An image file has no kernel partition table (its partitions are offset loops): telling the kernel
    # would only cost sfdisk's 250 ms wait for it.
    quiet_kernel = ["--no-tell-kernel"] if target.is_file else []
    proc.run(["sfdisk", "--quiet", *quiet_kernel, "--wipe", "always", "--wipe-partitions", "always", target.path],
             input=render_sfdisk(layout))
    if not target.via_offset_loops:
        proc.run(["partx", "--update", target.path], check=False)  # sfdisk already told the kernel; belt and braces


def wait_for_nodes(paths: list[str], *, timeout: float = WAIT_TIMEOUT) -> None:
    """Wait until udev has created every partition node, or fail naming the missing ones."""
    deadline = time.monotonic() + timeout
    while True:
        proc.run(["udevadm", "settle", f"--timeout={max(int(deadline - time.monotonic()), 1)}"], check=False)
        missing = [p for p in paths if not os.path.exists(p)]
        if not missing:
            return
        if time.monotonic() > deadline:
            raise OperationFailed(f"partition devices did not appear within {timeout:.0f} s: {', '.join(missing)}")
        time.sleep(0.2)


@contextmanager
def partition_devices(target: Target, layout: Layout, *, timeout: float = WAIT_TIMEOUT) -> Iterator[dict[int, str]]:
    """Partition number -> device path for every partition of `layout`; loop devices are detached on exit."""
    if not target.via_offset_loops:
        nodes = {p.number: target.partition_node(p.number) for p in layout.partitions}
        wait_for_nodes(list(nodes.values()), timeout=timeout)
        yield nodes
        return
    with ExitStack() as loops:  # detached in reverse order on exit
        yield {p.number: loops.enter_context(loop_device(target.path, offset=layout.offset(p), size=layout.length(p)))
               for p in layout.partitions}


@contextmanager
def loop_device(path: str | os.PathLike, *, offset: int = 0, size: int | None = None) -> Iterator[str]:
    """A loop device over bytes [offset, offset+size) of the file at `path`, detached on exit. Direct I/O: the
    data is not cached twice (the loop device's page cache and the file's), so the final sync has less to do."""
    device = proc.run(["losetup", "--find", "--show", "--direct-io=on", "--offset", str(offset),
                       *(["--sizelimit", str(size)] if size is not None else []), path]).stdout.strip()
    try:
        yield device
    finally:
        proc.run(["losetup", "--detach", device], check=False)


def mkfs_argv(part: Partition, device: str) -> list[str] | None:
    return fs_argv(part.fstype, part.fs_uuid, part.label, device)


def fs_argv(fstype: str | None, fs_uuid: str | None, label: str | None, device: str) -> list[str] | None:
    """The mkfs (mkswap) command making `fstype` on `device` with the planned UUID; None: nothing to make."""
    if fstype == "ext4":
        return ["mkfs.ext4", "-F", "-q", "-U", fs_uuid, *(["-L", label] if label else []), device]
    if fstype == "xfs":
        return ["mkfs.xfs", "-f", "-q", "-m", f"uuid={fs_uuid}", *(["-L", label] if label else []), device]
    if fstype == "vfat":
        return ["mkfs.vfat", "-F", "32", "-i", fs_uuid.replace("-", ""), "-n", (label or "EFI")[:11], device]
    if fstype == "swap":
        return ["mkswap", "-U", fs_uuid, *(["-L", label] if label else []), device]
    return None  # biosboot: raw, grub writes it


def make_filesystems(layout: Layout, devices: dict[int, str]) -> None:
    for part in layout.partitions:
        argv = mkfs_argv(part, devices[part.number])
        if argv:
            proc.run(argv)


@contextmanager
def mounted(device: str, mountpoint: Path, fstype: str | None = None, options: str | None = None) -> Iterator[Path]:
    mountpoint.mkdir(parents=True, exist_ok=True)
    proc.run(["mount", *(["-t", fstype] if fstype else []), *(["-o", options] if options else []), device,
              mountpoint])
    try:
        yield mountpoint
    finally:
        proc.run(["sync", "--file-system", mountpoint], check=False)
        result = proc.run(["umount", mountpoint], check=False)
        if result.returncode != 0:  # something still holds it; never leave it mounted behind us
            log.warning("umount %s failed (%s); detaching lazily", mountpoint, result.stderr.strip())
            proc.run(["umount", "--lazy", mountpoint], check=False)


@contextmanager
def mounted_tree(layout: Layout, devices: dict[int, str], root_dir: Path) -> Iterator[Path]:
    """Mount / and every other Linux filesystem of the layout below `root_dir` (the ESP is never mounted:
    it is written with mtools). Unmounted in reverse order on exit."""
    with ExitStack() as stack:
        for part in layout.mount_order():
            where = root_dir if part.mountpoint == "/" else root_dir / part.mountpoint.lstrip("/")
            stack.enter_context(mounted(devices[part.number], where, part.fstype))
        yield root_dir
