"""Installer environment: module selection, trimming rules, kernel lookup, failure cleanup, DHCP script.

Fast tests over small synthetic trees; the real root, initramfs and qemu boot are in
test_build_installer.py.
"""
from __future__ import annotations

import os
from pathlib import Path

import pytest

from metalstream import proc
from metalstream.errors import BadInput, OperationFailed
from tarball_builder.installer import make_installer
from tarball_builder.installer.kernel import find_kernel
from tarball_builder.installer.loaders import SIGNED_LOADERS, find_signed_loaders
from tarball_builder.installer.modules import module_name, parse_tree, select
from tarball_builder.installer.trim import files_to_copy, keep

from conftest import require_root, require_tools
from fixtures_installer import INSTALLER_KS, installer_context

HERE = Path(__file__).resolve().parent
UDHCPC_SCRIPT = HERE.parent / "tarball_builder/installer/udhcpc.sh"

MODULES_DEP = """\
kernel/drivers/net/virtio_net.ko.zst: kernel/drivers/net/net_failover.ko.zst kernel/net/core/failover.ko.zst kernel/drivers/virtio/virtio.ko.zst
kernel/drivers/net/net_failover.ko.zst: kernel/net/core/failover.ko.zst
kernel/net/core/failover.ko.zst:
kernel/drivers/virtio/virtio.ko.zst:
kernel/fs/ext4/ext4.ko.zst: kernel/fs/jbd2/jbd2.ko.zst kernel/fs/mbcache.ko.zst
kernel/fs/jbd2/jbd2.ko.zst:
kernel/fs/mbcache.ko.zst:
kernel/arch/x86/crypto/crc32c-intel.ko.zst:
kernel/crypto/crc32c_generic.ko.zst:
kernel/sound/pci/snd-hda-intel.ko.zst: kernel/sound/core/snd.ko.zst
kernel/sound/core/snd.ko.zst:
kernel/drivers/gpu/drm/i915/i915.ko.zst:
"""
MODULES_SOFTDEP = "# comment\nsoftdep ext4 pre: crypto-crc32c\nsoftdep snd-hda-intel post: snd\n"
MODULES_ALIAS = "alias crypto-crc32c crc32c_intel\nalias crypto-crc32c crc32c_generic\nalias pci:v00008086d* i915\n"


def test_module_names_ignore_compression_and_dashes():
    assert module_name("kernel/fs/ext4/ext4.ko") == "ext4"
    assert module_name("kernel/arch/x86/crypto/crc32c-intel.ko.zst") == "crc32c_intel"
    assert module_name("kernel/drivers/net/virtio_net.ko.xz") == "virtio_net"


def test_selection_follows_hard_and_soft_dependencies_only_from_wanted_modules():
    tree = parse_tree(MODULES_DEP, MODULES_SOFTDEP, MODULES_ALIAS)
    chosen = select(tree, ["virtio_net", "ext4"])
    assert chosen == sorted([
        "kernel/drivers/net/virtio_net.ko.zst", "kernel/drivers/net/net_failover.ko.zst",
        "kernel/net/core/failover.ko.zst", "kernel/drivers/virtio/virtio.ko.zst",
        "kernel/fs/ext4/ext4.ko.zst", "kernel/fs/jbd2/jbd2.ko.zst", "kernel/fs/mbcache.ko.zst",
        # ext4's soft dependency names an alias: every module providing it comes along
        "kernel/arch/x86/crypto/crc32c-intel.ko.zst", "kernel/crypto/crc32c_generic.ko.zst",
    ])


def test_selection_globs_and_missing_modules():
    tree = parse_tree(MODULES_DEP)
    assert select(tree, ["virtio", "no_such_driver"]) == ["kernel/drivers/virtio/virtio.ko.zst"]
    assert "kernel/drivers/net/virtio_net.ko.zst" in select(tree, ["virtio*"])
    assert select(tree, ["crc32c-intel"]) == ["kernel/arch/x86/crypto/crc32c-intel.ko.zst"]


@pytest.mark.parametrize("path", [
    "usr/share/doc/python3/copyright", "usr/share/man/man1/ls.1.gz", "usr/share/locale/de/LC_MESSAGES/x.mo",
    "boot/vmlinuz-6.1.0-1-amd64", "var/lib/dpkg/status", "var/lib/apt/lists/x", "var/cache/apt/archives/a.deb",
    "var/log/apt/history.log", "usr/lib/python3.11/test/test_os.py",
    "usr/lib/python3/dist-packages/requests/__pycache__/api.cpython-311.pyc",
    "usr/lib/x86_64-linux-gnu/libicudata.so.72.1", "usr/lib/udev/hwdb.bin",
    # Secure Boot packages: the signed loaders ship beside the kernel, their tools not at all
    "usr/lib/shim/shimx64.efi.signed", "usr/lib/shim/mmx64.efi", "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed",
    "usr/share/shim/debian-uefi-ca.der", "usr/bin/mokutil", "usr/sbin/update-secureboot-policy",
    # apt, perl, time zones but UTC, iconv modules but codepage 850, grub tools the deployer never runs
    "usr/bin/apt-get", "usr/lib/apt/methods/http", "usr/lib/x86_64-linux-gnu/libapt-pkg.so.6.0.0", "etc/apt/sources.list",
    "usr/bin/perl", "usr/bin/perl5.36-x86_64-linux-gnu", "usr/lib/x86_64-linux-gnu/libperl.so.5.36",
    "usr/lib/x86_64-linux-gnu/perl-base/strict.pm", "usr/share/zoneinfo/Europe/Berlin", "usr/share/zoneinfo/Etc/GMT+1",
    "usr/lib/x86_64-linux-gnu/gconv/ISO8859-1.so", "usr/lib/x86_64-linux-gnu/gconv/EUC-JP.so",
    "usr/bin/grub-mkrescue", "usr/bin/grub-mkstandalone", "usr/sbin/grub-macbless",
    # the installer's grub modules: boot images are built from the target's
    "usr/lib/grub/x86_64-efi/normal.mod", "usr/lib/grub/i386-pc/boot.img", "usr/lib/grub/i386-pc/moddep.lst",
    # storage tools the agent never runs; no automatic assembly or activation of what is found on the disks
    "usr/bin/btrfs-convert", "usr/bin/btrfstune", "usr/sbin/mdmon", "usr/sbin/dmeventd", "usr/sbin/lvmpolld",
    "usr/lib/x86_64-linux-gnu/device-mapper/libdevmapper-event-lvm2thin.so",
    "usr/lib/x86_64-linux-gnu/liblvm2cmd.so.2.03", "usr/sbin/veritysetup",
    "usr/lib/udev/rules.d/64-md-raid-assembly.rules", "usr/lib/udev/rules.d/69-lvm.rules",
    # libraries nothing loads, grub's font, pzstd
    "usr/lib/x86_64-linux-gnu/libgnutls.so.30.34.3", "usr/lib/x86_64-linux-gnu/libp11-kit.so.0",
    "usr/lib/x86_64-linux-gnu/libnettle.so.8.6", "usr/lib/x86_64-linux-gnu/libdb-5.3.so", "usr/sbin/arpd",
    "usr/lib/python3.11/lib-dynload/_sqlite3.cpython-311-x86_64-linux-gnu.so", "usr/lib/python3.11/sqlite3/dbapi2.py",
    "usr/lib/x86_64-linux-gnu/libsqlite3.so.0.8.6", "usr/share/grub/unicode.pf2", "usr/bin/pzstd",
])
def test_trimming_drops(path):
    assert not keep(path)


@pytest.mark.parametrize("path", [
    "usr/bin/python3.11", "usr/lib/python3.11/os.py", "usr/lib/python3/dist-packages/requests/api.py",
    "usr/lib/x86_64-linux-gnu/libc.so.6", "usr/lib/udev/rules.d/60-persistent-storage.rules",
    "usr/lib/grub/i386-pc/grub-bios-setup", "usr/sbin/grub-mkimage",
    "usr/bin/efibootmgr", "etc/passwd", "var/log", "tmp", "run", "usr/share/doc-base-not",
    "usr/share/zoneinfo", "usr/share/zoneinfo/Etc/UTC", "usr/share/zoneinfo/UTC",
    "usr/lib/x86_64-linux-gnu/gconv/IBM850.so", "usr/lib/x86_64-linux-gnu/gconv/gconv-modules",
    "usr/sbin/grub-install", "usr/sbin/grub-probe", "usr/bin/grub-editenv", "usr/sbin/kexec",
    # the storage stacks' tools, libraries and the udev rules that name and sync their devices
    "usr/sbin/mdadm", "usr/sbin/lvm", "usr/sbin/dmsetup", "usr/sbin/thin_check", "usr/sbin/pdata_tools",
    "usr/sbin/cryptsetup", "usr/bin/btrfs", "usr/sbin/mkfs.btrfs", "usr/lib/x86_64-linux-gnu/libdevmapper.so.1.02.1",
    "usr/lib/x86_64-linux-gnu/libdevmapper-event.so.1.02.1", "usr/lib/x86_64-linux-gnu/libcryptsetup.so.12",
    "usr/lib/udev/rules.d/55-dm.rules", "usr/lib/udev/rules.d/56-lvm.rules", "usr/lib/udev/rules.d/95-dm-notify.rules",
    "usr/lib/udev/rules.d/63-md-raid-arrays.rules", "usr/lib/udev/rules.d/64-btrfs.rules",
    "usr/lib/x86_64-linux-gnu/libidn2.so.0", "usr/sbin/ldconfig", "usr/bin/zstd",
])
def test_trimming_keeps(path):
    assert keep(path)


def _touch(path: Path, data: bytes = b"x") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)


def fake_root(root: Path, version: str = "6.1.0-1-amd64", *, busybox: bool = True) -> Path:
    """A tiny usrmerged root with a kernel, a module tree and a few userland files."""
    _touch(root / f"boot/vmlinuz-{version}", b"kernel image")
    tree = root / f"usr/lib/modules/{version}"
    _touch(tree / "modules.dep", b"kernel/drivers/net/virtio_net.ko: kernel/drivers/virtio/virtio.ko\n"
                                 b"kernel/drivers/virtio/virtio.ko:\nkernel/sound/snd.ko:\n")
    for module in ("kernel/drivers/net/virtio_net.ko", "kernel/drivers/virtio/virtio.ko", "kernel/sound/snd.ko"):
        _touch(tree / module)
    _touch(tree / "modules.order")
    _touch(tree / "modules.alias")  # regenerated by depmod: not copied
    _touch(root / "usr/bin/python3.11")
    (root / "usr/bin/python3").symlink_to("python3.11")
    if busybox:
        _touch(root / "usr/bin/busybox")
    _touch(root / "usr/share/doc/python3/copyright")
    (root / "var/log").mkdir(parents=True)
    _touch(root / "var/log/dpkg.log")
    (root / "lib").symlink_to("usr/lib")
    return root


def test_files_to_copy_keeps_selected_modules_and_their_directories(tmp_path):
    root = fake_root(tmp_path / "root")
    files = files_to_copy(root, "6.1.0-1-amd64", ["kernel/drivers/net/virtio_net.ko", "kernel/drivers/virtio/virtio.ko"])
    tree = "usr/lib/modules/6.1.0-1-amd64"
    assert files == sorted([
        "lib", "usr", "usr/bin", "usr/bin/busybox", "usr/bin/python3", "usr/bin/python3.11",
        "usr/lib", "usr/lib/modules", tree, f"{tree}/kernel", f"{tree}/kernel/drivers",
        f"{tree}/kernel/drivers/net", f"{tree}/kernel/drivers/net/virtio_net.ko",
        f"{tree}/kernel/drivers/virtio", f"{tree}/kernel/drivers/virtio/virtio.ko", f"{tree}/modules.order",
        "usr/share", "var", "var/log",
    ])


def test_find_kernel_takes_the_newest_kernel_that_has_modules(tmp_path):
    root = fake_root(tmp_path / "root", "6.1.0-9-amd64")
    _touch(root / "usr/lib/modules/6.1.0-10-amd64/modules.dep")
    _touch(root / "boot/vmlinuz-6.1.0-10-amd64")
    _touch(root / "boot/vmlinuz-6.5.0-1-amd64")  # no module tree: not usable
    version, image = find_kernel(root)
    assert (version, image) == ("6.1.0-10-amd64", root / "boot/vmlinuz-6.1.0-10-amd64")


def _packages_line() -> int:
    lines = INSTALLER_KS.read_text().splitlines()
    return next(i for i, line in enumerate(lines, 1) if line.startswith("%packages"))


def test_root_without_kernel_is_bad_input_naming_the_kickstart_and_writes_nothing(tmp_path):
    root = tmp_path / "root"
    _touch(root / "usr/bin/python3")
    out = tmp_path / "out"
    ctx = installer_context(root, out, tmp_path / "work")
    with pytest.raises(BadInput) as caught:
        make_installer(ctx)
    assert caught.value.exit_code == 2
    assert f"installer.ks:{_packages_line()}" in str(caught.value)
    assert "linux-image-amd64" in str(caught.value)
    assert not out.exists() or list(out.iterdir()) == []


def _add_loader(root: Path, key: str) -> Path:
    path = root / SIGNED_LOADERS[key][0]
    _touch(path, f"MZ signed {key}".encode())
    return path


def test_signed_loaders_are_found_both_or_neither(tmp_path):
    root = fake_root(tmp_path / "root")
    assert find_signed_loaders(root) == {}
    shim, grub = _add_loader(root, "shim"), _add_loader(root, "grub")
    assert find_signed_loaders(root) == {"shim": shim, "grub": grub}


@pytest.mark.parametrize("present, missing_package", [("shim", "grub-efi-amd64-signed"), ("grub", "shim-signed")])
def test_half_a_signed_chain_is_bad_input_naming_the_packages_line_and_writes_nothing(tmp_path, present,
                                                                                      missing_package):
    root = fake_root(tmp_path / "root")
    _add_loader(root, present)
    out = tmp_path / "out"
    with pytest.raises(BadInput) as caught:
        make_installer(installer_context(root, out, tmp_path / "work"))
    assert caught.value.exit_code == 2
    assert caught.value.location.endswith(f"installer.ks:{_packages_line()}")
    assert f"add {missing_package} to %packages" in str(caught.value)
    assert not out.exists() or list(out.iterdir()) == []


def test_a_failure_after_staging_leaves_no_output_and_no_staging_tree(tmp_path):
    require_tools("tar")
    root = fake_root(tmp_path / "root", busybox=False)
    out = tmp_path / "out"
    out.mkdir()
    work = tmp_path / "work"
    ctx = installer_context(root, out, work)
    with pytest.raises(OperationFailed, match="busybox"):
        make_installer(ctx)
    assert list(out.iterdir()) == []
    assert list(work.iterdir()) == []


@pytest.mark.root
def test_dhcp_event_script_configures_address_route_and_resolver(tmp_path):
    """Run the real udhcpc event script in throw-away network, mount and UTS namespaces."""
    require_root()
    require_tools("unshare", "ip", "mount")
    resolv = tmp_path / "resolv.conf"
    resolv.write_text("nameserver 192.0.2.1\n")
    script = f"""
set -e
mount --bind {resolv} /etc/resolv.conf
ip link add d0 type veth peer name d1
ip link set d1 up
export interface=d0
sh {UDHCPC_SCRIPT} deconfig
ip=10.9.8.7 mask=24 router="10.9.8.1 10.9.8.2" dns="192.0.2.53 192.0.2.54" domain=lab.example \\
    hostname=node-7 sh {UDHCPC_SCRIPT} bound
echo ADDR; ip -4 -o address show dev d0
echo ROUTE; ip -4 route show default
echo RESOLV; cat /etc/resolv.conf
echo HOST; hostname
"""
    result = proc.run(["unshare", "--net", "--mount", "--uts", "--propagation", "private", "sh", "-c", script])
    out = result.stdout
    assert "metalstream-init: d0: 10.9.8.7/24 via 10.9.8.1 10.9.8.2" in out
    assert "inet 10.9.8.7/24" in out.split("ROUTE")[0]
    route = out.split("ROUTE")[1].split("RESOLV")[0].strip()
    assert route.startswith("default via 10.9.8.1 dev d0")
    resolver = out.split("RESOLV")[1].split("HOST")[0].strip().splitlines()
    assert resolver == ["search lab.example", "nameserver 192.0.2.53", "nameserver 192.0.2.54"]
    assert out.split("HOST")[1].strip() == "node-7"
    assert os.uname().nodename != "node-7"
