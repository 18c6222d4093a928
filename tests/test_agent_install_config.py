"""Rendered target files: fstab, grub.cfg, network configuration; and writes that stay inside the target."""
from __future__ import annotations

import itertools
import os
import shutil
import subprocess

import pytest

from deployer.bootloader import early_cfg, grub_cfg, install_uefi, mkimage
from deployer.configure import add_authorized_keys, fstab_text, networkd_files, networkmanager_files, set_root_password
from deployer.esp import Esp
from deployer.partition import plan_layout
from metalstream.contracts.deployspec import DeploySpec, NetworkDevice, PartSpec
from metalstream.contracts.plan import Kernel
from metalstream.errors import OperationFailed
from metalstream.rootfs import write_file

from conftest import require_tools

GIB = 1 << 30
KERNEL = [Kernel("6.1.0-21-amd64", "/boot/vmlinuz-6.1.0-21-amd64", "/boot/initrd.img-6.1.0-21-amd64")]


def _uuids():
    n = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(n):012d}"


def test_fstab_for_the_default_layout():
    layout = plan_layout(8 * GIB, "both", new_uuid=_uuids())
    assert fstab_text(layout).splitlines()[2:] == [
        "UUID=0000-0000  /boot/efi  vfat  umask=0077,nofail  0  2",
        "UUID=00000000-0000-4000-8000-000000000002  /  ext4  defaults,errors=remount-ro  0  1",
    ]


def test_fstab_with_boot_swap_xfs_and_options():
    storage = DeploySpec(reqpart=True, partitions=[PartSpec("/boot", size_mib=512), PartSpec("swap", size_mib=128),
                                                   PartSpec("/", fstype="xfs", grow=True),
                                                   PartSpec("/srv", size_mib=100, fsoptions="noatime,nodev")])
    layout = plan_layout(8 * GIB, "uefi", storage, new_uuid=_uuids())
    assert fstab_text(layout).splitlines()[2:] == [
        "UUID=0000-0000  /boot/efi  vfat  umask=0077,nofail  0  2",
        "UUID=00000000-0000-4000-8000-000000000002  /boot  ext4  defaults,errors=remount-ro  0  2",
        "UUID=00000000-0000-4000-8000-000000000003  none  swap  sw  0  0",
        "UUID=00000000-0000-4000-8000-000000000004  /  xfs  defaults  0  0",
        "UUID=00000000-0000-4000-8000-000000000005  /srv  ext4  noatime,nodev  0  2",
    ]


def test_grub_cfg_exact_text_with_serial_console_and_quoted_args():
    layout = plan_layout(8 * GIB, "both", new_uuid=_uuids())
    root = "00000000-0000-4000-8000-000000000002"
    assert grub_cfg(layout, KERNEL, title="debian", kernel_args="console=ttyS0,115200 quiet x=$(id)") == (
        "# written by metalstream at deploy time; no grub-mkconfig ran on this system\n"
        "set timeout=3\nset default=0\ninsmod part_gpt\ninsmod ext2\n"
        f"search --no-floppy --fs-uuid --set=root {root}\n"
        "serial --unit=0 --speed=115200\nterminal_input console serial\nterminal_output console serial\n"
        "\n"
        "menuentry 'debian (6.1.0-21-amd64)' --id metalstream-0 {\n"
        f"\tlinux /boot/vmlinuz-6.1.0-21-amd64 root=UUID={root} ro console=ttyS0,115200 quiet 'x=$(id)'\n"
        "\tinitrd /boot/initrd.img-6.1.0-21-amd64\n"
        "}\n")
    assert early_cfg(layout) == (f"search --no-floppy --fs-uuid --set=root {root}\n"
                                 "set prefix=($root)/boot/grub\nconfigfile ($root)/boot/grub/grub.cfg\n")


def test_grub_cfg_with_separate_boot_uses_paths_inside_that_filesystem():
    storage = DeploySpec(reqpart=True, reqpart_add_boot=True, partitions=[PartSpec("/", fstype="xfs", grow=True)])
    layout = plan_layout(8 * GIB, "bios", storage, new_uuid=_uuids())
    boot, root = layout.partitions[1], layout.partitions[2]
    assert boot.mountpoint == "/boot" and root.mountpoint == "/"
    cfg = grub_cfg(layout, KERNEL, title="x", kernel_args="")
    assert f"search --no-floppy --fs-uuid --set=root {boot.fs_uuid}\n" in cfg
    assert f"\tlinux /vmlinuz-6.1.0-21-amd64 root=UUID={root.fs_uuid} ro\n" in cfg
    assert "serial" not in cfg
    assert "configfile ($root)/grub/grub.cfg" in early_cfg(layout)


def test_grub_cfg_needs_a_kernel():
    with pytest.raises(OperationFailed, match="lists no kernel"):
        grub_cfg(plan_layout(8 * GIB, "both"), [], title="x", kernel_args="")


def test_networkd_dhcp_everywhere_and_a_static_address():
    files = networkd_files([
        NetworkDevice(device=None, bootproto="dhcp"),
        NetworkDevice(device="52:54:00:AB:CD:EF", bootproto="static", ip="192.0.2.10", netmask="255.255.255.0",
                      gateway="192.0.2.1", nameservers=["192.0.2.53"], mtu=9000),
    ])
    assert files == {
        "etc/systemd/network/90-metalstream-0.network":
            "# written by metalstream\n[Match]\nName=en* eth*\n\n[Network]\nDHCP=yes\n",
        "etc/systemd/network/11-metalstream-1.network":
            "# written by metalstream\n[Match]\nMACAddress=52:54:00:ab:cd:ef\n\n[Network]\n"
            "Address=192.0.2.10/24\nGateway=192.0.2.1\nDNS=192.0.2.53\n\n[Link]\nMTUBytes=9000\n",
    }


def test_networkmanager_keyfiles():
    files = networkmanager_files([NetworkDevice(device=None), NetworkDevice(device="eth1", bootproto="static",
                                                                          ip="10.1.2.3/16", gateway="10.1.0.1")])
    wildcard = files["etc/NetworkManager/system-connections/metalstream-0.nmconnection"]
    static = files["etc/NetworkManager/system-connections/metalstream-1.nmconnection"]
    assert "[match]\ninterface-name=en*;eth*\n" in wildcard and "method=auto" in wildcard
    assert "interface-name=eth1\n" in static and "address1=10.1.2.3/16,10.1.0.1\n" in static


def test_writes_never_follow_symlinks_out_of_the_target(tmp_path):
    root, outside = tmp_path / "root", tmp_path / "outside"
    (root / "etc").mkdir(parents=True)
    outside.mkdir()
    (outside / "hostname").write_text("host file\n")
    os.symlink(outside / "hostname", root / "etc/hostname")  # an absolute link, resolved on the host
    write_file(root, "etc/hostname", "node\n")
    assert (outside / "hostname").read_text() == "host file\n"
    assert (root / "etc/hostname").read_text() == "node\n" and not (root / "etc/hostname").is_symlink()
    os.symlink(outside, root / "root")  # absolute: the target resolves it inside itself, as it would when running
    add_authorized_keys(root, ["ssh-ed25519 AAAA x"])
    assert list(outside.iterdir()) == [outside / "hostname"]
    assert (root / str(outside).lstrip("/") / ".ssh/authorized_keys").read_text() == "ssh-ed25519 AAAA x\n"


def test_root_password_replaces_only_roots_hash(tmp_path):
    (tmp_path / "etc").mkdir()
    (tmp_path / "etc/shadow").write_text("daemon:*:1:0:99999:7:::\nroot:*:19000:0:99999:7:::\n")
    os.chmod(tmp_path / "etc/shadow", 0o640)
    set_root_password(tmp_path, "$6$s$h")
    assert (tmp_path / "etc/shadow").read_text() == "daemon:*:1:0:99999:7:::\nroot:$6$s$h:19000:0:99999:7:::\n"
    assert (tmp_path / "etc/shadow").stat().st_mode & 0o777 == 0o640


def _esp_file(tmp_path):
    """A FAT32 filesystem in a plain file: mtools writes it like an ESP partition (no root, no loop)."""
    esp = tmp_path / "esp.vfat"
    with open(esp, "wb") as f:
        f.truncate(64 << 20)
    subprocess.run(["mkfs.vfat", "-F", "32", "-i", "ABCD1234", str(esp)], check=True, capture_output=True)
    return Esp(str(esp))


def test_uefi_without_shim_builds_a_grub_image(tmp_path):
    require_tools("mkfs.vfat", "mcopy", "grub-mkimage")
    root = tmp_path / "root"
    shutil.copytree("/usr/lib/grub/x86_64-efi", root / "usr/lib/grub/x86_64-efi")
    layout = plan_layout(8 * GIB, "uefi", new_uuid=_uuids())
    esp = _esp_file(tmp_path)
    work = tmp_path / "work"
    work.mkdir()
    installed = install_uefi(root, layout, esp, work)
    assert (installed.description, installed.loader) == ("grub-mkimage x86_64-efi", "\\EFI\\BOOT\\BOOTX64.EFI")
    image = esp.read("/EFI/BOOT/BOOTX64.EFI")
    assert image[:2] == b"MZ"  # a PE/COFF EFI application
    assert early_cfg(layout).encode() in image  # with the embedded search-by-UUID config
    assert (root / "boot/grub/x86_64-efi/linux.mod").is_file()  # modules for insmod, as grub-install does


def test_missing_grub_platform_is_a_clear_failure(tmp_path):
    with pytest.raises(OperationFailed, match="the image has no grub for i386-pc"):
        mkimage(tmp_path, "i386-pc", ("biosdisk",), "", tmp_path / "core.img")
