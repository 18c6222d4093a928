"""Fixtures for the RPM backend tests (import them from tests/test_build_rpm*.py).

`rpm_repo` builds a small RPM repository once per session from the spec files in tests/data/rpm/
with the real rpmbuild and indexes it with createrepo_c (comps.xml gives the `msgroup` group):

    msbase          static busybox as /usr/bin/sh, Provides: /bin/sh, the usr-merged top-level layout
    msdemo          %pre/%post/%posttrans write /var/lib/msdemo/*-ran; a %doc file; Recommends: msweak
    msweak          only a weak dependency of msdemo
    mskernel-core   Provides: kernel-core; dummy /boot/vmlinuz-KVER and /lib/modules/KVER/
    msgrouped       mandatory member of @msgroup
    msexcluded      default member of @msgroup, for -msexcluded
    msrpm           stand-in for Fedora 36+'s rpm: answers `rpm --eval %{_dbpath}`, links the rpmdb like its %pre
    msdracut        Provides: dracut; its /usr/bin/dracut writes a dummy initramfs naming the dracut.conf.d files
    msmdadm, mslvm2, mscryptsetup, msbtrfs-progs
                    Provides: mdadm, lvm2, cryptsetup, btrfs-progs; dummy programs at the real paths
    msnetworkmanager
                    Provides: NetworkManager; a dummy /usr/sbin/NetworkManager
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from metalstream import proc

DATA = Path(__file__).resolve().parent / "data" / "rpm"
KERNEL_VERSION = "6.1.0-ms1.x86_64"


@dataclass(frozen=True)
class RpmRepo:
    path: Path
    url: str
    packages: dict[str, Path]  # name -> .rpm file


def build_rpm_repo(dest: Path) -> RpmRepo:
    """rpmbuild every tests/data/rpm/*.spec into dest/repo and index it with createrepo_c."""
    busybox = shutil.which("busybox")
    if busybox is None:
        pytest.fail("busybox (static) is missing: run `bash .ci/setup`, which installs busybox-static")
    repo = dest / "repo"
    (dest / "tmp").mkdir(parents=True, exist_ok=True)
    for spec in sorted(DATA.glob("*.spec")):
        proc.run(["rpmbuild", "-bb", "--nodeps", "--quiet",
                  "--define", f"_topdir {dest / 'rpmbuild'}", "--define", f"_rpmdir {repo}",
                  "--define", f"_tmppath {dest / 'tmp'}",
                  "--define", "_build_id_links none", "--define", "debug_package %{nil}",
                  "--define", "__os_install_post %{nil}", "--define", f"busybox_bin {busybox}",
                  spec], env={"HOME": str(dest), "SOURCE_DATE_EPOCH": "1700000000"}, timeout=120)
    proc.run(["createrepo_c", "--quiet", "-g", DATA / "comps.xml", repo], timeout=120)
    packages = {p.name.rsplit("-", 2)[0]: p for p in sorted(repo.glob("*/*.rpm"))}
    return RpmRepo(path=repo, url=f"file://{repo}", packages=packages)


@pytest.fixture(scope="session")
def rpm_repo(tmp_path_factory) -> RpmRepo:
    from conftest import require_tools

    require_tools("rpmbuild", "createrepo_c", "dnf", "rpm")
    return build_rpm_repo(tmp_path_factory.mktemp("rpm-repo"))


def mounts_below(path: Path) -> list[str]:
    """Mount points at or below `path` (a test's proof that nothing was left mounted)."""
    out = proc.run(["findmnt", "-rn", "-o", "TARGET"]).stdout
    prefix = str(Path(path).resolve())
    return [m for m in out.splitlines() if m == prefix or m.startswith(prefix + "/")]


def rpm_kickstart(dest: Path, *, packages_header: str | None = None, add: list[str] = (),
                  replace: dict[str, str] | None = None) -> Path:
    """A variant of the template tests/data/rpm/msdemo.ks.j2 written to `dest` (`.j2` appended to its name when
    missing, so it stays a template): %packages entries added after its header (so every line below moves
    down by len(add)), a different header, or plain text replacements."""
    text = (DATA / "msdemo.ks.j2").read_text()
    lines = text.splitlines()
    header = next(i for i, line in enumerate(lines) if line.startswith("%packages"))
    if packages_header is not None:
        lines[header] = packages_header
    lines[header + 1:header + 1] = list(add)
    text = "\n".join(lines) + "\n"
    for old, new in (replace or {}).items():
        assert old in text, f"{old!r} is not in msdemo.ks.j2"
        text = text.replace(old, new)
    if not dest.name.endswith(".j2"):
        dest = dest.with_name(dest.name + ".j2")
    dest.parent.mkdir(parents=True, exist_ok=True)
    dest.write_text(text)
    return dest


def line_of(path: Path, startswith: str) -> int:
    return next(n for n, line in enumerate(path.read_text().splitlines(), 1) if line.startswith(startswith))
