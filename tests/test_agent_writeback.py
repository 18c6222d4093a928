"""deployer.writeback: data written under EarlyWriteback reaches the disk while the block still runs."""
from __future__ import annotations

import os
import time
from pathlib import Path

import pytest

from bench.host import fresh_ext4
from deployer.writeback import EarlyWriteback

from conftest import require_root, require_tools

pytestmark = pytest.mark.root

DATA = 32 << 20


def _sectors_written(device: str) -> int:
    """Field 7 of /sys/block/<dev>/stat: 512-byte sectors written to the device so far."""
    return int(Path(f"/sys/block/{Path(device).name}/stat").read_text().split()[6])


def _device_of(mountpoint: Path) -> str:
    for line in Path("/proc/self/mounts").read_text().splitlines():
        source, target = line.split()[:2]
        if target == str(mountpoint):
            return source
    raise AssertionError(f"{mountpoint} is not mounted")


def _write(path: Path, size: int) -> None:
    with open(path, "wb") as handle:
        handle.write(os.urandom(size))


def _wait_for(condition, seconds: float) -> bool:
    deadline = time.monotonic() + seconds
    while time.monotonic() < deadline:
        if condition():
            return True
        time.sleep(0.05)
    return condition()


def test_data_reaches_the_disk_while_the_block_runs(tmp_path):
    require_root()
    require_tools("mkfs.ext4", "losetup")
    with fresh_ext4(tmp_path / "disk.img", 256 << 20, tmp_path / "root") as root:
        device = _device_of(root)
        with EarlyWriteback(root, interval=0.1) as writeback:
            before = _sectors_written(device)
            _write(root / "payload", DATA)
            assert _wait_for(lambda: _sectors_written(device) - before >= DATA // 512, 10), \
                f"only {(_sectors_written(device) - before) * 512} of {DATA} bytes written back during the block"
        assert writeback.rounds >= 1  # the kernel alone waits 30 s (dirty_expire_centisecs) for data this small


def test_stops_and_closes_its_descriptor(tmp_path):
    fds_before = set(os.listdir("/proc/self/fd"))
    with EarlyWriteback(tmp_path, interval=0.01) as writeback:
        assert _wait_for(lambda: writeback.rounds >= 2, 10)
    assert not writeback._thread.is_alive()
    assert set(os.listdir("/proc/self/fd")) <= fds_before
