"""Install the small synthetic image with real tools: boot modes, layouts, refusals, dry run, failure safety.

The synthetic image has a fake kernel, so these disks boot nothing; they check what the install
writes (tables, filesystems, files, ESP, boot code) and what it must not write.
"""
from __future__ import annotations

import hashlib
import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from deployer.plan import local_plan

from conftest import METALSTREAM, REPO, require_root, require_tools, run_cli
from fixtures_agent import (
    SYNTHETIC_KERNEL,
    blkid,
    compare_with_tarball,
    esp_files,
    gpt_partitions,
    leftover_state,
    mounted_partition,
    partition_loop,
)
from fixtures_stream import Fault

pytestmark = pytest.mark.root

GIB = 1 << 30
MIB = 1 << 20
TOOLS = ("sfdisk", "losetup", "wipefs", "mkfs.ext4", "mkfs.vfat", "mkfs.xfs", "mcopy", "mdir", "grub-mkimage",
         "zstd", "tar")


@pytest.fixture(autouse=True)
def _tools():
    require_root()
    require_tools(*TOOLS)


def _head(path: Path, size: int = MIB) -> bytes:
    with open(path, "rb") as f:
        return f.read(size)


def _plan(manifest: Path, tmp_path: Path, **fields) -> Path:
    """A plan file for the image, written by the contract's writer, with `fields` set in the document."""
    plan = local_plan(str(manifest)).to_json()
    path = tmp_path / "plan.json"
    path.write_text(json.dumps({**plan, "deployment_id": "test-deployment", **fields}))
    return path


def test_both_modes_write_bios_boot_code_and_the_esp(synthetic_image, sparse_disk, agent_workdir):
    disk = sparse_disk(4 * GIB)
    result = run_cli("install", str(synthetic_image), "--to", str(disk), "--boot", "both")
    assert result.returncode == 0, result.stdout + result.stderr
    parts = gpt_partitions(disk)
    assert [p["name"] for p in parts] == ["bios", "esp", "root"]
    assert parts[0]["size"] == 2048  # 1 MiB BIOS boot partition
    mbr = _head(disk, 512)
    assert mbr[510:512] == b"\x55\xaa" and mbr[:440] != bytes(440)  # grub's boot.img in the protective MBR
    with open(disk, "rb") as f:
        f.seek(parts[0]["start"] * 512)
        assert f.read(512) != bytes(512)  # core.img embedded in the BIOS boot partition
    files = esp_files(disk, parts[1])
    # the image's /boot/efi content moved to the ESP, next to the bootloader
    assert {"/EFI/BOOT/BOOTX64.EFI", "/EFI/debian/grub.cfg", "/EFI/debian/blob.bin"} <= set(files)
    with mounted_partition(disk, parts[2], agent_workdir / "syn-both") as root:
        assert list((root / "boot/efi").iterdir()) == []  # left as the (empty) mount point
        assert (root / "boot/grub/i386-pc/core.img").is_file()
        cfg = (root / "boot/grub/grub.cfg").read_text()
        assert f"linux /boot/vmlinuz-{SYNTHETIC_KERNEL} root=UUID=" in cfg
        assert f"initrd /boot/initrd.img-{SYNTHETIC_KERNEL}" in cfg
        tarball = synthetic_image.parent / "synthetic.tar.zst"
        checked, problems = compare_with_tarball(tarball, root, skip=lambda n: n.startswith(
            ("etc/fstab", "etc/hostname", "etc/machine-id", "etc/systemd", "etc/metalstream", "boot/efi/", "boot/grub")))
        assert problems == [] and checked > 20
        # hard link, setuid, xattr and foreign owner survived (compare_with_tarball checks them; spot-check too)
        tool = root / "usr/bin/tool"
        assert os.stat(tool).st_ino == os.stat(root / "usr/bin/tool-hardlink").st_ino
        assert os.stat(tool).st_mode & 0o7777 == 0o4755
        assert os.getxattr(tool, "user.metalstream") == b"xattr-value"
        assert os.stat(root / "home/user/secret").st_uid == 1000


def test_plan_with_part_layout_xfs_and_bios_only(synthetic_image, sparse_disk, agent_workdir, tmp_path):
    storage = {"reqpart": True, "partitions": [
        {"mountpoint": "/boot", "fstype": "ext4", "size_mib": 300},
        {"mountpoint": "swap", "size_mib": 64},
        {"mountpoint": "/", "fstype": "xfs", "size_mib": 1024, "grow": True}]}
    plan = _plan(synthetic_image, tmp_path, boot_mode="bios", storage=storage, hostname="xfs-host",
                 network=[{"device": "eth1", "bootproto": "static", "ip": "192.0.2.10/24", "gateway": "192.0.2.1",
                           "nameservers": ["192.0.2.53"]}])
    disk = sparse_disk(3 * GIB)
    result = run_cli("install", "--plan", str(plan), "--to", str(disk))
    assert result.returncode == 0, result.stdout + result.stderr
    parts = gpt_partitions(disk)
    assert [p["name"] for p in parts] == ["bios", "boot", "swap", "root"]
    with partition_loop(disk, parts[1]) as boot_dev, partition_loop(disk, parts[2]) as swap_dev, \
            partition_loop(disk, parts[3]) as root_dev:
        ids = {"boot": blkid(boot_dev), "swap": blkid(swap_dev), "root": blkid(root_dev)}
    assert (ids["boot"]["TYPE"], ids["swap"]["TYPE"], ids["root"]["TYPE"]) == ("ext4", "swap", "xfs")
    with mounted_partition(disk, parts[3], agent_workdir / "syn-xfs") as root:
        fstab = (root / "etc/fstab").read_text()
        assert f"UUID={ids['root']['UUID']}  /  xfs  defaults  0  0" in fstab
        assert f"UUID={ids['boot']['UUID']}  /boot  ext4" in fstab
        assert f"UUID={ids['swap']['UUID']}  none  swap  sw  0  0" in fstab
        network = (root / "etc/systemd/network/10-metalstream-0.network").read_text()
        assert "Name=eth1" in network and "Address=192.0.2.10/24" in network and "Gateway=192.0.2.1" in network
        assert (root / "etc/resolv.conf").read_text() == "nameserver 192.0.2.53\n"
        # /boot is its own filesystem: the kernel went there, not into the root fs
        assert not (root / f"boot/vmlinuz-{SYNTHETIC_KERNEL}").exists()
    with mounted_partition(disk, parts[1], agent_workdir / "syn-boot") as boot:
        assert (boot / f"vmlinuz-{SYNTHETIC_KERNEL}").is_file()
        cfg = (boot / "grub/grub.cfg").read_text()
        assert f"search --no-floppy --fs-uuid --set=root {ids['boot']['UUID']}" in cfg
        assert f"linux /vmlinuz-{SYNTHETIC_KERNEL} root=UUID={ids['root']['UUID']} ro" in cfg


def test_existing_partitions_are_kept_without_wipe(synthetic_image, sparse_disk):
    disk = sparse_disk(4 * GIB)
    assert run_cli("install", str(synthetic_image), "--to", str(disk), "--boot", "uefi").returncode == 0
    before = hashlib.sha256(_head(disk)).hexdigest()
    result = run_cli("install", str(synthetic_image), "--to", str(disk), "--boot", "uefi", "--size", "8G")
    assert result.returncode == 2
    assert "already holds gpt" in result.stderr and "pass --wipe" in result.stderr
    assert hashlib.sha256(_head(disk)).hexdigest() == before
    assert disk.stat().st_size == 4 * GIB  # not even grown
    again = run_cli("install", str(synthetic_image), "--to", str(disk), "--boot", "uefi", "--wipe")
    assert again.returncode == 0, again.stdout + again.stderr


def test_dry_run_prints_the_plan_and_writes_nothing(synthetic_image, agent_workdir):
    disk = agent_workdir / "never-created.img"
    state = leftover_state()
    result = run_cli("install", str(synthetic_image), "--to", str(disk), "--size", "4G", "--dry-run")
    assert result.returncode == 0, result.stderr
    assert f"disk: {disk} (4294967296 bytes" in result.stdout
    assert "label: gpt" in result.stdout and 'name="bios"' in result.stdout and 'name="root"' in result.stdout
    assert "nothing was written" in result.stdout
    assert not disk.exists()
    assert leftover_state() == state


def test_too_small_disk_is_bad_input_and_leaves_no_file(synthetic_image, agent_workdir):
    disk = agent_workdir / "tiny.img"
    result = run_cli("install", str(synthetic_image), "--to", str(disk), "--size", "1G")
    assert result.returncode == 2
    assert "disk too small" in result.stderr
    assert not disk.exists()


def test_corrupt_image_fails_before_any_bootloader(synthetic_image, sparse_disk, tmp_path):
    disk = sparse_disk(4 * GIB)
    assert run_cli("install", str(synthetic_image), "--to", str(disk), "--boot", "both").returncode == 0
    data = json.loads(synthetic_image.read_text())
    bad = tmp_path / "synthetic.tar.zst"
    blob = bytearray((synthetic_image.parent / data["tarball"]).read_bytes())
    blob[len(blob) // 2] ^= 0x01  # one flipped bit
    bad.write_bytes(bytes(blob))
    plan = _plan(synthetic_image, tmp_path, boot_mode="both", storage={"clearpart": {"mode": "all"}})
    plan_data = json.loads(plan.read_text())
    plan_data["image"]["url"] = str(bad)
    plan.write_text(json.dumps(plan_data))
    result = run_cli("install", "--plan", str(plan), "--to", str(disk))
    assert result.returncode == 1
    assert "[stream] install FAILED" in result.stdout or "[verify] install FAILED" in result.stdout
    assert "[bootloader]" not in result.stdout and "[configure]" not in result.stdout
    parts = gpt_partitions(disk)
    assert _head(disk, 440) == bytes(440)  # no BIOS boot code: the old one was wiped first
    assert "/EFI/BOOT/BOOTX64.EFI" not in esp_files(disk, parts[1])  # and no UEFI bootloader was written


@pytest.fixture
def loop_disk(sparse_disk):
    """A whole-disk loop block device over a sparse 4 GiB file (the block-device code path), always detached."""
    backing = sparse_disk(4 * GIB)
    device = subprocess.run(["losetup", "--find", "--show", str(backing)], capture_output=True, text=True,
                            check=True).stdout.strip()
    try:
        yield device, backing
    finally:
        subprocess.run(["umount", device], capture_output=True)
        subprocess.run(["losetup", "--detach", device], check=False)


def test_install_onto_a_block_device(synthetic_image, loop_disk, agent_workdir):
    device, backing = loop_disk
    result = run_cli("install", str(synthetic_image), "--to", device, "--boot", "both", "--hostname", "blk")
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[disk] target {device} (4.0 GiB)" in result.stdout
    parts = gpt_partitions(backing)
    assert [p["name"] for p in parts] == ["bios", "esp", "root"]
    assert "/EFI/BOOT/BOOTX64.EFI" in esp_files(backing, parts[1])
    with mounted_partition(backing, parts[2], agent_workdir / "syn-blk") as root:
        assert (root / "etc/hostname").read_text() == "blk\n"
    refused = run_cli("install", str(synthetic_image), "--to", device)
    assert refused.returncode == 2 and "already holds gpt, PMBR" in refused.stderr


def test_a_mounted_block_device_is_refused(synthetic_image, loop_disk, agent_workdir):
    device, backing = loop_disk
    subprocess.run(["mkfs.ext4", "-q", device], check=True)
    where = agent_workdir / "busy"
    where.mkdir()
    subprocess.run(["mount", device, str(where)], check=True)
    try:
        result = run_cli("install", str(synthetic_image), "--to", device, "--wipe")
        assert result.returncode == 2
        assert f"{device} is in use ({device})" in result.stderr
    finally:
        subprocess.run(["umount", str(where)], check=True)
    assert blkid(device)["TYPE"] == "ext4"  # untouched


class RecordingReporter:
    """The Reporter protocol, recorded (what the service would receive)."""

    def __init__(self):
        self.events: list[tuple] = []
        self.results: list[dict] = []

    def event(self, phase, message, bytes_done=None, bytes_total=None):
        self.events.append((phase, message, bytes_done, bytes_total))

    def result(self, **kwargs):
        self.results.append(kwargs)


def test_run_install_reports_every_phase_in_order_and_one_result(synthetic_image, sparse_disk):
    from deployer.install import run_install
    from metalstream.contracts.rules import PHASES

    disk = sparse_disk(4 * GIB)
    reporter = RecordingReporter()
    outcome = run_install(local_plan(str(synthetic_image)), str(disk), reporter)
    phases = list(dict.fromkeys(e[0] for e in reporter.events))
    assert phases == list(PHASES)
    stream = [e for e in reporter.events if e[0] == "stream" and e[2] is not None]
    size = json.loads(synthetic_image.read_text())["size"]
    assert stream[-1][2:] == (size, size)
    assert reporter.results == [{"success": True, "phase": "finish", "root_uuid": outcome.root_uuid}]
    assert outcome.stream.sha256 == json.loads(synthetic_image.read_text())["sha256"]


@pytest.mark.parametrize("fault, phase", [("sha256", "stream"), ("size", "disk")])
def test_run_install_failure_result_names_the_phase(synthetic_image, sparse_disk, fault, phase):
    from deployer.install import run_install
    from metalstream.contracts.plan import ImageRef
    from metalstream.errors import MetalstreamError

    plan = local_plan(str(synthetic_image))
    if fault == "sha256":
        plan.image = ImageRef(plan.image.name, plan.image.url, "0" * 64, plan.image.size, plan.image.manifest)
        disk = sparse_disk(4 * GIB)
    else:
        disk = sparse_disk(512 * MIB)  # too small: refused before any write
    reporter = RecordingReporter()
    with pytest.raises(MetalstreamError) as info:
        run_install(plan, str(disk), reporter)
    assert len(reporter.results) == 1
    assert reporter.results[0]["success"] is False and reporter.results[0]["phase"] == phase
    assert reporter.results[0]["error"] == str(info.value)
    if fault == "size":
        assert disk.stat().st_blocks == 0  # nothing written


def test_ctrl_c_during_the_stream_leaves_no_loop_device_or_mount(debian_image, sparse_disk, file_server):
    # The image comes over HTTP and the server stalls a quarter of the way in, so the interrupt always lands
    # while the stream runs (a local file streams in a second or two: the install could finish first).
    tarball = debian_image.parent / json.loads(debian_image.read_text())["tarball"]
    file_server.serve(debian_image.name, debian_image)
    file_server.serve(tarball.name, tarball)
    file_server.state.faults[tarball.name] = [Fault(at=tarball.stat().st_size // 4, kind="stall", stall_seconds=60)]
    disk = sparse_disk(4 * GIB)
    install = subprocess.Popen([*METALSTREAM, "install", f"{file_server.base_url}/{debian_image.name}", "--to",
                                str(disk), "--boot", "uefi"],
                               stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, cwd=REPO,
                               # a test run started in the background inherits SIGINT ignored: undo that
                               preexec_fn=lambda: signal.signal(signal.SIGINT, signal.SIG_DFL))
    try:
        for line in install.stdout:
            if line.startswith("[stream] streaming image:"):
                break
        install.send_signal(signal.SIGINT)
        out, err = install.communicate(timeout=120)
    finally:
        if install.poll() is None:
            install.kill()
            install.wait()
    assert install.returncode == 130, err
    assert "[stream] install FAILED" in out
    assert str(disk) not in subprocess.run(["losetup", "-a"], capture_output=True, text=True).stdout
    assert "metalstream-install-" not in subprocess.run(["findmnt", "-rn"], capture_output=True, text=True).stdout
    assert "/EFI/BOOT/BOOTX64.EFI" not in esp_files(disk, gpt_partitions(disk)[0])
