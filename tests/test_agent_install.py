"""`metalstream install` onto disk image files with real tools (sfdisk, losetup, mkfs, mtools, grub, tar).

The acceptance test installs the real Debian image onto a 4 GiB sparse file with --boot uefi, checks
the disk file by file against the tarball, and boots it with OVMF under qemu (TCG) to a login prompt.
"""
from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_root, require_tools, run_cli
from fixtures_agent import blkid, compare_with_tarball, esp_files, gpt_partitions, mounted_partition, partition_loop

pytestmark = pytest.mark.root

GIB = 1 << 30
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT_TYPE = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
BIOS_TYPE = "21686148-6449-6E6F-744E-656564454649"
SSH_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIOMqqnkVzrm0SdG6UOoqKLsabgH5C9okWi0dh2l9GKJl ops@example"
PW_HASH = "$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g."
OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS.fd")
TOOLS = ("sfdisk", "losetup", "wipefs", "mkfs.ext4", "mkfs.vfat", "mkfs.xfs", "mcopy", "mdir", "grub-mkimage",
         "zstd", "tar")

# Written by configure/bootloader, or moved to the ESP: these differ from the tarball on purpose.
CHANGED = re.compile(r"^(etc/(fstab|hostname|hosts|machine-id|shadow|resolv\.conf|metalstream|systemd/network|"
                     r"systemd/system)|root/\.ssh|boot/efi/.|boot/grub|var/lib/dbus/machine-id)")


def _tarball(manifest: Path) -> Path:
    return manifest.parent / json.loads(manifest.read_text())["tarball"]


def _root_shadow_fields(tarball: Path) -> list[str]:
    """The fields of root's /etc/shadow line as the image ships it."""
    shadow = subprocess.run(["tar", "--zstd", "-xOf", str(tarball), "./etc/shadow"], capture_output=True,
                            text=True, check=True).stdout
    return next(line.split(":") for line in shadow.splitlines() if line.startswith("root:"))


@pytest.fixture(scope="module")
def uefi_install(debian_image, agent_workdir):
    """The real Debian image installed once with `metalstream install --boot uefi` onto a new 4 GiB sparse file."""
    require_root()
    require_tools(*TOOLS)
    image = agent_workdir / "debian-uefi.img"
    result = run_cli("install", str(debian_image), "--to", str(image), "--size", "4G", "--boot", "uefi",
                     "--hostname", "node-17", "--ssh-key", SSH_KEY, "--root-password-hash", PW_HASH,
                     "--kernel-args", "console=ttyS0,115200")
    try:
        assert result.returncode == 0, result.stdout + result.stderr
        yield image, result
    finally:
        image.unlink(missing_ok=True)


def test_uefi_install_makes_a_sparse_gpt_disk(uefi_install):
    image, result = uefi_install
    st = image.stat()
    assert st.st_size == 4 * GIB
    assert st.st_blocks * 512 < 2 * GIB  # sparse: only what was written takes space
    parts = gpt_partitions(image)
    assert [(p["type"], p["name"]) for p in parts] == [(ESP_TYPE, "esp"), (ROOT_TYPE, "root")]
    for phase in ("start", "disk", "partition", "mkfs", "stream", "verify", "configure", "bootloader", "finish"):
        assert f"[{phase}]" in result.stdout, phase
    assert "install succeeded" in result.stdout


def test_root_filesystem_holds_the_image_file_by_file(uefi_install, debian_image, agent_workdir):
    image, _ = uefi_install
    root_part = gpt_partitions(image)[1]
    with mounted_partition(image, root_part, agent_workdir / "check-root") as root:
        checked, problems = compare_with_tarball(_tarball(debian_image), root, skip=CHANGED.match)
    assert checked > 15000
    assert problems == []


def test_fstab_uuids_match_the_filesystems(uefi_install, agent_workdir):
    image, result = uefi_install
    esp, root_part = gpt_partitions(image)
    with partition_loop(image, esp) as esp_dev, partition_loop(image, root_part) as root_dev:
        esp_id, root_id = blkid(esp_dev), blkid(root_dev)
    assert esp_id["TYPE"] == "vfat" and esp_id["VERSION"] == "FAT32"
    assert root_id["TYPE"] == "ext4"
    with mounted_partition(image, root_part, agent_workdir / "check-fstab") as root:
        entries = [line.split() for line in (root / "etc/fstab").read_text().splitlines()
                   if line.strip() and not line.startswith("#")]
        deployment = json.loads((root / "etc/metalstream/deployment.json").read_text())
        grub_cfg = (root / "boot/grub/grub.cfg").read_text()
    assert {(e[0], e[1], e[2]) for e in entries} == {(f"UUID={root_id['UUID']}", "/", "ext4"),
                                                      (f"UUID={esp_id['UUID']}", "/boot/efi", "vfat")}
    assert deployment["root_uuid"] == root_id["UUID"]
    assert f"root UUID {root_id['UUID']}" in result.stdout
    assert f"search --no-floppy --fs-uuid --set=root {root_id['UUID']}" in grub_cfg
    assert f"root=UUID={root_id['UUID']} ro console=ttyS0,115200" in grub_cfg


def test_target_is_configured_for_this_machine(uefi_install, debian_image, agent_workdir):
    image, _ = uefi_install
    manifest = json.loads(debian_image.read_text())
    with mounted_partition(image, gpt_partitions(image)[1], agent_workdir / "check-config") as root:
        assert (root / "etc/hostname").read_text() == "node-17\n"
        assert "127.0.1.1\tnode-17" in (root / "etc/hosts").read_text()
        assert (root / "root/.ssh/authorized_keys").read_text() == SSH_KEY + "\n"
        assert (root / "root/.ssh/authorized_keys").stat().st_mode & 0o777 == 0o600
        # Only the hash changes: the other fields (the last-change day among them) are the image's own.
        image_root = _root_shadow_fields(_tarball(debian_image))
        assert [line for line in (root / "etc/shadow").read_text().splitlines() if line.startswith("root:")] \
            == [":".join(["root", PW_HASH, *image_root[2:]])]
        assert re.fullmatch(r"[0-9a-f]{32}\n", (root / "etc/machine-id").read_text())
        for kind in ("rsa", "ecdsa", "ed25519"):  # made while the image streamed, moved in by configure
            private = root / f"etc/ssh/ssh_host_{kind}_key"
            assert private.stat().st_mode & 0o777 == 0o600 and private.stat().st_uid == 0
            assert (root / f"etc/ssh/ssh_host_{kind}_key.pub").stat().st_mode & 0o777 == 0o644
            fingerprint = subprocess.run(["ssh-keygen", "-l", "-f", private], capture_output=True, text=True)
            assert fingerprint.returncode == 0 and kind.upper() in fingerprint.stdout, fingerprint.stderr
        network = (root / "etc/systemd/network/90-metalstream-0.network").read_text()
        assert "Name=en* eth*" in network and "DHCP=yes" in network
        unit = os.readlink(root / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service")
        assert unit.endswith("/systemd/system/systemd-networkd.service") and (root / unit.lstrip("/")).is_file()
        deployment = json.loads((root / "etc/metalstream/deployment.json").read_text())
        assert deployment["image"] == "debian" and deployment["sha256"] == manifest["sha256"]
        kernel = manifest["kernels"][0]
        assert (root / kernel["initramfs"].lstrip("/")).stat().st_size > 1 << 20  # the image's own initramfs


def test_esp_holds_the_removable_path_bootloader(uefi_install):
    image, _ = uefi_install
    files = esp_files(image, gpt_partitions(image)[0])
    assert "/EFI/BOOT/BOOTX64.EFI" in files


def _boot_to_login(drive_args: list[str], log: Path, *, timeout: float = 480) -> str:
    """Boot qemu (TCG) with `drive_args`; return the serial log once it shows a login prompt."""
    qemu = subprocess.Popen(
        ["qemu-system-x86_64", "-accel", "tcg", "-m", "1024", "-smp", "2", *drive_args, "-net", "none",
         "-serial", f"file:{log}", "-display", "none", "-monitor", "none", "-nographic"],
        stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout  # TCG: 1-4 min here depending on load
        text = ""
        while time.monotonic() < deadline and qemu.poll() is None:
            text = log.read_text(errors="replace") if log.exists() else ""
            if "login:" in text:
                return text
            time.sleep(2)
        stderr = qemu.stderr.read().decode(errors="replace") if qemu.poll() is not None else ""
        raise AssertionError(f"no login prompt; qemu rc={qemu.poll()} {stderr}; serial tail:\n{text[-3000:]}")
    finally:
        qemu.kill()
        qemu.wait()


@pytest.mark.e2e
def test_ovmf_boots_the_installed_disk_to_a_login_prompt(uefi_install, agent_workdir):
    require_tools("qemu-system-x86_64")
    assert OVMF_CODE.exists() and OVMF_VARS.exists(), "ovmf package missing: run .ci/setup"
    image, _ = uefi_install
    vars_copy = agent_workdir / "OVMF_VARS.fd"
    shutil.copy(OVMF_VARS, vars_copy)
    try:
        text = _boot_to_login(["-machine", "q35", "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
                               "-drive", f"if=pflash,format=raw,file={vars_copy}",
                               "-drive", f"file={image},format=raw,if=virtio"], agent_workdir / "uefi-serial.log")
    finally:
        vars_copy.unlink(missing_ok=True)
    assert "node-17 login:" in text


@pytest.mark.slow
@pytest.mark.e2e
def test_seabios_boots_a_default_both_mode_install(debian_image, sparse_disk, agent_workdir):
    """BIOS path on a disk image file: grub-bios-setup with the loop-device map, booted by SeaBIOS."""
    require_tools(*TOOLS, "qemu-system-x86_64")
    image = sparse_disk(4 * GIB)
    result = run_cli("install", str(debian_image), "--to", str(image), "--hostname", "biosbox",
                     "--kernel-args", "console=ttyS0,115200")
    assert result.returncode == 0, result.stdout + result.stderr
    assert [p["type"] for p in gpt_partitions(image)] == [BIOS_TYPE, ESP_TYPE, ROOT_TYPE]
    text = _boot_to_login(["-drive", f"file={image},format=raw,if=virtio"], agent_workdir / "bios-serial.log")
    assert "biosbox login:" in text
