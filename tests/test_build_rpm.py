"""The RPM family backend with real dnf against the repository tests/fixtures_rpm.py builds (rpmbuild +
createrepo_c): the backend on its own, then `metalstream build` end to end."""
from __future__ import annotations

import logging
from pathlib import Path

import pytest

from metalstream import proc
from metalstream.errors import BadInput
from tarball_builder import cache as build_cache
from tarball_builder.backends.rpm import RpmBackend
from tarball_builder.context import BuildContext, BuildOptions
from tarball_builder.kickstart import parse_kickstart
from tarball_builder.stages.initramfs import find_kernels

from conftest import require_root, require_tools
from fixtures_rpm import KERNEL_VERSION, line_of, mounts_below, rpm_kickstart

pytestmark = pytest.mark.root


@pytest.fixture(autouse=True)
def _root_and_tools():
    require_root()
    require_tools("dnf", "rpm", "unshare", "zstd")


def install(ks: Path, repo, workdir: Path, cache: Path) -> BuildContext:
    """Parse `ks` and run only the backend's install into workdir/root (as the install stage does)."""
    split = parse_kickstart(ks, variables={"repo_url": repo.url})
    ctx = BuildContext(kickstart=split, options=BuildOptions(output_dir=workdir, name="t", cache_dir=cache),
                       root=workdir / "root", workdir=workdir, source_date_epoch=1_700_000_000,
                       log=logging.getLogger("test"))
    try:
        RpmBackend().install(ctx)
    finally:
        build_cache.release_locks(ctx)
        assert mounts_below(workdir) == []
    return ctx


def names(packages: list[dict]) -> list[str]:
    return [p["name"] for p in packages]


# --- the backend on its own ---------------------------------------------------------------------------

def test_install_runs_scriptlets_and_honours_packages_options(rpm_repo, tmp_path):
    ctx = install(rpm_kickstart(tmp_path / "a.ks"), rpm_repo, tmp_path / "w", tmp_path / "cache")
    root = ctx.root
    assert (root / "var/lib/msdemo/pre-ran").read_text() == "pre 1\n"
    assert (root / "var/lib/msdemo/post-ran").read_text() == "post 1\n"
    assert (root / "var/lib/msdemo/posttrans-ran").read_text() == "posttrans\n"
    packages = RpmBackend().installed_packages(ctx)
    # @msgroup brings msgrouped; -msexcluded keeps its default member out; --exclude-weakdeps drops msweak.
    assert packages == [{"name": "msbase", "version": "1.0-1", "arch": "x86_64"},
                        {"name": "msdemo", "version": "2.1-3", "arch": "noarch"},
                        {"name": "msgrouped", "version": "1.0-1", "arch": "noarch"}]
    assert (root / "usr/share/msdemo/data.txt").is_file()
    assert not (root / "usr/share/doc/msdemo/README").exists()  # --excludedocs
    # The rpmdb sits where the image's rpm looks, self-contained (no WAL, no Berkeley DB environment).
    dbdir = root / "var/lib/rpm"
    assert sorted(p.name for p in dbdir.iterdir() if not p.name.startswith(".")) == ["rpmdb.sqlite"]
    query = proc.run(["rpm", "--root", root, "--dbpath", "/var/lib/rpm", "-qf", "/usr/bin/sh"])
    assert query.stdout.strip() == "msbase-1.0-1.x86_64"
    # Nothing of the build host leaked into the image's dnf state; the repo marked --install is configured.
    assert not (root / "root/.rpmdb").exists()
    assert "baseurl=" + rpm_repo.url in (root / "etc/yum.repos.d/extras.repo").read_text()
    assert not (root / "etc/yum.repos.d/url.repo").exists()
    # dnf's cache lived in the build cache, bind-mounted only while dnf ran.
    assert list(ctx.root.joinpath("var/cache/dnf").iterdir()) == []
    assert any(p.name.startswith("url-") for p in (tmp_path / "cache/rpm-archives").iterdir())


def test_without_the_options_docs_and_weak_dependencies_are_installed(rpm_repo, tmp_path):
    ks = rpm_kickstart(tmp_path / "b.ks", packages_header="%packages", replace={"-msexcluded\n": ""})
    ctx = install(ks, rpm_repo, tmp_path / "w", tmp_path / "cache")
    assert names(RpmBackend().installed_packages(ctx)) == ["msbase", "msdemo", "msexcluded", "msgrouped", "msweak"]
    assert (ctx.root / "usr/share/doc/msdemo/README").read_text() == "msdemo documentation\n"


def test_fake_kernel_is_found_and_needs_dracut_in_the_image(rpm_repo, tmp_path):
    ctx = install(rpm_kickstart(tmp_path / "k.ks", add=["mskernel-core"]), rpm_repo, tmp_path / "w",
                  tmp_path / "cache")
    assert find_kernels(ctx) == [{"version": KERNEL_VERSION, "kernel": f"/boot/vmlinuz-{KERNEL_VERSION}"}]
    with pytest.raises(BadInput, match="add dracut to %packages"):
        RpmBackend().prepare_initramfs(ctx.root)


def test_unknown_package_names_it_and_its_line(rpm_repo, tmp_path):
    ks = rpm_kickstart(tmp_path / "u.ks", add=["msdemo-doesnotexist"])
    with pytest.raises(BadInput) as caught:
        install(ks, rpm_repo, tmp_path / "w", tmp_path / "cache")
    assert caught.value.location == f"{ks}:{line_of(ks, 'msdemo-doesnotexist')}"
    assert caught.value.reason == "%packages: package not found in the repositories: msdemo-doesnotexist"


def test_unknown_group_is_named(rpm_repo, tmp_path):
    ks = rpm_kickstart(tmp_path / "g.ks", add=["@nosuchgroup"])
    with pytest.raises(BadInput) as caught:
        install(ks, rpm_repo, tmp_path / "w", tmp_path / "cache")
    assert caught.value.location == f"{ks}:{line_of(ks, '@nosuchgroup')}"
    assert "group not found in the repositories: @nosuchgroup" in caught.value.reason


def test_excluding_a_needed_package_explains_the_conflict(rpm_repo, tmp_path):
    ks = rpm_kickstart(tmp_path / "x.ks", add=["-msbase"])
    with pytest.raises(BadInput) as caught:
        install(ks, rpm_repo, tmp_path / "w", tmp_path / "cache")
    assert caught.value.location == f"{ks}:{line_of(ks, '%packages')}"
    assert "msbase" in caught.value.reason and "exclude" in caught.value.reason


def test_rpmdb_moves_to_where_the_images_own_rpm_looks(rpm_repo, tmp_path):
    ctx = install(rpm_kickstart(tmp_path / "r.ks", add=["msrpm"]), rpm_repo, tmp_path / "w", tmp_path / "cache")
    assert (ctx.root / "usr/bin/rpm").is_file()  # the stand-in answers /usr/lib/sysimage/rpm
    link = ctx.root / "var/lib/rpm"
    assert link.is_symlink() and str(link.readlink()) == "../../usr/lib/sysimage/rpm"
    dbdir = ctx.root / "usr/lib/sysimage/rpm"
    assert (dbdir / "rpmdb.sqlite").is_file() and not (dbdir / "rpmdb.sqlite").is_symlink()
    assert sorted(p.name for p in dbdir.iterdir()) in (["rpmdb.sqlite"], [".rpm.lock", "rpmdb.sqlite"])
    assert not [p for p in dbdir.iterdir() if p.is_symlink()]
    assert not (dbdir / ".migratedb").exists()
    assert "msrpm" in names(RpmBackend().installed_packages(ctx))
    query = proc.run(["rpm", "--root", ctx.root, "--dbpath", "/usr/lib/sysimage/rpm", "-q", "msdemo"])
    assert query.stdout.strip() == "msdemo-2.1-3.noarch"
