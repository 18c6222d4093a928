"""`metalstream build` of an RPM image end to end (real dnf, the real pipeline, the real CLI) from the
repository tests/fixtures_rpm.py builds: contents, manifest, reproducibility, cache reuse, bad input."""
from __future__ import annotations

import functools
import hashlib
import http.server
import json
import os
import signal
import subprocess
import tarfile
import threading
from pathlib import Path

import pytest

from metalstream import proc

from conftest import METALSTREAM, REPO, require_root, require_tools, run_cli
from fixtures_rpm import DATA, line_of, mounts_below, rpm_kickstart

pytestmark = pytest.mark.root
KICKSTART = DATA / "msdemo.ks.j2"


@pytest.fixture(autouse=True)
def _root_and_tools():
    require_root()
    require_tools("dnf", "rpm", "unshare", "zstd", "tar")


def build(ks: Path, out: Path, repo_url: str, *extra: str):
    result = run_cli("build", str(ks), "-o", str(out), "--var", f"repo_url={repo_url}", *extra)
    assert mounts_below(out) == []
    assert not list(out.glob(".*.build-*")), "the build's scratch directory (partial root) was left behind"
    return result


@pytest.fixture(scope="module")
def rpm_image(rpm_repo, tmp_path_factory):
    base = tmp_path_factory.mktemp("rpm-image")
    result = build(KICKSTART, base / "out", rpm_repo.url, "--cache-dir", str(base / "cache"))
    assert result.returncode == 0, result.stderr
    manifest = json.loads((base / "out/msdemo.json").read_text())
    tarball = base / "out" / manifest["tarball"]
    with _zstd_tar(tarball) as tar:
        members = {m.name: m for m in tar.getmembers()}
    return manifest, tarball, members, result


def _zstd_tar(tarball: Path) -> tarfile.TarFile:
    plain = tarball.with_suffix("")
    if not plain.exists():
        proc.run(["zstd", "-q", "-d", "-o", plain, tarball])
    return tarfile.open(plain)


def test_image_has_rpmdb_and_scriptlet_evidence_and_no_caches(rpm_image):
    manifest, tarball, members, result = rpm_image
    assert "[1/8] install" in result.stderr and "install: done" in result.stderr
    assert "./var/lib/rpm/rpmdb.sqlite" in members and members["./var/lib/rpm/rpmdb.sqlite"].size > 0
    assert not [n for n in members if "/__db." in n or n.endswith(("rpmdb.sqlite-shm", ".rpm.lock"))]
    assert not [n for n in members if n.startswith(("./var/cache/dnf/", "./var/lib/dnf/"))]
    assert not [n for n in members if n.startswith("./var/log/") and members[n].isfile() and members[n].size]
    for evidence in ("pre-ran", "post-ran", "posttrans-ran", "ks-post-ran"):
        assert f"./var/lib/msdemo/{evidence}" in members
    assert "./usr/share/msdemo/data.txt" in members
    assert "./usr/share/doc/msdemo/README" not in members  # %packages --excludedocs
    assert "./usr/share/msexcluded/marker" not in members  # -msexcluded
    assert "./usr/share/msgrouped/marker" in members  # @msgroup
    assert members["./usr/bin/sh"].issym()
    assert members["./etc/machine-id"].size == 0


def test_manifest_describes_the_rpm_image(rpm_image):
    manifest, tarball, members, _ = rpm_image
    assert manifest["sha256"] == hashlib.sha256(tarball.read_bytes()).hexdigest()
    assert manifest["size"] == tarball.stat().st_size
    assert manifest["distribution"]["family"] == "rpm"
    assert (manifest["distribution"]["id"], manifest["distribution"]["version"]) == ("msbase", "1.0")
    assert manifest["packages"] == [{"name": "msbase", "version": "1.0-1", "arch": "x86_64"},
                                    {"name": "msdemo", "version": "2.1-3", "arch": "noarch"},
                                    {"name": "msgrouped", "version": "1.0-1", "arch": "noarch"}]
    assert manifest["kernels"] == []  # bootloader --location=none: an image never booted directly


def test_same_kickstart_gives_the_same_sha256(rpm_image, rpm_repo, tmp_path):
    manifest, *_ = rpm_image
    again = build(KICKSTART, tmp_path / "out", rpm_repo.url, "--no-cache", "--cache-dir", str(tmp_path / "c"))
    assert again.returncode == 0, again.stderr
    assert json.loads((tmp_path / "out/msdemo.json").read_text())["sha256"] == manifest["sha256"]
    assert not (tmp_path / "c").exists()  # --no-cache neither reads nor fills the cache


def test_kickstart_without_the_addon_builds_with_family_and_release(rpm_repo, tmp_path):
    addon = "%addon org_metalstream_image\nfamily=rpm\nrelease=40\narch=x86_64\n%end\n"
    ks = rpm_kickstart(tmp_path / "plain.ks", replace={addon: ""})
    unnamed = build(ks, tmp_path / "out", rpm_repo.url, "--cache-dir", str(tmp_path / "c"))
    assert unnamed.returncode == 2 and "give --family (debian|rpm) and --release" in unnamed.stderr
    result = build(ks, tmp_path / "out", rpm_repo.url, "--cache-dir", str(tmp_path / "c"),
                   "--family", "rpm", "--release", "40")
    assert result.returncode == 0, result.stderr
    manifest = json.loads((tmp_path / "out/plain.json").read_text())
    assert manifest["distribution"]["family"] == "rpm"
    with _zstd_tar(tmp_path / "out" / manifest["tarball"]) as tar:
        assert "./var/lib/msdemo/ks-post-ran" in tar.getnames()


def test_unknown_package_fails_naming_it_and_its_line(rpm_repo, tmp_path):
    ks = rpm_kickstart(tmp_path / "bad.ks", add=["msdemo-nosuch"])
    result = build(ks, tmp_path / "out", rpm_repo.url, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 2, result.stderr
    assert (f"{ks}:{line_of(ks, 'msdemo-nosuch')}: %packages: package not found in the repositories: "
            "msdemo-nosuch") in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_unreachable_repository_fails_naming_it_and_its_line(rpm_repo, tmp_path):
    # The `extras` repo line still works: the build host's dnf.conf (skip_if_unavailable=True on Debian)
    # would let dnf skip the broken one and succeed. The build must fail instead, naming the broken line.
    ks = rpm_kickstart(tmp_path / "norepo.ks", replace={'url --url="{{ repo_url }}"': 'url --url="file:///nonexistent"'})
    result = build(ks, tmp_path / "out", rpm_repo.url, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 1, result.stderr
    assert f"{ks}:{line_of(ks, 'url ')}: url: cannot read the repository at file:///nonexistent" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


def test_bootable_image_with_a_kernel_but_no_dracut_fails_clearly(rpm_repo, tmp_path):
    ks = rpm_kickstart(tmp_path / "kernel.ks", add=["mskernel-core"], replace={"bootloader --location=none\n": ""})
    result = build(ks, tmp_path / "out", rpm_repo.url, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 2, result.stderr
    assert "initramfs: FAILED" in result.stderr
    assert "a kernel is installed but dracut is not: add dracut to %packages" in result.stderr
    assert list((tmp_path / "out").iterdir()) == []


class _LoggingHandler(http.server.SimpleHTTPRequestHandler):
    def do_GET(self):
        if self.path.endswith(".rpm") and self.server.hold_packages.is_set():
            self.server.package_requested.set()
            self.server.released.wait(60)  # a mirror that stalls while sending packages
        try:
            super().do_GET()
        except (BrokenPipeError, ConnectionResetError):
            pass  # the client (dnf) was killed meanwhile

    def log_message(self, format, *args):
        self.server.paths.append(self.path)


@pytest.fixture
def http_repo(rpm_repo):
    """The test repository served over HTTP on the loopback, with a log of the paths requested."""
    handler = functools.partial(_LoggingHandler, directory=str(rpm_repo.path))
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    server.paths = []
    server.hold_packages, server.package_requested, server.released = (threading.Event() for _ in range(3))
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    try:
        yield server, f"http://127.0.0.1:{server.server_address[1]}"
    finally:
        server.released.set()
        server.shutdown()
        server.server_close()
        thread.join()


def test_rebuild_reuses_downloaded_packages_and_no_cache_does_not(http_repo, tmp_path):
    server, url = http_repo
    cache = ["--cache-dir", str(tmp_path / "cache")]

    def rpms_fetched(*extra: str) -> list[str]:
        server.paths.clear()
        result = build(KICKSTART, tmp_path / "out", url, *extra)
        assert result.returncode == 0, result.stderr
        return sorted(p.rsplit("/", 1)[-1] for p in server.paths if p.endswith(".rpm"))

    first = rpms_fetched(*cache)
    assert first == ["msbase-1.0-1.x86_64.rpm", "msdemo-2.1-3.noarch.rpm", "msgrouped-1.0-1.noarch.rpm"]
    assert rpms_fetched(*cache, "--rebuild") == []  # the same kickstart built again: every package from the cache
    assert rpms_fetched(*cache, "--no-cache") == first


@pytest.fixture
def tiny_filesystem(tmp_path):
    """A 1.5 MiB tmpfs: too small for the test image's packages. Always unmounted."""
    mountpoint = tmp_path / "tiny"
    mountpoint.mkdir()
    proc.run(["mount", "-t", "tmpfs", "-o", "size=1536k", "metalstream-test-tiny", mountpoint])
    try:
        yield mountpoint
    finally:
        proc.run(["umount", mountpoint])


def test_out_of_disk_space_fails_with_one_clear_message(rpm_repo, tiny_filesystem, tmp_path):
    result = build(KICKSTART, tiny_filesystem / "out", rpm_repo.url, "--cache-dir", str(tmp_path / "c"))
    assert result.returncode == 1, result.stderr
    assert "error: out of disk space for the build root" in result.stderr
    assert "Traceback" not in result.stderr
    assert list((tiny_filesystem / "out").iterdir()) == []


def _processes_mentioning(text: str) -> list[str]:
    found = []
    for pid in filter(str.isdigit, os.listdir("/proc")):
        try:
            cmdline = Path(f"/proc/{pid}/cmdline").read_bytes().replace(b"\0", b" ").decode(errors="replace")
        except OSError:
            continue
        if text in cmdline:
            found.append(f"{pid}: {cmdline}")
    return found


def test_interrupted_install_leaves_no_mount_process_or_partial_root(http_repo, tmp_path):
    server, url = http_repo
    server.hold_packages.set()
    out = tmp_path / "out"
    build_cmd = subprocess.Popen([*METALSTREAM, "build", str(KICKSTART), "-o", str(out), "--var", f"repo_url={url}",
                                  "--cache-dir", str(tmp_path / "cache")], cwd=REPO,
                                 stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        assert server.package_requested.wait(120), "dnf never asked for a package"
        # dnf is downloading: the root's /proc, /dev and the cache bind mount exist in its namespace now.
        build_cmd.send_signal(signal.SIGTERM)
        _, stderr = build_cmd.communicate(timeout=120)
    finally:
        if build_cmd.poll() is None:
            build_cmd.kill()
            build_cmd.wait()
    assert build_cmd.returncode in (1, 130), stderr  # the CLI reports the interruption, never a traceback
    assert "install: FAILED" in stderr and "Traceback" not in stderr
    assert mounts_below(tmp_path) == []
    assert list(out.iterdir()) == []
    assert _processes_mentioning(str(out)) == []  # dnf and its namespace died with the build
