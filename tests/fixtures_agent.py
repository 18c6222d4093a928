"""pytest fixtures for the agent tests (imported by conftest.py).

- `debian_image`: a real bootable Debian image (tar.zst + manifest in the docs/contracts.md format),
  installed with mmdebstrap (not the whole builder pipeline), packed by the test image factory, and cached
  under /var/cache/metalstream-tests/
  keyed by the package list; `python tests/fixtures_agent.py` builds it ahead of a test run.
- `synthetic_image`: a small tarball with modes, owners, xattrs, hard links, symlinks and ./boot/efi.
- `sparse_disk`: factory for sparse disk image files, removed afterwards.
- `no_leaks`: session guard asserting no loop device or mount of ours is left behind.
"""
from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import shutil
import stat
import subprocess
import sys
import tarfile
import tempfile
import time
from pathlib import Path

import pytest

from fixtures_images import make_image

CACHE = Path(os.environ.get("METALSTREAM_TEST_CACHE", "/var/cache/metalstream-tests"))
DEBIAN_PACKAGES = (
    "linux-image-amd64", "systemd-sysv", "udev", "initramfs-tools", "zstd",
    "grub-efi-amd64-bin", "grub-pc-bin", "grub2-common", "openssh-server", "iproute2",
)
DEBIAN_RECIPE_VERSION = "2"  # 2: packed by the builder's pack stage, manifest by the contract's writer
SYNTHETIC_KERNEL = "0.0.1-synthetic"
APT_SOURCES = Path("/etc/apt/sources.list.d/debian.sources")


def _debian_kernels(root: Path) -> list[dict]:
    kernels = []
    for vmlinuz in sorted((root / "boot").glob("vmlinuz-*")):
        version = vmlinuz.name[len("vmlinuz-"):]
        initrd = root / "boot" / f"initrd.img-{version}"
        if not initrd.exists():
            raise RuntimeError(f"{initrd} missing: the kernel's initramfs was not generated")
        kernels.append({"version": version, "kernel": f"/boot/{vmlinuz.name}", "initramfs": f"/boot/{initrd.name}"})
    if not kernels:
        raise RuntimeError(f"no kernel in {root}/boot")
    return kernels


def build_debian_image(cache: Path = CACHE, packages: tuple[str, ...] = DEBIAN_PACKAGES) -> Path:
    """Build (or reuse) the cached Debian test image with `packages`; returns the manifest path."""
    key = hashlib.sha256(f"{DEBIAN_RECIPE_VERSION} {' '.join(packages)}".encode()).hexdigest()[:16]
    out = cache / f"debian-{key}"
    manifest = out / "debian.json"
    cache.mkdir(parents=True, exist_ok=True)
    with open(cache / f"debian-{key}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)  # another test session (or helper) may be building it right now
        if manifest.exists():
            return manifest
        work = Path(tempfile.mkdtemp(prefix="debian-build-", dir=cache))
        try:
            root = work / "root"
            with open(APT_SOURCES) as sources:
                subprocess.run(
                    ["mmdebstrap", "--variant=minbase", "--include=" + ",".join(packages),
                     "--customize-hook=echo -n > \"$1/etc/machine-id\"",
                     "--customize-hook=rm -f \"$1\"/etc/ssh/ssh_host_*",
                     "bookworm", str(root), "-"],
                    stdin=sources, check=True, capture_output=True, text=True)
            dpkg = subprocess.run(["dpkg-query", f"--admindir={root}/var/lib/dpkg", "-W",
                                   "-f=${Package}\t${Version}\t${Architecture}\n"],
                                  capture_output=True, text=True, check=True)
            packages = [dict(zip(("name", "version", "arch"), line.split("\t")))
                        for line in dpkg.stdout.splitlines()]
            pack_dir = work / "out"
            make_image(root, pack_dir, "debian", family="debian", release="bookworm",
                       kernels=_debian_kernels(root), packages=packages)
            pack_dir.rename(out)
        except subprocess.CalledProcessError as exc:
            raise RuntimeError(f"{exc.cmd[0]} failed: {exc.stderr[-3000:]}") from exc
        finally:
            shutil.rmtree(work, ignore_errors=True)
    return manifest


def make_synthetic_tree(root: Path) -> None:
    """A small root with the file features an image must keep: modes, owners, xattrs, hard links,
    symlinks, an empty dir, a setuid file and /boot/efi content destined for the ESP."""
    for d in ("etc", "usr/bin", "var/empty", "boot/efi/EFI/debian", "home/user", "tmp"):
        (root / d).mkdir(parents=True, exist_ok=True)
    os.chmod(root / "tmp", 0o1777)
    (root / "etc/os-release").write_text('ID=synthetic\nNAME="Synthetic"\n')
    (root / "etc/fstab").write_text("# empty\n")
    (root / "etc/hostname").write_text("localhost\n")
    (root / "etc/shadow").write_text("root:*:19000:0:99999:7:::\nuser:!:19000:0:99999:7:::\n")
    os.chmod(root / "etc/shadow", 0o640)
    tool = root / "usr/bin/tool"
    tool.write_bytes(b"#!/bin/sh\necho tool\n" + bytes(range(256)) * 64)
    os.chmod(tool, 0o4755)
    os.link(tool, root / "usr/bin/tool-hardlink")
    os.symlink("tool", root / "usr/bin/tool-symlink")
    os.symlink("../usr/bin", root / "bin")
    secret = root / "home/user/secret"
    secret.write_text("owned by 1000:1000\n")
    os.chown(secret, 1000, 1000)
    os.chown(root / "home/user", 1000, 1000)
    os.chmod(secret, 0o600)
    os.setxattr(tool, "user.metalstream", b"xattr-value")
    os.setxattr(root / "etc/os-release", "user.comment", b"hello")
    (root / "boot/efi/EFI/debian/grub.cfg").write_text("# from the image's /boot/efi\n")
    (root / "boot/efi/EFI/debian/blob.bin").write_bytes(os.urandom(4096))
    # Enough to run the bootloader phase: a (fake) kernel and initramfs, and this machine's grub modules.
    (root / f"boot/vmlinuz-{SYNTHETIC_KERNEL}").write_bytes(b"not really a kernel\n")
    (root / f"boot/initrd.img-{SYNTHETIC_KERNEL}").write_bytes(b"not really an initramfs\n")
    for platform in ("x86_64-efi", "i386-pc"):
        shutil.copytree(f"/usr/lib/grub/{platform}", root / "usr/lib/grub" / platform)
    (root / "usr/lib/systemd").mkdir(parents=True)
    (root / "usr/lib/systemd/systemd-networkd").write_text("#!/bin/sh\n")


@pytest.fixture(scope="session")
def debian_image() -> Path:
    """Manifest path of the cached, real, bootable Debian test image (tarball beside it)."""
    if os.geteuid() != 0:
        pytest.skip("building the Debian test image needs root (mmdebstrap in root mode)")
    return build_debian_image()


@pytest.fixture(scope="session")
def synthetic_image(tmp_path_factory) -> Path:
    """Manifest path of a small synthetic image (fake kernel: installs fully, boots nothing) for fast tests."""
    if os.geteuid() != 0:
        pytest.skip("chown to other users needs root")
    work = tmp_path_factory.mktemp("synthetic")
    root = work / "root"
    root.mkdir()
    make_synthetic_tree(root)
    kernels = [{"version": SYNTHETIC_KERNEL, "kernel": f"/boot/vmlinuz-{SYNTHETIC_KERNEL}",
                "initramfs": f"/boot/initrd.img-{SYNTHETIC_KERNEL}"}]
    return make_image(root, work, "synthetic", family="synthetic", kernels=kernels)


def _our_loops(marker: str) -> list[str]:
    listing = subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if marker in line]


def _our_mounts(marker: str) -> list[str]:
    listing = subprocess.run(["findmnt", "-rn", "-o", "TARGET,SOURCE"], capture_output=True, text=True).stdout
    return [line for line in listing.splitlines() if marker in line]


@pytest.fixture(scope="session")
def agent_workdir(tmp_path_factory):
    """Session work dir for agent disk tests; at the end asserts no loop device or mount under it remains."""
    work = tmp_path_factory.mktemp("agent-disk")
    yield work
    loops, mounts = _our_loops(str(work)), _our_mounts(str(work))
    for line in loops:  # clean up so one failing session does not poison the next, then fail loudly
        subprocess.run(["losetup", "-d", line.split(":")[0]], check=False)
    assert not loops and not mounts, f"left behind: loops={loops} mounts={mounts}"


@pytest.fixture
def sparse_disk(agent_workdir, request):
    """Factory: sparse_disk(size_bytes) -> path of a sparse file, removed after the test."""
    made: list[Path] = []

    def make(size: int, name: str | None = None) -> Path:
        path = agent_workdir / (name or f"{request.node.name[:40]}-{len(made)}.img")
        with open(path, "wb") as f:
            f.truncate(size)
        made.append(path)
        return path

    yield make
    for path in made:
        path.unlink(missing_ok=True)


def leftover_state() -> tuple[str, str]:
    """(losetup -a, findmnt) snapshot, for tests that assert they changed nothing."""
    return (subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout,
            subprocess.run(["findmnt", "-rn"], capture_output=True, text=True).stdout)


if __name__ == "__main__":
    started = time.monotonic()
    print(build_debian_image(Path(sys.argv[1]) if len(sys.argv) > 1 else CACHE))
    print(f"{time.monotonic() - started:.0f} s", file=sys.stderr)


# ---- helpers for inspecting installed disk images (tests only; the deployer has its own code) ----

def gpt_partitions(image: Path) -> list[dict]:
    """sfdisk's view of the image's GPT: [{node, start, size, type, name, ...}]."""
    out = subprocess.run(["sfdisk", "--json", str(image)], capture_output=True, text=True, check=True).stdout
    table = json.loads(out)["partitiontable"]
    assert table["label"] == "gpt", table
    return table["partitions"]


@contextlib.contextmanager
def partition_loop(image: Path, part: dict, *, read_only: bool = True):
    """An offset loop device over one partition of `image`, always detached."""
    argv = ["losetup", "--find", "--show", "--offset", str(part["start"] * 512),
            "--sizelimit", str(part["size"] * 512), *(["--read-only"] if read_only else []), str(image)]
    device = subprocess.run(argv, capture_output=True, text=True, check=True).stdout.strip()
    try:
        yield device
    finally:
        subprocess.run(["losetup", "--detach", device], check=False)


@contextlib.contextmanager
def mounted_partition(image: Path, part: dict, where: Path):
    with partition_loop(image, part) as device:
        where.mkdir(parents=True, exist_ok=True)
        subprocess.run(["mount", "-o", "ro", device, str(where)], check=True)
        try:
            yield where
        finally:
            subprocess.run(["umount", str(where)], check=False)


def blkid(device: str) -> dict[str, str]:
    out = subprocess.run(["blkid", "-p", "-o", "export", device], capture_output=True, text=True).stdout
    return dict(line.split("=", 1) for line in out.splitlines() if "=" in line)


def esp_files(image: Path, part: dict) -> list[str]:
    """Every path on the ESP (mtools on an image offset: no mount, no loop device)."""
    out = subprocess.run(["mdir", "-i", f"{image}@@{part['start'] * 512}", "-/", "-b", "::/"],
                         capture_output=True, text=True, env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
    return sorted(line.strip().removeprefix("::") for line in out.stdout.splitlines() if line.strip())


def compare_with_tarball(tarball: Path, root: Path, *, skip=lambda name: False) -> tuple[int, list[str]]:
    """Walk the tar.zst and check every entry in `root`: type, mode, owner, size, mtime, symlink target,
    hard links (same inode) and xattrs. Returns (entries checked, mismatches)."""
    problems: list[str] = []
    checked = 0
    zstd = subprocess.Popen(["zstd", "-dc", str(tarball)], stdout=subprocess.PIPE)
    try:
        with tarfile.open(fileobj=zstd.stdout, mode="r|") as tar:
            for member in tar:
                name = member.name.removeprefix("./")
                if not name or skip(name):
                    continue
                checked += 1
                path = root / name
                try:
                    st = os.lstat(path)
                except FileNotFoundError:
                    problems.append(f"{name}: missing")
                    continue
                if member.islnk():
                    target = os.lstat(root / member.linkname.removeprefix("./"))
                    if (st.st_ino, st.st_dev) != (target.st_ino, target.st_dev):
                        problems.append(f"{name}: not a hard link to {member.linkname}")
                    continue
                kind = {tarfile.DIRTYPE: stat.S_ISDIR, tarfile.SYMTYPE: stat.S_ISLNK,
                        tarfile.REGTYPE: stat.S_ISREG, tarfile.AREGTYPE: stat.S_ISREG,
                        tarfile.CHRTYPE: stat.S_ISCHR, tarfile.BLKTYPE: stat.S_ISBLK,
                        tarfile.FIFOTYPE: stat.S_ISFIFO}[member.type]
                if not kind(st.st_mode):
                    problems.append(f"{name}: wrong file type")
                    continue
                if not member.issym() and stat.S_IMODE(st.st_mode) != member.mode:
                    problems.append(f"{name}: mode {oct(stat.S_IMODE(st.st_mode))} != {oct(member.mode)}")
                if (st.st_uid, st.st_gid) != (member.uid, member.gid):
                    problems.append(f"{name}: owner {st.st_uid}:{st.st_gid} != {member.uid}:{member.gid}")
                if member.issym() and os.readlink(path) != member.linkname:
                    problems.append(f"{name}: symlink -> {os.readlink(path)} != {member.linkname}")
                if member.isfile() and st.st_size != member.size:
                    problems.append(f"{name}: size {st.st_size} != {member.size}")
                if (member.isfile() or member.issym()) and int(st.st_mtime) != int(member.mtime):
                    problems.append(f"{name}: mtime {int(st.st_mtime)} != {int(member.mtime)}")
                for key, value in member.pax_headers.items():
                    if key.startswith("SCHILY.xattr."):
                        attr = key.removeprefix("SCHILY.xattr.")
                        try:
                            got = os.getxattr(path, attr, follow_symlinks=False)
                        except OSError:
                            got = None
                        if got != value.encode("utf-8", "surrogateescape"):
                            problems.append(f"{name}: xattr {attr} {got!r} != {value!r}")
    finally:
        zstd.stdout.close()
        zstd.wait()
    return checked, problems
