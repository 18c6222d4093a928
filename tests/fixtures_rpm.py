"""Fixtures for the RPM backend tests (import them from tests/test_build_rpm*.py).

`rpm_repo` builds a small RPM repository once per session from the spec files in tests/data/rpm/
with the real rpmbuild and indexes it with createrepo_c (comps.xml gives the `msgroup` group):

    msbase          static busybox as /usr/bin/sh, Provides: /bin/sh, the usr-merged top-level layout
    msdemo          %pre/%post/%posttrans write /var/lib/msdemo/*-ran; a %doc file; Recommends: msweak
    msweak          only a weak dependency of msdemo
    mskernel-core   Provides: kernel-core; dummy /boot/vmlinuz-KVER and /lib/modules/KVER/
    msgrouped       mandatory member of @msgroup
    msexcluded      default member of @msgroup, for -msexcluded
"""
from __future__ import annotations

import shutil
from dataclasses import dataclass
from pathlib import Path

import pytest

from deployer import proc

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
    for spec in sorted(DATA.glob("*.spec")):
        proc.run(["rpmbuild", "-bb", "--nodeps", "--quiet",
                  "--define", f"_topdir {dest / 'rpmbuild'}", "--define", f"_rpmdir {repo}",
                  "--define", "_build_id_links none", "--define", "debug_package %{nil}",
                  "--define", "__os_install_post %{nil}", "--define", f"busybox_bin {busybox}",
                  spec], env={"HOME": str(dest), "SOURCE_DATE_EPOCH": "1700000000"}, timeout=120)
    proc.run(["createrepo_c", "--quiet", "-g", DATA / "comps.xml", repo], timeout=120)
    packages = {p.name.rsplit("-", 2)[0]: p for p in sorted(repo.glob("*/*.rpm"))}
    return RpmRepo(path=repo, url=f"file://{repo}", packages=packages)


@pytest.fixture(scope="session")
def rpm_repo(tmp_path_factory) -> RpmRepo:
    from conftest import require_root, require_tools

    require_tools("rpmbuild", "createrepo_c", "dnf", "rpm")
    return build_rpm_repo(tmp_path_factory.mktemp("rpm-repo"))
