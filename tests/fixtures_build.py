"""pytest fixtures for the build tests (imported by conftest.py)."""
from __future__ import annotations

import gzip
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


# ---- real Debian builds --------------------------------------------------------------------------
import json  # noqa: E402
import os  # noqa: E402

from conftest import REPO, require_root, require_tools, run_cli  # noqa: E402

# Downloaded packages are kept here between test sessions (the builder's normal package cache).
BUILD_TEST_CACHE = Path(os.environ.get("METALSTREAM_TEST_CACHE", "/var/cache/metalstream"))
BUILD_TIMEOUT = 1800


def build_image(kickstart: Path, out: Path, *extra: str, name: str | None = None):
    """Run the real `metalstream build` CLI; returns the CompletedProcess."""
    args = ["build", str(kickstart), "-o", str(out), "--cache-dir", str(BUILD_TEST_CACHE), "--zstd-level", "3", *extra]
    if name:
        args += ["--name", name]
    return run_cli(*args, timeout=BUILD_TIMEOUT)


def require_build_tools() -> None:
    require_root()
    require_tools("mmdebstrap", "tar", "zstd", "unshare", "dpkg-query")


_IMAGES: dict[str, Path] = {}


def built_image(tmp_path_factory, kickstart_name: str) -> Path:
    """Manifest path of kickstarts/KICKSTART_NAME.ks built by `metalstream build` (once per session)."""
    require_build_tools()
    kickstart = REPO / "kickstarts" / f"{kickstart_name}.ks"
    key = str(kickstart)
    if key not in _IMAGES:
        out = tmp_path_factory.mktemp(kickstart_name)
        result = build_image(kickstart, out)
        if result.returncode != 0:
            pytest.fail(f"building {kickstart_name} failed (exit {result.returncode}):\n{result.stderr[-4000:]}")
        manifest = out / f"{kickstart_name}.json"
        assert json.loads(manifest.read_text())["format"] == "metalstream-image/1"
        _IMAGES[key] = manifest
    return _IMAGES[key]


@pytest.fixture(scope="session")
def debian_minimal_image(tmp_path_factory) -> Path:
    """Manifest path of kickstarts/debian-minimal.ks built by `metalstream build` (once per session)."""
    return built_image(tmp_path_factory, "debian-minimal")


@pytest.fixture(scope="session")
def debian_secureboot_image(tmp_path_factory) -> Path:
    """kickstarts/debian-secureboot.ks: debian-minimal plus Debian's signed shim and grub."""
    return built_image(tmp_path_factory, "debian-secureboot")


@pytest.fixture(scope="session")
def debian_storage_image(tmp_path_factory) -> Path:
    """kickstarts/debian-storage.ks: debian-minimal plus lvm2, thin-provisioning-tools, mdadm, cryptsetup
    (with cryptsetup-initramfs) and btrfs-progs, and no disk layout of its own (the storage tests bring theirs)."""
    return built_image(tmp_path_factory, "debian-storage")


def initramfs_files(data: bytes) -> dict[str, bytes | None]:
    """{name: content} of every entry of an initramfs (None for anything but a regular file): the newc cpio
    archives it concatenates, plain, zstd- or gzip-compressed (update-initramfs falls back to gzip when the image
    has no zstd), read without unpacking."""
    files: dict[str, bytes | None] = {}
    offset = 0
    while offset < len(data):
        if data[offset] == 0:  # padding between archives
            offset += 1
        elif data[offset:offset + 4] == bytes.fromhex("28b52ffd"):
            data = subprocess.run(["zstd", "-dc"], input=data[offset:], capture_output=True, check=True).stdout
            offset = 0
        elif data[offset:offset + 2] == bytes.fromhex("1f8b"):
            data, offset = gzip.decompress(data[offset:]), 0
        elif data[offset:offset + 6] == b"070701":
            offset = _read_newc(data, offset, files)
        else:
            raise AssertionError(f"initramfs: unknown data at offset {offset}: {data[offset:offset + 8]!r}")
    return files


def _read_newc(data: bytes, offset: int, files: dict[str, bytes | None]) -> int:
    """Read one newc archive starting at `offset` into `files`; return the offset after its trailer."""
    while True:
        fields = [int(data[offset + 6 + 8 * i:offset + 14 + 8 * i], 16) for i in range(13)]
        mode, size, name_size = fields[1], fields[6], fields[11]
        name = data[offset + 110:offset + 110 + name_size - 1].decode()
        offset = (offset + 110 + name_size + 3) & ~3
        if name == "TRAILER!!!":
            return offset
        files[name.removeprefix("./")] = data[offset:offset + size] if mode & 0o170000 == 0o100000 else None
        offset = (offset + size + 3) & ~3


def tar_listing(tarball: Path) -> list[str]:
    """`tar -tv` lines of a .tar.zst."""
    return subprocess.run(["tar", "--zstd", "-tvf", str(tarball), "--numeric-owner"], capture_output=True,
                          text=True, check=True).stdout.splitlines()


def tar_member(tarball: Path, member: str) -> bytes:
    return subprocess.run(["tar", "--zstd", "-xOf", str(tarball), member], capture_output=True, check=True).stdout


def tar_members(tarball: Path) -> list:
    """Every member (tarfile.TarInfo) of a .tar.zst, read as a stream (zstd -dc | tarfile)."""
    import tarfile

    zstd = subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=zstd.stdout, mode="r|") as archive:
            members = [member for member in archive]
    finally:
        zstd.stdout.close()
        zstd.wait()
    return members
