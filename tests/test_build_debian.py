"""Real Debian builds with mmdebstrap: the acceptance image, reproducibility, and every failure mode.

Packages come from the machine's apt sources and are cached between sessions in the builder's package
cache, so only the first run downloads.
"""
from __future__ import annotations

import hashlib
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import METALSTREAM, REPO
from fixtures_build import (
    BUILD_TEST_CACHE,
    build_image,
    host_mounts_under,
    require_build_tools,
    tar_listing,
    tar_member,
    tar_members,
)

pytestmark = pytest.mark.root
DATA = REPO / "tests/data/build"
ZSTD_MAGIC = bytes.fromhex("28b52ffd")


@pytest.fixture(autouse=True)
def _tools():
    require_build_tools()


def _sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(1 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _assert_nothing_left(out: Path) -> None:
    assert host_mounts_under(out) == []
    leftovers = [p.name for p in out.iterdir()] if out.exists() else []
    assert leftovers == [], f"partial build left behind: {leftovers}"


# ---- acceptance: kickstarts/debian-minimal.ks -------------------------------------------------------

def test_debian_minimal_manifest_matches_tarball(debian_minimal_image):
    manifest = json.loads(debian_minimal_image.read_text())
    tarball = debian_minimal_image.parent / manifest["tarball"]
    assert manifest["sha256"] == _sha256(tarball)
    assert manifest["size"] == tarball.stat().st_size
    assert manifest["distribution"] == {"family": "debian", "id": "debian", "version": "12", "codename": "bookworm"}
    assert manifest["bootloader"] == {"bios_grub": True, "uefi_grub": True, "shim": False}
    names = {p["name"] for p in manifest["packages"]}
    assert {"linux-image-amd64", "openssh-server", "systemd-sysv", "grub-pc-bin"} <= names
    assert manifest["kickstart_sha256"] == json.loads(subprocess.run(
        [*METALSTREAM, "ks", "split", "kickstarts/debian-minimal.ks"], cwd=REPO, capture_output=True,
        text=True, check=True).stdout)["sha256"]
    assert manifest["uncompressed_size"] > manifest["size"] > 50 * 2**20
    assert manifest["file_count"] > 5000


def test_debian_minimal_tarball_content(debian_minimal_image):
    manifest = json.loads(debian_minimal_image.read_text())
    tarball = debian_minimal_image.parent / manifest["tarball"]
    listing = tar_listing(tarball)
    paths = {line.split()[5] for line in listing}
    kernels = manifest["kernels"]
    assert kernels, "no kernel in the manifest"
    for kernel in kernels:
        assert re.fullmatch(r"/boot/vmlinuz-[\w.+-]+", kernel["kernel"])
        assert "." + kernel["kernel"] in paths
        assert kernel["initramfs"] == f"/boot/initrd.img-{kernel['version']}"
        assert "." + kernel["initramfs"] in paths
        size = next(int(line.split()[2]) for line in listing if line.split()[5] == "." + kernel["initramfs"])
        assert size > 10 * 2**20, "initramfs suspiciously small: not generic (MODULES=most)?"
        initramfs = tar_member(tarball, "." + kernel["initramfs"])
        assert initramfs.startswith(ZSTD_MAGIC), "the image has zstd: update-initramfs must not fall back to gzip"
    assert tar_member(tarball, "./etc/machine-id") == b""
    assert not [p for p in paths if p.startswith("./var/cache/apt/archives/") and p.endswith(".deb")]
    assert not [p for p in paths if p.startswith("./var/lib/apt/lists/") and p != "./var/lib/apt/lists/"
                and not p.startswith("./var/lib/apt/lists/partial") and p != "./var/lib/apt/lists/lock"]
    assert not [p for p in paths if p.startswith("./etc/ssh/ssh_host_")]
    assert "./etc/systemd/system/multi-user.target.wants/metalstream-ssh-keygen.service" in paths
    assert "./usr/sbin/policy-rc.d" not in paths
    assert "./etc/hostname" not in paths and "./etc/resolv.conf" not in paths
    # The kickstart's settings and %post are in the image.
    assert "./etc/systemd/network/80-metalstream-dhcp.network" in paths
    assert "./etc/systemd/system/multi-user.target.wants/ssh.service" in paths
    shadow = tar_member(tarball, "./etc/shadow").decode()
    assert re.search(r"^root:![^:]*:", shadow, re.M), "rootpw --lock: root's password must be locked"
    # Every mtime is clamped to `created`; entries are sorted.
    members = tar_members(tarball)
    assert max(m.mtime for m in members) <= manifest["created"]
    assert len(members) - 1 == manifest["file_count"]


# ---- reproducibility -------------------------------------------------------------------------------

def test_same_kickstart_twice_gives_the_same_sha256(tmp_path):
    first = build_image(DATA / "repro.ks", tmp_path / "a")
    assert first.returncode == 0, first.stderr[-3000:]
    second = build_image(DATA / "repro.ks", tmp_path / "b")
    assert second.returncode == 0, second.stderr[-3000:]
    a = json.loads((tmp_path / "a/repro.json").read_text())
    b = json.loads((tmp_path / "b/repro.json").read_text())
    if a["sha256"] != b["sha256"]:
        differing = _differing_members(tmp_path / "a/repro.tar.zst", tmp_path / "b/repro.tar.zst")
        pytest.fail(f"two builds differ in: {differing[:20]}")
    assert a == b
    tarball = tmp_path / "a/repro.tar.zst"
    # What the kickstart asked for is really there.
    assert tar_member(tarball, "./etc/motd") == b"built by metalstream\n"
    assert tar_member(tarball, "./etc/metalstream-nochroot") == b"nochroot\n"
    shadow = tar_member(tarball, "./etc/shadow").decode()
    assert re.search(r"^root:\$6\$", shadow, re.M) and re.search(r"^ops:\$6\$", shadow, re.M)
    assert "ops:x:1500:" in tar_member(tarball, "./etc/passwd").decode()
    assert ":ops" in next(l for l in tar_member(tarball, "./etc/group").decode().splitlines() if l.startswith("adm:"))
    keys = tar_member(tarball, "./home/ops/.ssh/authorized_keys").decode()
    assert keys.startswith("ssh-ed25519 ")
    line = next(l for l in tar_listing(tarball) if l.endswith("./home/ops/.ssh/authorized_keys"))
    assert line.startswith("-rw-------") and " 1500/" in line
    assert a["kernels"] == []
    # The same kickstart as a user brings it, without the add-on: --family/--release name the distribution
    # and the defaults of the add-on's other keys (variant minbase) give the same set of packages.
    plain = tmp_path / "plain.ks"
    plain.write_text(_without_addon((DATA / "repro.ks").read_text()))
    third = build_image(plain, tmp_path / "c", "--family", "debian", "--release", "bookworm")
    assert third.returncode == 0, third.stderr[-3000:]
    c = json.loads((tmp_path / "c/plain.json").read_text())
    assert c["distribution"]["codename"] == "bookworm"
    assert c["packages"] == a["packages"]
    # The package cache holds every package of the image: a rebuild downloads nothing.
    cached = {p.name for p in (BUILD_TEST_CACHE / "debian-archives").glob("*.deb")}
    for pkg in a["packages"]:
        version = pkg["version"].replace(":", "%3a")
        assert f"{pkg['name']}_{version}_{pkg['arch']}.deb" in cached, pkg



@pytest.mark.slow
def test_debian_minimal_with_kernel_and_initramfs_is_reproducible(debian_minimal_image, tmp_path):
    """The bootable image too (kernel, generic initramfs, systemd units): a second build, same sha256."""
    again = build_image(REPO / "kickstarts/debian-minimal.ks", tmp_path)
    assert again.returncode == 0, again.stderr[-3000:]
    first = json.loads(debian_minimal_image.read_text())
    second = json.loads((tmp_path / "debian-minimal.json").read_text())
    if first["sha256"] != second["sha256"]:
        differing = _differing_members(debian_minimal_image.parent / first["tarball"],
                                       tmp_path / "debian-minimal.tar.zst")
        pytest.fail(f"two builds differ in: {differing[:20]}")


@pytest.mark.slow
def test_debian_minimal_without_its_addon_builds_with_family_and_release(debian_minimal_image, tmp_path):
    """The sample kickstart with its %addon section removed, named on the command line, is the same image
    apart from what the kickstart's text seeds (its timestamps): same packages, same kernel."""
    plain = tmp_path / "debian-minimal.ks"
    plain.write_text(_without_addon((REPO / "kickstarts/debian-minimal.ks").read_text()))
    result = build_image(plain, tmp_path / "out", "--family", "debian", "--release", "bookworm")
    assert result.returncode == 0, result.stderr[-3000:]
    built = json.loads((tmp_path / "out/debian-minimal.json").read_text())
    sample = json.loads(debian_minimal_image.read_text())
    assert (built["distribution"], built["packages"], built["kernels"]) == \
        (sample["distribution"], sample["packages"], sample["kernels"])


def _without_addon(text: str) -> str:
    return re.sub(r"%addon org_metalstream_image\n.*?%end\n", "", text, flags=re.DOTALL)


def _differing_members(a: Path, b: Path) -> list[str]:
    def digests(tarball: Path) -> dict[str, str]:
        out = tarball.with_suffix(".x")
        out.mkdir()
        subprocess.run(["tar", "--zstd", "-xf", str(tarball), "-C", str(out)], check=True)
        result = {}
        for path in sorted(out.rglob("*")):
            if path.is_file() and not path.is_symlink():
                result[str(path.relative_to(out))] = hashlib.sha256(path.read_bytes()).hexdigest()
        shutil.rmtree(out)
        return result

    da, db = digests(a), digests(b)
    return sorted(k for k in da.keys() | db.keys() if da.get(k) != db.get(k)) or ["(metadata only)"]


# ---- failures: one clear message, exit 1/2, nothing left behind ---------------------------------------

def test_failing_post_stops_the_build_with_its_output_and_line(tmp_path):
    out = tmp_path / "out"
    result = build_image(DATA / "failing-post.ks", out)
    assert result.returncode == 1
    assert "failing-post.ks:13: %post failed with exit status 3" in result.stderr
    assert "about to fail" in result.stderr
    assert "Traceback" not in result.stderr
    _assert_nothing_left(out)


def test_bootable_image_without_kernel_is_refused(tmp_path):
    # A bootable image that lists no kernel gets one (as anaconda); one that excludes it is refused before
    # anything is built. The initramfs stage's own check is tested in test_build_core_units.
    out = tmp_path / "out"
    result = build_image(DATA / "no-kernel.ks", out)
    assert result.returncode == 2
    assert "no-kernel.ks:12: error: %packages: -linux-image-amd64: the image is bootable and needs a kernel" \
        in result.stderr
    _assert_nothing_left(out)


def test_unknown_package_is_named_with_the_packages_line(tmp_path):
    # The kickstart without its add-on: --family/--release name the distribution (issue 12).
    text = (DATA / "unknown-package.ks").read_text()
    ks = tmp_path / "unknown-package.ks"
    ks.write_text(_without_addon(text))
    out = tmp_path / "out"
    result = build_image(ks, out, "--family", "debian", "--release", "bookworm")
    assert result.returncode == 2
    assert f"{ks}:5: package 'no-such-package-metalstream' not found" in result.stderr
    _assert_nothing_left(out)


def test_unreachable_repo_is_reported(tmp_path):
    out = tmp_path / "out"
    result = build_image(DATA / "unreachable-repo.ks", out)
    assert result.returncode == 1
    assert "package repository unreachable" in result.stderr and "127.0.0.1" in result.stderr
    _assert_nothing_left(out)


@pytest.fixture
def small_tmpfs(tmp_path):
    mountpoint = tmp_path / "small"
    mountpoint.mkdir()
    subprocess.run(["mount", "-t", "tmpfs", "-o", "size=24m", "metalstream-test-enospc", str(mountpoint)], check=True)
    try:
        yield mountpoint
    finally:
        subprocess.run(["umount", "--lazy", str(mountpoint)], check=True)


def test_out_of_disk_space_is_one_clear_message(small_tmpfs):
    out = small_tmpfs / "out"
    result = build_image(DATA / "essential.ks", out)
    assert result.returncode == 1
    assert "out of disk space in " + str(out) in result.stderr, result.stderr[-2000:]
    assert "Traceback" not in result.stderr
    _assert_nothing_left(out)
