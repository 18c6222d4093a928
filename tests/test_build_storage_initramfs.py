"""The target's generic initramfs carries the storage stacks whose tools the image has (issue 13).

Debian: kickstarts/debian-storage.ks (lvm2, thin-provisioning-tools, mdadm, cryptsetup, cryptsetup-initramfs,
btrfs-progs) built by the real `metalstream build`; its update-initramfs output holds the programs, modules,
udev rules and boot scripts that assemble RAID, activate LVM, unlock LUKS and scan btrfs (what they do at boot:
docs/builder.md, "Storage stacks at boot"). The backends' preparation steps are also checked on small roots.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from tarball_builder.backends.debian import CRYPTSETUP_CONF_HOOK, CRYPTROOT_HOOK, DebianBackend
from tarball_builder.backends.rpm import DRACUT_STORAGE_CONF, RpmBackend

from fixtures_build import initramfs_files, tar_member

CONF_HOOK = """#
# CRYPTSETUP: [ y | n ]
#
#CRYPTSETUP=

#
# KEYFILE_PATTERN: ...
#KEYFILE_PATTERN=
"""


def write(root: Path, path: str, text: str = "") -> Path:
    target = root / path.lstrip("/")
    target.parent.mkdir(parents=True, exist_ok=True)
    target.write_text(text)
    return target


def test_debian_cryptsetup_goes_into_the_initramfs_whenever_cryptsetup_initramfs_is_installed(tmp_path):
    root = tmp_path / "root"
    write(root, "/etc/initramfs-tools/initramfs.conf", "MODULES=dep\n")
    write(root, CRYPTROOT_HOOK)
    conf = write(root, CRYPTSETUP_CONF_HOOK, CONF_HOOK)
    conf.chmod(0o600)
    DebianBackend().prepare_initramfs(root)
    assert conf.read_text() == CONF_HOOK.replace("#CRYPTSETUP=\n", "CRYPTSETUP=y\n")
    assert conf.stat().st_mode & 0o777 == 0o600  # the conffile keeps its mode
    assert (root / "etc/initramfs-tools/initramfs.conf").read_text() == "MODULES=most\n"
    DebianBackend().prepare_initramfs(root)  # twice: the same file
    assert conf.read_text().count("CRYPTSETUP=y") == 1


def test_debian_conf_hook_is_written_when_missing_and_left_alone_without_cryptsetup_initramfs(tmp_path):
    with_hook, without = tmp_path / "with", tmp_path / "without"
    write(with_hook, CRYPTROOT_HOOK)
    write(without, "/etc/initramfs-tools/initramfs.conf", "MODULES=most\n")
    DebianBackend().prepare_initramfs(with_hook)
    DebianBackend().prepare_initramfs(without)
    assert (with_hook / CRYPTSETUP_CONF_HOOK.lstrip("/")).read_text() == "CRYPTSETUP=y\n"
    assert not (without / CRYPTSETUP_CONF_HOOK.lstrip("/")).exists()
    assert not (with_hook / "etc/initramfs-tools").exists()  # no initramfs.conf is made up


@pytest.mark.parametrize("programs, modules", [
    (["usr/sbin/mdadm", "usr/sbin/lvm", "usr/sbin/cryptsetup", "usr/bin/btrfs"], "mdraid lvm crypt btrfs"),
    (["usr/sbin/lvm", "usr/sbin/btrfs"], "lvm btrfs"),
    (["usr/sbin/cryptsetup"], "crypt"),
])
def test_rpm_dracut_adds_the_modules_of_the_storage_tools_present(tmp_path, programs, modules):
    root = tmp_path / "root"
    write(root, "/usr/bin/dracut")
    for program in programs:
        write(root, program)
    RpmBackend().prepare_initramfs(root)
    conf = (root / DRACUT_STORAGE_CONF.lstrip("/")).read_text()
    assert f'add_dracutmodules+=" {modules} "\n' in conf.splitlines(keepends=True)


def test_rpm_without_storage_tools_writes_no_dracut_conf(tmp_path):
    root = tmp_path / "root"
    write(root, "/usr/bin/dracut")
    write(root, "/usr/sbin/mkfs.xfs")
    RpmBackend().prepare_initramfs(root)
    assert not (root / DRACUT_STORAGE_CONF.lstrip("/")).exists()


@pytest.mark.root
def test_debian_storage_image_initramfs_assembles_activates_and_unlocks(debian_storage_image):
    manifest = json.loads(debian_storage_image.read_text())
    tarball = debian_storage_image.parent / manifest["tarball"]
    packages = {p["name"] for p in manifest["packages"]}
    assert {"lvm2", "thin-provisioning-tools", "mdadm", "cryptsetup", "cryptsetup-initramfs",
            "btrfs-progs", "openssh-server"} <= packages
    (kernel,) = manifest["kernels"]
    version = kernel["version"]
    files = initramfs_files(tar_member(tarball, f".{kernel['initramfs']}"))
    modules = {Path(name).name.split(".ko")[0].replace("-", "_") for name in files
               if name.startswith(f"usr/lib/modules/{version}/") and ".ko" in name}
    for program in ("usr/sbin/mdadm", "usr/sbin/lvm", "usr/sbin/dmsetup", "usr/sbin/cryptsetup", "usr/sbin/pdata_tools",
                    "usr/bin/btrfs", "usr/lib/cryptsetup/askpass"):
        assert files.get(program), program
    assert "usr/sbin/thin_check" in files  # (a link to pdata_tools)
    assert {"md_mod", "raid0", "raid1", "raid10", "raid456", "dm_mod", "dm_crypt", "dm_thin_pool", "btrfs",
            "xts"} <= modules
    # RAID: udev's incremental assembly, then local-block's scan (which starts a degraded array after a while).
    for rule in ("55-dm.rules", "56-lvm.rules", "63-md-raid-arrays.rules", "64-md-raid-assembly.rules",
                 "69-lvm.rules", "95-dm-notify.rules", "64-btrfs.rules"):
        assert f"usr/lib/udev/rules.d/{rule}" in files, rule
    assert b"mdadm -q --assemble --scan" in files["scripts/local-block/mdadm"]
    assert b"ARRAY" not in files["etc/mdadm/mdadm.conf"]  # no array of the build machine: every array is found
    # LVM: no boot script; 69-lvm.rules activates each complete volume group.
    assert b"vgchange -aay --autoactivation event" in files["usr/lib/udev/rules.d/69-lvm.rules"]
    # LUKS: cryptroot is there although the image has no crypttab; its table is empty at build time, so the
    # boot unlocks what `cryptopts=` on the kernel command line names.
    assert files["scripts/local-top/cryptroot"] and files["scripts/local-block/cryptroot"]
    assert b"cryptopts=" in files["scripts/local-top/cryptroot"]
    assert files["cryptroot/crypttab"] == b""
    assert b"CRYPTSETUP=y\n" in tar_member(tarball, f".{CRYPTSETUP_CONF_HOOK}")
    # btrfs: every device of a multi-device volume is scanned before the root is mounted.
    assert b"btrfs device scan" in files["scripts/local-premount/btrfs"]
