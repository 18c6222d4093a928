"""Assemble the initramfs tree: the trimmed root, the agent (core + deployer packages), /init, a fresh
module index.

Works on a copy (the staging directory) so the build root is never changed. Every step that runs
a program goes through metalstream.proc or the builder's Chroot (compiling bytecode and checking that
the agent starts both run the root's own python3).
"""
from __future__ import annotations

import hashlib
import os
import stat
import subprocess
import tempfile
from pathlib import Path

from metalstream import proc, rootfs
from metalstream.agent_sources import agent_sources, sources_sha256
from metalstream.errors import OperationFailed
from metalstream.tls import INSTALLER_CA_PATH, read_ca_certificate

from ..chroot import Chroot

HERE = Path(__file__).resolve().parent
PYTHON_SITE = "usr/lib/python3/dist-packages"
UDHCPC_SCRIPT = "usr/share/metalstream/udhcpc.sh"
# Busybox applets the installer needs as commands of their own (Debian's busybox package installs no
# applet links): DHCP for /init, and a forced reboot for the agent (there is no systemd here).
BUSYBOX_APPLETS = ("udhcpc", "reboot", "poweroff")
# Bytecode is compiled for these trees; unchecked-hash .pyc files do not depend on mtimes.
BYTECODE_GLOBS = ("usr/lib/python3", "usr/lib/python3.*")


def copy_selected(root: Path, paths: list[str], stage: Path) -> None:
    """Copy the listed root-relative paths (dirs listed explicitly) with GNU tar, keeping modes,
    owners, hard links and symlinks."""
    with tempfile.NamedTemporaryFile("wb", prefix="installer-files-", suffix=".list") as listing:
        listing.write(b"".join(os.fsencode(p) + b"\0" for p in paths))
        listing.flush()
        packer = proc.spawn(["tar", "-C", root, "--null", "--no-recursion", "-T", listing.name,
                             "--numeric-owner", "-cf", "-"], stdout=subprocess.PIPE)
        try:
            unpacker = proc.spawn(["tar", "-C", stage, "--numeric-owner", "-xpf", "-"], stdin=packer.stdout)
        finally:
            packer.stdout.close()  # the unpacker holds the pipe now; a dying unpacker stops the packer
        proc.wait_checked(unpacker)
        proc.wait_checked(packer)


def add_agent(stage: Path) -> None:
    """Copy this checkout's agent sources (the core and deployer packages, no bytecode) into the stage."""
    for name, source in agent_sources():
        rootfs.write_file(stage, f"/{PYTHON_SITE}/{name}", Path(source).read_bytes())


def agent_sources_sha256() -> str:
    """Digest of what add_agent and add_init copy from this checkout: a stale installer is one whose
    recorded digest differs (the demo rebuilds it then)."""
    return sources_sha256([(name, HERE / name) for name in ("init.sh", "udhcpc.sh")])


def add_init(stage: Path) -> None:
    """/init, its DHCP event script, and the console node the kernel opens before /init runs."""
    for source, target in (("init.sh", "init"), ("udhcpc.sh", UDHCPC_SCRIPT)):
        rootfs.write_file(stage, target, (HERE / source).read_bytes(), mode=0o755)
    busybox = next((p for p in ("usr/bin/busybox", "bin/busybox") if rootfs.resolve(stage, p).is_file()), None)
    if busybox is None:
        raise OperationFailed("the installer root has no busybox (needed for DHCP): add busybox to %packages")
    for applet in BUSYBOX_APPLETS:
        if not os.path.lexists(rootfs.resolve(stage, f"/usr/sbin/{applet}", follow_last=False)):
            rootfs.writable_path(stage, f"/usr/sbin/{applet}").symlink_to(f"/{busybox}")
    console = rootfs.writable_path(stage, "/dev/console")
    if not console.exists():
        os.mknod(console, 0o600 | stat.S_IFCHR, os.makedev(5, 1))


def add_ca(stage: Path, ca_file: Path) -> str:
    """The service's CA certificate where the agent looks for it; returns its sha256 (for the manifest)."""
    data = read_ca_certificate(ca_file, location="--ca")
    rootfs.write_file(stage, INSTALLER_CA_PATH, data, mode=0o644)
    return hashlib.sha256(data).hexdigest()


def rebuild_module_index(stage: Path, kernel_version: str) -> None:
    """depmod over the kept modules only, so modprobe and udev see exactly what ships."""
    proc.run(["depmod", "-b", stage, kernel_version])


def compile_and_check(stage: Path, epoch: int) -> None:
    """Compile bytecode with the root's python3 and prove the agent's command line starts there."""
    # PYTHONDONTWRITEBYTECODE: the interpreter's own start-up must not leave timestamp .pyc files
    # behind (they would go stale when mtimes are clamped); -f recompiles whatever is there.
    env = {"PYTHONHASHSEED": "0", "PYTHONDONTWRITEBYTECODE": "1", "SOURCE_DATE_EPOCH": str(epoch)}
    trees = sorted(f"/{p.relative_to(stage)}" for pattern in BYTECODE_GLOBS for p in stage.glob(pattern)
                   if p.is_dir() and not p.is_symlink())
    with Chroot(stage, env=env) as chroot:
        chroot.run(["python3", "-m", "compileall", "-q", "-f", "-j", "0", "--invalidation-mode", "unchecked-hash",
                    *trees], timeout=900)
        checked = chroot.run(["python3", "-m", "metalstream", "agent", "--help"], check=False)
    if checked.returncode != 0:
        raise OperationFailed("the deployer agent does not start in the installer environment "
                              f"(python3 -m metalstream agent --help exited {checked.returncode}): "
                              + " | ".join(checked.stderr.strip().splitlines()[-5:]))


def clamp_mtimes(stage: Path, epoch: int) -> None:
    """No entry newer than SOURCE_DATE_EPOCH (symlinks themselves included)."""
    for dirpath, dirnames, filenames in os.walk(stage):
        for name in [*dirnames, *filenames, ""]:
            path = os.path.join(dirpath, name) if name else dirpath
            if os.lstat(path).st_mtime > epoch:
                os.utime(path, (epoch, epoch), follow_symlinks=False)


def tree_size(stage: Path) -> tuple[int, int]:
    """(bytes in regular files, number of entries) of the staged tree."""
    total = count = 0
    for dirpath, dirnames, filenames in os.walk(stage):
        count += len(dirnames) + len(filenames)
        for name in filenames:
            st = os.lstat(os.path.join(dirpath, name))
            if stat.S_ISREG(st.st_mode):
                total += st.st_size
    return total, count
