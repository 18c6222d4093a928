"""Fixtures for the installer-environment tests (import them from tests/test_build_installer*.py).

The installer is built once per session exactly as a user builds it, with the real
`metalstream build kickstarts/installer.ks --format installer` (packages come from the builder's
own cache in /var/cache/metalstream); `--keep-root` keeps the root so tests can rebuild from it.
"""
from __future__ import annotations

import http.server
import json
import re
import shutil
import subprocess
import tempfile
import threading
import time
from contextlib import contextmanager
from pathlib import Path

import pytest

from metalstream import proc

REPO = Path(__file__).resolve().parent.parent
INSTALLER_KS = REPO / "kickstarts/installer.ks"
INSTALLER_EPOCH = 1_700_000_000
QEMU_BOOT_TIMEOUT = 300.0


@pytest.fixture(scope="session")
def installer_build(tmp_path_factory) -> tuple[dict, Path, Path]:
    """(manifest, output dir, kept build root) of one real
    `metalstream build kickstarts/installer.ks --format installer -o OUT --keep-root`."""
    from conftest import require_root, require_tools, run_cli

    require_root()
    require_tools("mmdebstrap", "tar", "cpio", "zstd", "depmod", "unshare")
    out = tmp_path_factory.mktemp("installer-build") / "out"
    try:
        result = run_cli("build", str(INSTALLER_KS), "--format", "installer", "-o", str(out), "--keep-root",
                         timeout=1800)
        assert result.returncode == 0, f"installer build failed:\n{result.stderr[-4000:]}"
        manifest = json.loads((out / "installer.json").read_text())
        roots = list(out.glob(".installer.build-*/root"))
        assert len(roots) == 1, f"expected one kept build root, found {roots}"
        yield manifest, out, roots[0]
    finally:
        shutil.rmtree(out, ignore_errors=True)


def installer_context(root: Path, out_dir: Path, workdir: Path, *, name: str = "installer",
                      epoch: int = INSTALLER_EPOCH, **options):
    """The BuildContext the builder pipeline hands make_installer for kickstarts/installer.ks."""
    from tarball_builder.context import BuildContext, BuildOptions
    from tarball_builder.kickstart import parse_kickstart

    workdir.mkdir(parents=True, exist_ok=True)
    return BuildContext(kickstart=parse_kickstart(INSTALLER_KS),
                        options=BuildOptions(output_dir=out_dir, name=name, image_format="installer", **options),
                        root=root, workdir=workdir, source_date_epoch=epoch)


def initramfs_listing(initramfs: Path) -> list[str]:
    """Entry names of a zstd newc initramfs, root-relative without `./` (`.` is the root itself)."""
    unzstd = proc.spawn(["zstd", "-dc", initramfs], stdout=subprocess.PIPE)
    try:
        lister = proc.spawn(["cpio", "-it", "--quiet"], stdin=unzstd.stdout, stdout=subprocess.PIPE)
    finally:
        unzstd.stdout.close()
    names = lister.stdout.read().decode().splitlines()
    proc.wait_checked(lister)
    proc.wait_checked(unzstd)
    return [name.removeprefix("./") or "." for name in names]


@contextmanager
def unpacked_initramfs(initramfs: Path):
    """The initramfs unpacked into a temporary directory (removed afterwards)."""
    where = Path(tempfile.mkdtemp(prefix="initramfs-"))
    try:
        unzstd = proc.spawn(["zstd", "-dc", initramfs], stdout=subprocess.PIPE)
        try:
            unpack = proc.spawn(["cpio", "-idm", "--quiet", "--no-absolute-filenames"], stdin=unzstd.stdout,
                                cwd=where)
        finally:
            unzstd.stdout.close()
        proc.wait_checked(unpack)
        proc.wait_checked(unzstd)
        yield where
    finally:
        shutil.rmtree(where, ignore_errors=True)


class AgentEndpoint(http.server.ThreadingHTTPServer):
    """A stand-in for the service: records every request and answers 401 (token refused)."""

    daemon_threads = True

    def __init__(self):
        self.requests: list[dict] = []
        self.arrived = threading.Event()
        super().__init__(("127.0.0.1", 0), _RefusingHandler)


class _RefusingHandler(http.server.BaseHTTPRequestHandler):
    def _refuse(self) -> None:
        length = int(self.headers.get("Content-Length") or 0)
        body = self.rfile.read(length) if length else b""
        self.server.requests.append({"method": self.command, "path": self.path,
                                     "authorization": self.headers.get("Authorization"), "body": body})
        self.server.arrived.set()
        payload = b'{"error": "unknown or expired agent token"}'
        self.send_response(401)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(payload)))
        self.end_headers()
        self.wfile.write(payload)

    do_GET = do_POST = _refuse

    def log_message(self, *args) -> None:  # keep pytest output clean
        pass


@pytest.fixture
def agent_endpoint():
    server = AgentEndpoint()
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join(timeout=10)


class QemuGuest:
    """A qemu (TCG) guest booting a kernel + initramfs, its serial console in a log file."""

    def __init__(self, process, log: Path):
        self.process = process
        self.log = log

    def text(self) -> str:
        return self.log.read_text(errors="replace") if self.log.exists() else ""

    def wait_for(self, pattern: str, timeout: float) -> bool:
        """Wait until the serial log matches the regex `pattern`; False on timeout or qemu exit."""
        deadline = time.monotonic() + timeout
        regex = re.compile(pattern, re.MULTILINE)
        while time.monotonic() < deadline:
            if regex.search(self.text()):
                return True
            if self.process.poll() is not None:
                return bool(regex.search(self.text()))
            time.sleep(1)
        return False


@contextmanager
def qemu_boot(kernel: Path, initrd: Path, append: str, log: Path, *, memory_mb: int = 1024):
    """Boot kernel + initrd with user networking on a virtio NIC; qemu is always killed afterwards."""
    argv = ["qemu-system-x86_64", "-accel", "tcg", "-m", str(memory_mb), "-smp", "2",
            "-kernel", kernel, "-initrd", initrd, "-append", append,
            "-display", "none", "-vga", "none", "-monitor", "none", "-serial", f"file:{log}",
            "-netdev", "user,id=n0", "-device", "virtio-net-pci,netdev=n0", "-no-reboot"]
    process = proc.spawn(argv, stdout=subprocess.DEVNULL)
    try:
        yield QemuGuest(process, log)
    finally:
        process.kill()
        process.communicate(timeout=30)
