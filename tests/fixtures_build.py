"""pytest fixtures for the build tests (imported by conftest.py)."""
from __future__ import annotations

import shutil
import subprocess
from pathlib import Path

import pytest

BUSYBOX_APPLETS = ("sh", "cat", "ls", "sleep", "echo", "true", "false", "mount", "readlink", "ps", "id", "env", "touch")


def make_busybox_root(root: Path) -> Path:
    """A tiny root (static busybox + applet links) that commands can be chrooted into."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox (static) is missing: run `bash .ci/setup`, which installs busybox-static")
    (root / "bin").mkdir(parents=True)
    (root / "usr/sbin").mkdir(parents=True)
    (root / "etc").mkdir()
    shutil.copy2(busybox, root / "bin/busybox")
    for applet in BUSYBOX_APPLETS:
        (root / "bin" / applet).symlink_to("busybox")
    return root


@pytest.fixture
def busybox_root(tmp_path: Path) -> Path:
    return make_busybox_root(tmp_path / "root")


def host_mounts_under(path: Path) -> list[str]:
    """Mount points the host sees at or below `path`."""
    out = subprocess.run(["findmnt", "-rn", "-o", "TARGET"], capture_output=True, text=True, check=True).stdout
    prefix = str(path.resolve())
    return [m for m in out.splitlines() if m == prefix or m.startswith(prefix + "/")]


def processes_with(marker: str) -> list[str]:
    """Command lines of running processes that contain `marker`."""
    out = subprocess.run(["ps", "-eo", "pid=,args="], capture_output=True, text=True, check=True).stdout
    return [line for line in out.splitlines() if marker in line and "ps -eo" not in line]
