"""The installer environment as `metalstream build kickstarts/installer.ks --format installer` makes
it: what the initramfs holds, that it runs, that it is reproducible, and that it boots in qemu far
enough for the agent to call the service.
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
import struct
from pathlib import Path

import pytest

from tarball_builder.chroot import Chroot
from tarball_builder.installer import make_installer

from conftest import require_tools
from fixtures_installer import QEMU_BOOT_TIMEOUT, initramfs_listing, installer_context, qemu_boot, unpacked_initramfs

pytestmark = pytest.mark.root

MAX_COMPRESSED = 100 * 1024 * 1024
DISK_TOOLS_SCRIPT = """set -e
truncate -s 64M /tmp/esp.img && mkfs.vfat -F 32 /tmp/esp.img >/dev/null
echo "hello from the installer" > /tmp/hello
python3 -c "
from pathlib import Path
from deployer.esp import Esp
esp = Esp('/tmp/esp.img')
esp.put_file(Path('/tmp/hello'), '/EFI/BOOT/hello.txt')
print('esp:', esp.read('/EFI/BOOT/hello.txt').decode().strip())
"
truncate -s 320M /tmp/disk.img
mkfs.ext4 -q -F /tmp/disk.img && echo "ext4: ok"
mkfs.xfs -q -f /tmp/disk.img && echo "xfs: ok"
mkfs.btrfs -q -f /tmp/disk.img >/dev/null && btrfs inspect-internal dump-super /tmp/disk.img | grep -q '^magic.*_BHRfS_M \[match\]' \
    && echo "btrfs: ok"
mdadm --version 2>&1 | grep -q "^mdadm - v4" && lvm version | grep -q "^  LVM version" && cryptsetup --version \
    | grep -q "^cryptsetup 2" && thin_check -V | grep -q . && dmsetup --version | grep -q "^Library version" \
    && lvmconfig activation/monitoring global/use_lvmpolld | tr '\\n' ' ' && echo "storage tools: ok"
"""


def sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_manifest_describes_the_files_beside_it(installer_build):
    manifest, out, root = installer_build
    assert manifest["format"] == "metalstream-installer/1"
    assert manifest["name"] == "installer"
    assert isinstance(manifest["created"], int)
    assert manifest["builder"]["name"] == "metalstream"
    for key, suffix in (("kernel", ".vmlinuz"), ("initramfs", ".initramfs")):
        entry = manifest[key]
        path = out / entry["file"]
        assert entry["file"] == f"installer{suffix}"
        assert entry["size"] == path.stat().st_size
        assert entry["sha256"] == sha256(path)
    version = manifest["kernel_version"]
    assert (out / "installer.vmlinuz").read_bytes() == (root / f"boot/vmlinuz-{version}").read_bytes()
    assert sorted(p.name for p in out.iterdir() if not p.name.startswith(".installer.build-")) == [
        "installer.grubnetx64.efi", "installer.initramfs", "installer.json", "installer.shimx64.efi",
        "installer.vmlinuz"]
    assert (out / "installer.initramfs").stat().st_mode & 0o777 == 0o644
    assert manifest["initramfs"]["size"] < MAX_COMPRESSED
    assert manifest["initramfs_uncompressed_size"] > manifest["initramfs"]["size"]
    # zstd frame magic: the kernel unpacks it because Debian's kernel has CONFIG_RD_ZSTD
    assert (out / "installer.initramfs").read_bytes()[:4] == bytes.fromhex("28b52ffd")


def test_initramfs_holds_the_agent_its_runtime_and_only_the_chosen_modules(installer_build):
    manifest, out, _ = installer_build
    names = set(initramfs_listing(out / manifest["initramfs"]["file"]))
    version = manifest["kernel_version"]
    tree = f"usr/lib/modules/{version}"
    for needed in ("init", "usr/share/metalstream/udhcpc.sh", "usr/bin/python3",
                   "usr/lib/python3/dist-packages/deployer/agent_cli.py",
                   "usr/lib/python3/dist-packages/requests/__init__.py",
                   "usr/lib/python3/dist-packages/pyudev/__init__.py",
                   "usr/lib/python3/dist-packages/click/__init__.py",
                   "usr/bin/udevadm", "usr/sbin/sfdisk", "usr/sbin/mkfs.ext4", "usr/sbin/mkfs.xfs",
                   "usr/sbin/mkfs.vfat", "usr/bin/mcopy", "usr/bin/zstd", "usr/bin/tar",
                   "usr/bin/grub-mkimage", "usr/lib/grub/i386-pc/grub-bios-setup", "usr/sbin/kexec",
                   "usr/sbin/udhcpc", "usr/sbin/reboot", "usr/bin/ssh-keygen", "usr/bin/efibootmgr", "dev/console",
                   f"{tree}/modules.dep", f"{tree}/modules.alias",
                   f"{tree}/kernel/drivers/net/virtio_net.ko", f"{tree}/kernel/drivers/block/virtio_blk.ko",
                   f"{tree}/kernel/drivers/nvme/host/nvme.ko", f"{tree}/kernel/drivers/ata/ahci.ko",
                   f"{tree}/kernel/fs/ext4/ext4.ko", f"{tree}/kernel/fs/xfs/xfs.ko", f"{tree}/kernel/fs/vfat/vfat.ko"
                   if f"{tree}/kernel/fs/vfat/vfat.ko" in names else f"{tree}/kernel/fs/fat/vfat.ko",
                   f"{tree}/kernel/crypto/crc32c_generic.ko",
                   # the storage stacks of the deploy layouts
                   "usr/sbin/mdadm", "usr/sbin/lvm", "usr/sbin/vgcreate", "usr/sbin/dmsetup", "usr/sbin/thin_check",
                   "usr/sbin/cryptsetup", "usr/bin/btrfs", "usr/sbin/mkfs.btrfs", "usr/sbin/wipefs",
                   "usr/lib/udev/rules.d/55-dm.rules", "usr/lib/udev/rules.d/95-dm-notify.rules",
                   "usr/lib/udev/rules.d/63-md-raid-arrays.rules",
                   *(f"{tree}/kernel/drivers/md/{m}.ko" for m in ("md-mod", "raid0", "raid1", "raid10", "raid456",
                                                                  "dm-mod", "dm-crypt", "dm-thin-pool")),
                   f"{tree}/kernel/fs/btrfs/btrfs.ko", f"{tree}/kernel/crypto/xts.ko"):
        assert needed in names, needed
    modules = [n for n in names if n.startswith(f"{tree}/") and ".ko" in n]
    assert len(modules) == manifest["module_count"]
    assert not any("/sound/" in n or "/gpu/drm/" in n or "/wireless/" in n for n in modules)
    # (grub's modules: the deployer builds the target's boot images from the target's own module directory)
    for dropped in ("boot", "usr/share/doc", "usr/share/man", "usr/share/locale", "var/lib/dpkg",
                    "var/lib/apt", "usr/lib/python3.11/test", "usr/lib/grub/x86_64-efi", "usr/lib/grub/i386-pc/boot.img",
                    "usr/bin/perl", "usr/lib/apt", "usr/sbin/dhclient", "usr/sbin/dmeventd", "usr/sbin/mdmon",
                    "usr/lib/udev/rules.d/64-md-raid-assembly.rules", "usr/lib/udev/rules.d/69-lvm.rules",
                    "usr/lib/x86_64-linux-gnu/libgnutls.so.30", "usr/share/grub/unicode.pf2"):
        assert not any(n == dropped or n.startswith(dropped + "/") for n in names), dropped
    assert not any("/deployer/__pycache__/" in n and "cpython-311.pyc" not in n for n in names)
    assert "usr/lib/python3/dist-packages/deployer/__pycache__/agent.cpython-311.pyc" in names
    assert len(names) == manifest["file_count"] + 1  # `.` itself


def authenticode_signatures(path: Path) -> list[bytes]:
    """The PKCS#7 blobs in a PE image's certificate table (its Authenticode signatures)."""
    data = path.read_bytes()
    assert data[:2] == b"MZ"
    pe = struct.unpack_from("<I", data, 0x3C)[0]
    assert data[pe:pe + 4] == b"PE\0\0"
    optional = pe + 24
    assert struct.unpack_from("<H", data, optional)[0] == 0x20B  # PE32+: a 64-bit image
    offset, size = struct.unpack_from("<II", data, optional + 112 + 4 * 8)  # data directory 4: security
    blobs = []
    while size >= 8:
        length, _, kind = struct.unpack_from("<IHH", data, offset)
        if kind == 2:  # WIN_CERT_TYPE_PKCS_SIGNED_DATA
            blobs.append(data[offset + 8:offset + length])
        step = (length + 7) & ~7
        offset, size = offset + step, size - step
    return blobs


def test_signed_loaders_ship_beside_the_kernel_and_not_in_the_initramfs(installer_build):
    """Debian's shim and signed network grub, as the packages installed them, for the Secure Boot path."""
    manifest, out, root = installer_build
    loaders = manifest["secure_boot"]
    for key, suffix, source, signer in (
            ("shim", "shimx64.efi", "usr/lib/shim/shimx64.efi.signed", b"Microsoft Corporation UEFI CA 2011"),
            ("grub", "grubnetx64.efi", "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed",
             b"Debian Secure Boot Signer")):
        path = out / loaders[key]["file"]
        assert loaders[key]["file"] == f"installer.{suffix}"
        assert loaders[key] == {"file": path.name, "sha256": sha256(root / source), "size": path.stat().st_size}
        assert path.read_bytes() == (root / source).read_bytes()
        assert stat.S_IMODE(path.stat().st_mode) == 0o644 and path.stat().st_mtime == manifest["created"]
        signatures = authenticode_signatures(path)
        assert signatures and any(signer in blob for blob in signatures), key
    names = initramfs_listing(out / manifest["initramfs"]["file"])
    for dropped in ("usr/lib/shim", "usr/lib/grub/x86_64-efi-signed", "usr/share/shim", "usr/bin/mokutil",
                    "usr/sbin/update-secureboot-policy"):
        assert not any(n == dropped or n.startswith(dropped + "/") for n in names), dropped


def _dep_line(line: str) -> tuple[str, frozenset[str]]:
    module, _, deps = line.partition(":")
    return module, frozenset(deps.split())


def test_unpacked_initramfs_runs_the_agent_and_every_program_finds_its_libraries(installer_build):
    require_tools("unshare", "chroot")
    manifest, out, root = installer_build
    version = manifest["kernel_version"]
    original_deps = dict(_dep_line(line) for line in
                         (root / f"usr/lib/modules/{version}/modules.dep").read_text().splitlines())
    with unpacked_initramfs(out / manifest["initramfs"]["file"]) as tree:
        init = tree / "init"
        assert stat.S_IMODE(init.stat().st_mode) == 0o755
        assert init.read_text().startswith("#!/bin/sh")
        # Regular files only: cpio -m restores neither symlink mtimes nor directory mtimes (it sets
        # those before creating their entries).
        newest = max(os.lstat(path).st_mtime for d, dirs, files in os.walk(tree)
                     for path in (os.path.join(d, n) for n in files) if not os.path.islink(path))
        assert newest <= manifest["created"]
        # depmod over the kept modules found every dependency the full tree knows: the closure is complete.
        kept_deps = dict(_dep_line(line) for line in
                         (tree / f"usr/lib/modules/{version}/modules.dep").read_text().splitlines())
        assert len(kept_deps) == manifest["module_count"]
        assert {m: original_deps[m] for m in kept_deps} == kept_deps
        assert "kernel/drivers/net/net_failover.ko" in kept_deps["kernel/drivers/net/virtio_net.ko"]

        def bytecode() -> dict[str, float]:
            return {os.path.join(d, n): os.stat(os.path.join(d, n)).st_mtime
                    for d, _, files in os.walk(tree / "usr/lib") for n in files if n.endswith(".pyc")}

        shipped = bytecode()
        with Chroot(tree) as chroot:
            agent = chroot.run(["python3", "-m", "metalstream", "agent", "--help"])
            missing = chroot.run(["sh", "-c", 'for f in /usr/bin/* /usr/sbin/*; do [ -L "$f" ] && continue; '
                                  'ldd "$f" 2>/dev/null | grep -q "not found" && echo "$f"; done; true'])
            resolved = chroot.run(["modprobe", "-S", version, "--show-depends", "virtio_net"])
            # What the agent does to disks, with the installer's own tools: an ESP written by the
            # deployer's mtools code (needs iconv's codepage 850), ext4 and xfs file systems.
            disks = chroot.run(["sh", "-c", DISK_TOOLS_SCRIPT])
        # The shipped bytecode is valid (unchecked-hash .pyc): python wrote no new or refreshed .pyc.
        assert bytecode() == shipped
    assert "--server" in agent.stdout and "--token" in agent.stdout
    assert missing.stdout.strip() == ""
    assert "virtio_net.ko" in resolved.stdout and "failover.ko" in resolved.stdout
    assert disks.stdout.splitlines()[-5:] == [
        "esp: hello from the installer", "ext4: ok", "xfs: ok", "btrfs: ok",
        "monitoring=0 use_lvmpolld=0 storage tools: ok"]


def test_same_root_gives_the_same_initramfs(installer_build, tmp_path):
    """make_installer called directly on the CLI build's root reproduces the CLI's files bit for bit."""
    manifest, _, root = installer_build
    again = make_installer(installer_context(root, tmp_path / "out", tmp_path / "work", epoch=manifest["created"]))
    assert again["initramfs"]["sha256"] == manifest["initramfs"]["sha256"]
    assert again["kernel"]["sha256"] == manifest["kernel"]["sha256"]
    assert again["secure_boot"] == manifest["secure_boot"]
    assert list((tmp_path / "work").iterdir()) == []  # the staging tree is gone


@pytest.mark.e2e
def test_installer_boots_in_qemu_and_the_agent_calls_the_service(installer_build, agent_endpoint, tmp_path):
    require_tools("qemu-system-x86_64")
    manifest, out, _ = installer_build
    port = agent_endpoint.server_address[1]
    log = tmp_path / "serial.log"
    append = f"console=ttyS0 metalstream.server=http://10.0.2.2:{port} metalstream.token=test-token-17"
    with qemu_boot(out / manifest["kernel"]["file"], out / manifest["initramfs"]["file"], append, log) as guest:
        finished = guest.wait_for(r"^metalstream-init: (starting a root shell|agent finished)", QEMU_BOOT_TIMEOUT)
        console = guest.text()
    assert finished, f"the installer did not get through its boot; console:\n{console[-4000:]}"
    assert "metalstream-init: network up" in console
    assert "metalstream-agent: starting (server=http://10.0.2.2:" in console
    plan_calls = [r for r in agent_endpoint.requests if r["path"] == "/api/v1/agent/plan"]
    assert plan_calls, f"the agent never asked for its plan; console:\n{console[-4000:]}"
    assert plan_calls[0]["method"] == "GET"
    assert plan_calls[0]["authorization"] == "Bearer test-token-17"
    # The agent reported its failure (with its log) to the service from inside the installer.
    results = [r for r in agent_endpoint.requests if r["path"] == "/api/v1/agent/result" and r["method"] == "POST"]
    assert results, "the agent posted no result"
    result = json.loads(results[0]["body"])
    assert result["success"] is False and result["phase"] == "start"
    assert "401" in result["error"] and "metalstream agent starting" in result["log"]
    # The service refused the token: the agent failed, and /init kept the machine up with a shell.
    assert "metalstream-init: the agent exited with status 1" in console
    assert "Kernel panic" not in console
