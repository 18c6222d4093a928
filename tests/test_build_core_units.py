"""Builder pieces that need no package install: sources, argv, epoch, cleanup, manifest, stages on small roots."""
from __future__ import annotations

import json
import os
from pathlib import Path

import pytest

from metalstream.contracts.deployspec import Bootloader, DeploySpec
from metalstream.errors import BadInput
from tarball_builder.backends import apt_sources, backend_for
from tarball_builder.backends.debian import DebianBackend
from tarball_builder.context import BuildContext, BuildOptions
from tarball_builder.pipeline import EPOCH_BASE, EPOCH_SPREAD, default_source_date_epoch
from tarball_builder.spec import BuildSpec, Distribution, Packages, Repo, SplitKickstart, Timezone
from tarball_builder.stages import cleanup, manifest
from tarball_builder.stages.configure import set_timezone
from tarball_builder.stages.initramfs import InitramfsStage, find_kernels

DEB822 = """\
Types: deb
# a comment
URIs: http://mirror.example/debian
Suites: bookworm bookworm-updates
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg

Types: deb-src
URIs: http://mirror.example/debian
Suites: bookworm
Components: main

Types: deb
URIs: http://mirror.example/debian-security
Suites: bookworm-security
Components: main
Enabled: no
"""


def make_ctx(tmp_path: Path, *, family="debian", packages: Packages | None = None, bootloader=None,
             repos=None, timezone=None) -> BuildContext:
    spec = BuildSpec(distribution=Distribution(family=family, release="bookworm", variant="minbase",
                                               components=["main"], line=3),
                     packages=packages or Packages(names=["openssh-server"], line=12), repos=repos or [],
                     timezone=timezone)
    ks = SplitKickstart(build=spec, deploy=DeploySpec(bootloader=bootloader), source="test.ks", sha256="ab" * 32)
    root = tmp_path / "root"
    root.mkdir(exist_ok=True)
    options = BuildOptions(output_dir=tmp_path / "out", name="t", cache_dir=tmp_path / "cache")
    return BuildContext(kickstart=ks, options=options, root=root, workdir=tmp_path, source_date_epoch=1_700_000_000)


def test_deb822_sources_keep_enabled_binary_entries_and_their_options():
    sources = apt_sources.parse_deb822(DEB822)
    assert len(sources) == 1
    assert sources[0].suites == ["bookworm", "bookworm-updates"]
    assert sources[0].options == {"Signed-By": "/usr/share/keyrings/debian-archive-keyring.gpg"}


def test_one_line_sources_with_options():
    text = "# c\ndeb [arch=amd64 signed-by=/k.gpg] http://m.example/debian bookworm main contrib\ndeb-src http://x y z\n"
    [src] = apt_sources.parse_one_line(text)
    assert (src.uris, src.suites, src.components) == (["http://m.example/debian"], ["bookworm"], ["main", "contrib"])
    assert src.options == {"Arch": "amd64", "Signed-By": "/k.gpg"}


def test_host_sources_follow_the_kickstart_release_and_components():
    sources = apt_sources.parse_deb822(DEB822)
    moved = apt_sources.retarget(sources, "bookworm", Distribution("debian", "trixie", components=["main", "contrib"]))
    assert moved[0].suites == ["trixie", "trixie-updates"]
    assert moved[0].components == ["main", "contrib"]
    text = apt_sources.render(moved)
    assert "Suites: trixie trixie-updates\n" in text and "Signed-By: /usr/share/keyrings/" in text


def test_kickstart_repos_replace_host_sources_and_reject_rpm_only_options():
    dist = Distribution("debian", "bookworm", components=["main"])
    [src] = apt_sources.from_repos([Repo("local", baseurl="http://127.0.0.1:1/debian", line=7)], dist, "x.ks")
    assert src.render() == "Types: deb\nURIs: http://127.0.0.1:1/debian\nSuites: bookworm\nComponents: main\n"
    with pytest.raises(BadInput) as err:
        apt_sources.from_repos([Repo("m", mirrorlist="http://m/list", line=9)], dist, "x.ks")
    assert str(err.value).startswith("x.ks:9: ")


def test_mmdebstrap_command_carries_variant_packages_cache_and_exclusion_pin(tmp_path):
    ctx = make_ctx(tmp_path, packages=Packages(names=["openssh-server", "vim"], excluded_names=["nano"],
                                               nodocs=True, line=12))
    argv, sources = DebianBackend().mmdebstrap_command(ctx)
    assert "mmdebstrap" in argv and "--variant=minbase" in argv and "--architectures=amd64" in argv
    assert "--include=openssh-server,vim" in argv
    assert argv[-3:] == ["bookworm", str(ctx.root), "-"]
    cache = str(tmp_path / "cache/debian-archives")
    assert any(a.startswith("--setup-hook=") and "flock" in a and cache in a for a in argv)  # copies .deb files in
    assert any(a.startswith("--customize-hook=") and "flock" in a and cache in a for a in argv)  # and out
    assert any("Package: nano" in a and "Pin-Priority: -1" in a for a in argv)
    assert "--dpkgopt=path-exclude=/usr/share/doc/*" in argv
    assert "Types: deb" in sources


def test_no_cache_uses_a_scratch_package_dir(tmp_path):
    ctx = make_ctx(tmp_path)
    ctx.options.use_cache = False
    argv, _ = DebianBackend().mmdebstrap_command(ctx)
    assert not any(str(tmp_path / "cache") in a for a in argv)
    assert any(str(tmp_path / "debian-archives") in a for a in argv)


def test_groups_are_an_error_for_debian_located_at_packages(tmp_path):
    ctx = make_ctx(tmp_path, packages=Packages(names=["a"], groups=["core"], line=21))
    with pytest.raises(BadInput) as err:
        DebianBackend().mmdebstrap_command(ctx)
    assert str(err.value).startswith("test.ks:21: ") and "group" in str(err.value)


def test_unknown_family_is_bad_input():
    with pytest.raises(BadInput):
        backend_for("gentoo")


def test_default_epoch_is_stable_and_derived_from_the_kickstart():
    a = default_source_date_epoch("0" * 64)
    assert a == EPOCH_BASE
    b = default_source_date_epoch("ffffffff" + "0" * 56)
    assert EPOCH_BASE <= b < EPOCH_BASE + EPOCH_SPREAD
    assert default_source_date_epoch("12345678" + "a" * 56) == default_source_date_epoch("12345678" + "a" * 56)


def test_cleanup_resets_identity_and_drops_caches(tmp_path):
    ctx = make_ctx(tmp_path)
    root = ctx.root
    files = {
        "etc/machine-id": "0123456789abcdef0123456789abcdef\n",
        "etc/ssh/ssh_host_ed25519_key": "secret", "etc/ssh/ssh_host_ed25519_key.pub": "pub",
        "etc/ssh/sshd_config": "keep",
        "var/cache/apt/archives/bash_5.2_amd64.deb": "deb", "var/lib/apt/lists/x_Packages": "list",
        "var/log/dpkg.log": "log line", "var/log/apt/history.log.1.gz": "old",
        "var/lib/systemd/random-seed": "seed", "tmp/junk": "x", "run/lock/y": "x",
        "var/cache/ldconfig/aux-cache": "c", "etc/shadow-": "old shadow", "etc/resolv.conf": "",
        "usr/sbin/sshd": "", "usr/bin/systemctl": "",
    }
    for rel, text in files.items():
        (root / rel).parent.mkdir(parents=True, exist_ok=True)
        (root / rel).write_text(text)
    (root / "var/lib/dbus").mkdir(parents=True)
    (root / "var/lib/dbus/machine-id").write_text("0123\n")
    cleanup.CleanupStage(DebianBackend()).run(ctx)
    assert (root / "etc/machine-id").read_text() == ""
    assert os.readlink(root / "var/lib/dbus/machine-id") == "/etc/machine-id"
    assert sorted(p.name for p in (root / "etc/ssh").iterdir()) == ["sshd_config"]
    assert list((root / "var/cache/apt/archives").iterdir()) == []
    assert list((root / "var/lib/apt/lists").iterdir()) == []
    assert (root / "var/log/dpkg.log").read_text() == ""
    assert not (root / "var/log/apt/history.log.1.gz").exists()
    for gone in ("var/lib/systemd/random-seed", "tmp/junk", "run/lock", "var/cache/ldconfig/aux-cache",
                 "etc/shadow-", "etc/resolv.conf"):
        assert not (root / gone).exists(), gone
    unit = root / "etc/systemd/system" / cleanup.UNIT_NAME
    assert "ExecStart=/usr/bin/ssh-keygen -A" in unit.read_text()
    assert os.readlink(root / "etc/systemd/system/multi-user.target.wants" / cleanup.UNIT_NAME) == \
        f"/etc/systemd/system/{cleanup.UNIT_NAME}"


def test_kernels_are_found_by_modules_dir_and_image(tmp_path):
    ctx = make_ctx(tmp_path)
    for version in ("6.1.0-9-amd64", "6.1.0-10-amd64"):
        (ctx.root / "lib/modules" / version).mkdir(parents=True)
        (ctx.root / "boot").mkdir(exist_ok=True)
        (ctx.root / f"boot/vmlinuz-{version}").write_text("k")
    (ctx.root / "lib/modules/5.0-leftover").mkdir()  # modules without a kernel image: not a kernel
    assert [k["version"] for k in find_kernels(ctx)] == ["6.1.0-10-amd64", "6.1.0-9-amd64"]


def test_bootable_image_without_kernel_names_packages(tmp_path):
    ctx = make_ctx(tmp_path, bootloader=Bootloader(location="mbr"))
    with pytest.raises(BadInput) as err:
        InitramfsStage(DebianBackend()).run(ctx)
    assert str(err.value).startswith("test.ks:12: ") and "%packages" in str(err.value)


def test_non_bootable_image_without_kernel_is_fine(tmp_path):
    ctx = make_ctx(tmp_path, bootloader=Bootloader(location="none"))
    InitramfsStage(DebianBackend()).run(ctx)
    assert ctx.facts["kernels"] == []


def test_unknown_timezone_is_located(tmp_path):
    ctx = make_ctx(tmp_path, timezone=Timezone("Mars/Olympus", line=8))
    (ctx.root / "etc").mkdir()
    with pytest.raises(BadInput) as err:
        set_timezone(ctx)
    assert str(err.value).startswith("test.ks:8: ")


def test_timezone_links_the_zone_from_the_root(tmp_path):
    ctx = make_ctx(tmp_path, timezone=Timezone("Europe/Berlin", utc=True, line=8))
    (ctx.root / "etc").mkdir()
    (ctx.root / "usr/share/zoneinfo/Europe").mkdir(parents=True)
    (ctx.root / "usr/share/zoneinfo/Europe/Berlin").write_text("TZif")
    set_timezone(ctx)
    assert os.readlink(ctx.root / "etc/localtime") == "../usr/share/zoneinfo/Europe/Berlin"
    assert (ctx.root / "etc/timezone").read_text() == "Europe/Berlin\n"
    assert (ctx.root / "etc/adjtime").read_text().endswith("UTC\n")


def test_manifest_reads_distribution_and_bootloader_support(tmp_path):
    ctx = make_ctx(tmp_path)
    (ctx.root / "etc").mkdir()
    (ctx.root / "usr/lib").mkdir(parents=True)
    (ctx.root / "usr/lib/os-release").write_text('ID=debian\nVERSION_ID="12"\nVERSION_CODENAME=bookworm\n')
    os.symlink("/usr/lib/os-release", ctx.root / "etc/os-release")  # absolute: resolved inside the root
    (ctx.root / "usr/lib/grub/i386-pc").mkdir(parents=True)
    ctx.options.output_dir.mkdir()
    ctx.facts.update(tarball={"path": tmp_path / "t.tar.zst", "sha256": "0" * 64, "size": 1, "uncompressed_size": 2},
                     file_count=3, kernels=[])

    class Packages:
        def installed_packages(self, ctx):
            return [{"name": "bash", "version": "5", "arch": "amd64"}]

    manifest.ManifestStage(Packages()).run(ctx)
    data = json.loads(ctx.facts["manifest_path"].read_text())
    assert data["format"] == "metalstream-image/1"
    assert data["distribution"] == {"family": "debian", "id": "debian", "version": "12", "codename": "bookworm"}
    assert data["bootloader"] == {"bios_grub": True, "uefi_grub": False, "shim": False}
    assert data["created"] == 1_700_000_000 and data["tarball"] == "t.tar.zst"
    assert data["packages"] == [{"name": "bash", "version": "5", "arch": "amd64"}]
