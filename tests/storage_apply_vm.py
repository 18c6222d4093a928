"""Boot the installer (kernel + initramfs, as a machine PXE-boots it) in qemu with this checkout's
`metalstream` and `deployer` packages and tests/storage_apply_checks.py appended as one more cpio archive,
and run the checks there instead of the agent: the installer's kernel has md and device-mapper (this
machine's kernel may not), and it carries mdadm, lvm, cryptsetup and btrfs-progs as the agent uses them.
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

from metalstream import proc

REPO = Path(__file__).resolve().parent.parent
TIMEOUT = 900
INIT = """#!/bin/sh
export PATH=/usr/sbin:/usr/bin:/sbin:/bin
mount -t proc proc /proc; mount -t sysfs sysfs /sys; mount -t devtmpfs devtmpfs /dev
mkdir -p /run /tmp /dev/pts; mount -t tmpfs tmpfs /run; mount -t tmpfs -o size=3g tmpfs /tmp
for m in virtio_blk loop md_mod raid1 dm_mod dm_crypt dm_thin_pool btrfs vfat; do modprobe $m 2>/dev/null; done
/usr/lib/systemd/systemd-udevd --daemon; udevadm trigger --action=add; udevadm settle
cd /opt/ms && PYTHONPATH=/opt/ms python3 -m storage_apply_checks
echo o > /proc/sysrq-trigger
sleep 30
"""


def overlay(work: Path, image: Path | None = None) -> Path:
    """The appended archive: /ms-init and /opt/ms with the packages and the check scripts (newc, uncompressed:
    the kernel unpacks concatenated archives in order, later files replacing earlier ones)."""
    tree = work / "overlay"
    shutil.rmtree(tree, ignore_errors=True)
    (tree / "opt/ms").mkdir(parents=True)
    for package in ("metalstream", "deployer"):
        shutil.copytree(REPO / package, tree / "opt/ms" / package, ignore=shutil.ignore_patterns("__pycache__"))
    for name in ("storage_plans.py", "storage_apply_checks.py"):
        shutil.copy(REPO / "tests" / name, tree / "opt/ms" / name)
    if image is not None:  # a manifest and its tarball: the checks also run whole installs of it
        (tree / "opt/ms/image").mkdir()
        for path in (image, image.with_suffix(".tar.zst")):
            shutil.copy(path, tree / "opt/ms/image" / path.name)
    (tree / "ms-init").write_text(INIT)
    os.chmod(tree / "ms-init", 0o755)
    files = sorted(str(p.relative_to(tree)) for p in tree.rglob("*"))
    archive = work / "overlay.cpio"
    with open(archive, "wb") as out:
        subprocess.run(["cpio", "--quiet", "-o", "-H", "newc", "-R", "0:0"], input="\n".join(files).encode(),
                       cwd=tree, stdout=out, check=True)
    return archive


def run_checks(kernel: Path, initramfs: Path, work: Path, image: Path | None = None) -> list[dict]:
    """Boot, run tests/storage_apply_checks.py on two fresh 4 GiB virtio disks (and whole installs of the image
    whose manifest is `image`), return its results."""
    work.mkdir(parents=True, exist_ok=True)
    combined = work / "initramfs"
    with open(combined, "wb") as out:
        for part in (initramfs, overlay(work, image)):
            with open(part, "rb") as f:
                shutil.copyfileobj(f, out)
            out.write(bytes(-out.tell() % 4))  # the kernel finds the next archive on a 4-byte boundary, skipping zeros
    disks = []
    for name in ("vda", "vdb"):
        disk = work / f"{name}.img"
        disk.unlink(missing_ok=True)
        disk.touch()
        os.truncate(disk, 4 << 30)
        disks += ["-drive", f"file={disk},if=virtio,format=raw,cache=unsafe"]
    # TCG: KVM is unreliable on these hosts (lab/vm.py)
    console = work / "console.log"
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-cpu", "max", "-m", "4096", "-smp", "2", "-display", "none",
            "-monitor", "none", "-serial", f"file:{console}", "-no-reboot", "-kernel", kernel, "-initrd", combined,
            "-append", "console=ttyS0,115200 rdinit=/ms-init panic=-1 quiet", *disks]
    done = proc.run(argv, timeout=TIMEOUT, check=False)
    output = console.read_text(errors="replace") if console.exists() else ""
    for line in output.splitlines():
        if line.startswith("MS-RESULT "):
            return json.loads(line.removeprefix("MS-RESULT "))
    raise AssertionError(f"the checks printed no result (qemu: {done.stderr.strip()}); console, last 4000 "
                         f"characters:\n{output[-4000:]}")
