"""Applying StoragePlans (built by hand in tests/storage_plans.py, not by the planner) with the real tools.

btrfs and the plain parts run on this machine (loop devices over disk image files). md and device-mapper
(RAID, LVM, LUKS) need a kernel that has them, which this machine's may not: those stacks are applied inside
the installer (its kernel, its mdadm/lvm/cryptsetup) booted in qemu, once for all of them, which then also
runs two whole installs of the synthetic image (LUKS on LVM for UEFI, RAID1 on two disks for BIOS and UEFI)
and reads back what they wrote (tests/storage_apply_vm.py; about 6 minutes under TCG on a loaded machine, so
`slow`: `pytest -m slow tests/test_storage_apply.py`).
The configure and boot-argument outputs per stack are checked as text.
"""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from deployer import bootloader
from deployer.configure import fstab_text, write_storage_files
from deployer.partition import plan_layout
from deployer.storage.apply import apply_storage
from deployer.storage.bootargs import storage_kernel_args
from deployer.storage.model import Filesystem, PlannedDisk, StoragePlan
from metalstream.contracts.plan import Kernel
from metalstream.errors import BadInput, OperationFailed
from storage_plans import GIB, PASSPHRASE, btrfs_plan, luks_on_lvm_plan, lvm_plan, raid1_plan

KERNELS = [Kernel(version="6.1.0-57-amd64", kernel="/boot/vmlinuz-6.1.0-57-amd64",
                  initramfs="/boot/initrd.img-6.1.0-57-amd64")]


def _lines(text: str) -> list[str]:
    return [line for line in text.splitlines() if not line.startswith("#")]


# -- configure: fstab, crypttab, mdadm.conf per stack ------------------------------------------------------------

def test_plain_plan_fstab_is_the_layouts_byte_for_byte():
    layout = plan_layout(8 * GIB, "both", memory_bytes=2 * GIB)
    plan = StoragePlan(disks=(PlannedDisk("", "/dev/vda", layout),), filesystems=tuple(
        Filesystem(f"part::{p.number}", p.fstype, p.mountpoint if p.fstype != "swap" else None, p.fs_uuid)
        for p in layout.partitions if p.fstype))
    assert fstab_text(plan) == fstab_text(layout)


def test_lvm_fstab_mounts_every_logical_volume_by_uuid():
    plan = lvm_plan("/dev/vda")
    fs = {f.device: f for f in plan.filesystems}
    assert _lines(fstab_text(plan)) == [
        f"UUID={fs['part:vda:1'].uuid}  /boot/efi  vfat  umask=0077,nofail  0  2",
        f"UUID={fs['part:vda:2'].uuid}  /boot  ext4  defaults,errors=remount-ro  0  2",
        f"UUID={fs['lv:vgsys/root'].uuid}  /  ext4  defaults,errors=remount-ro  0  1",
        f"UUID={fs['lv:vgsys/home'].uuid}  /home  xfs  defaults  0  0",
        f"UUID={fs['lv:vgsys/swap'].uuid}  none  swap  sw  0  0",
        f"UUID={fs['lv:vgsys/data'].uuid}  /data  ext4  defaults,errors=remount-ro  0  2"]


def test_btrfs_fstab_mounts_subvolumes_by_subvol():
    plan = btrfs_plan("/dev/vda")
    volume = plan.btrfs_volumes[0].uuid
    assert _lines(fstab_text(plan))[2:] == [f"UUID={volume}  /  btrfs  subvol=root,defaults  0  0",
                                            f"UUID={volume}  /home  btrfs  subvol=home,compress=zstd  0  0"]


def _target_root(tmp_path: Path, family: str) -> Path:
    root = tmp_path / family
    if family == "debian":
        (root / "etc/mdadm").mkdir(parents=True)
        (root / "etc/debian_version").write_text("12.8\n")
        (root / "etc/mdadm/mdadm.conf").write_text("HOMEHOST <system>\nMAILADDR root\nARRAY /dev/md0 UUID=old\n")
        (root / "usr/share/initramfs-tools").mkdir(parents=True)
    else:
        (root / "etc").mkdir(parents=True)
        (root / "usr/lib/dracut").mkdir(parents=True)
    return root


@pytest.mark.parametrize("family,path", [("debian", "etc/mdadm/mdadm.conf"), ("rpm", "etc/mdadm.conf")])
def test_mdadm_conf_lists_the_arrays_by_uuid_and_name(tmp_path, family, path):
    plan = raid1_plan("/dev/vda", "/dev/vdb")
    root = _target_root(tmp_path, family)
    assert write_storage_files(root, plan) == {"mdadm_conf": "/" + path}
    text = (root / path).read_text()
    arrays = [f"ARRAY /dev/md/{a.name} metadata={a.metadata} UUID={a.uuid} name=any:{a.name}" for a in plan.arrays]
    kept = ["HOMEHOST <system>", "MAILADDR root", ""] if family == "debian" else \
        ["# mdadm.conf: arrays written by metalstream at deploy time", ""]
    assert text.splitlines() == kept + arrays
    assert not (root / "etc/crypttab").exists()


def test_crypttab_names_the_luks_uuid_and_asks_at_boot(tmp_path):
    plan = luks_on_lvm_plan("/dev/vdb")
    root = _target_root(tmp_path, "debian")
    assert write_storage_files(root, plan) == {"crypttab": 1}
    crypt = plan.crypts[0]
    assert _lines((root / "etc/crypttab").read_text()) == [f"luks-{crypt.uuid} UUID={crypt.uuid} none luks,discard"]
    assert (root / "etc/crypttab").stat().st_mode & 0o777 == 0o600
    assert PASSPHRASE not in (root / "etc/crypttab").read_text()


# -- boot: kernel arguments for the generic initramfs, grub modules ---------------------------------------------

def test_kernel_args_per_stack_and_initramfs():
    luks = luks_on_lvm_plan("/dev/vdb")
    crypt = luks.crypts[0]
    assert storage_kernel_args(luks, "initramfs-tools") == [
        f"cryptopts=target={crypt.name},source=UUID={crypt.uuid},luks,discard"]
    assert storage_kernel_args(luks, "dracut") == ["rd.lvm.lv=vgcrypt/root", "rd.lvm.lv=vgcrypt/swap",
                                                   f"rd.luks.uuid=luks-{crypt.uuid}"]
    raid = raid1_plan("/dev/vda", "/dev/vdb")
    assert storage_kernel_args(raid, "initramfs-tools") == []  # udev and local-block/mdadm assemble every array
    assert storage_kernel_args(raid, "dracut") == [f"rd.md.uuid={raid.device('md:root').uuid}"]
    assert storage_kernel_args(lvm_plan("/dev/vda"), "initramfs-tools") == []  # udev activates complete VGs
    assert storage_kernel_args(btrfs_plan("/dev/vda"), "dracut") == ["rootflags=subvol=root"]


def test_grub_cfg_loads_the_modules_that_reach_boot():
    raid = raid1_plan("/dev/vda", "/dev/vdb")
    text = bootloader.grub_cfg(raid, KERNELS, title="t", kernel_args="")
    boot = raid.device("md:boot")
    assert "insmod part_gpt\ninsmod mdraid1x\ninsmod ext2\n" in text
    assert f"search --no-floppy --fs-uuid --set=root {raid.boot.uuid}" in text and boot.ref == raid.boot.device
    assert f"linux /vmlinuz-6.1.0-57-amd64 root=UUID={raid.root.uuid} ro" in text
    assert bootloader.with_boot_modules(bootloader.BIOS_MODULES, raid)[-1] == "mdraid1x"


def test_grub_cfg_on_a_btrfs_root_subvolume_reads_boot_inside_it():
    plan = btrfs_plan("/dev/vda")
    plan = StoragePlan(plan.disks, plan.devices, tuple(f for f in plan.filesystems if f.mountpoint != "/boot"))
    text = bootloader.grub_cfg(plan, KERNELS, title="t", kernel_args=" ".join(storage_kernel_args(plan, None)))
    assert "insmod btrfs" in text
    assert f"linux /root/boot/vmlinuz-6.1.0-57-amd64 root=UUID={plan.root.uuid} ro rootflags=subvol=root" in text
    assert "configfile ($root)/root/boot/grub/grub.cfg" in bootloader.early_cfg(plan)
    assert "btrfs" in bootloader.with_boot_modules(bootloader.EFI_MODULES, plan)


def test_boot_on_lvm_loads_lvm_and_boot_inside_luks_is_refused():
    plan = lvm_plan("/dev/vda")
    plan = StoragePlan(plan.disks, plan.devices, tuple(f for f in plan.filesystems if f.mountpoint != "/boot"))
    assert "insmod lvm\ninsmod ext2" in bootloader.grub_cfg(plan, KERNELS, title="t", kernel_args="")
    luks = luks_on_lvm_plan("/dev/vdb")
    luks = StoragePlan(luks.disks, luks.devices, tuple(f for f in luks.filesystems if f.mountpoint != "/boot"))
    with pytest.raises(OperationFailed, match="passphrase"):
        bootloader.grub_cfg(luks, KERNELS, title="t", kernel_args="")


# -- apply on this machine: btrfs on an image file, refusals --------------------------------------------------

def _run(*argv) -> str:
    return subprocess.run(argv, capture_output=True, text=True).stdout


@pytest.mark.root
def test_btrfs_two_subvolumes_applied_and_released(tmp_path):
    from conftest import require_root, require_tools

    require_root()
    require_tools("mkfs.btrfs", "btrfs", "losetup", "sfdisk", "mkfs.vfat")
    image = tmp_path / "disk.img"
    plan = btrfs_plan(str(image))
    volume = plan.btrfs_volumes[0]
    with apply_storage(plan, None, tmp_path / "work") as applied:
        root = applied.root
        assert applied.path(volume.ref) == applied.path("part:vda:3")
        subvolumes = _run("btrfs", "subvolume", "list", str(root))
        assert [line.split()[-1] for line in subvolumes.splitlines()] == ["root", "home"]
        mounts = _run("findmnt", "-R", "-n", "-o", "TARGET,FSTYPE,OPTIONS", str(root))
        assert "subvol=/root" in mounts.splitlines()[0]
        assert f"{root}/boot " in mounts and "subvol=/home" in mounts
        assert _run("blkid", "-o", "value", "-s", "UUID", applied.path("part:vda:3")).strip() == volume.uuid
        loops = [d for d in applied.devices.values() if d.startswith("/dev/loop")]
        (root / "home/kept").write_text("x")
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    attached = _run("losetup", "-a")
    assert str(image) not in attached and not [loop for loop in loops if f"{loop}:" in attached]


@pytest.mark.root
def test_an_error_inside_releases_everything(tmp_path):
    from conftest import require_root

    require_root()
    image = tmp_path / "disk.img"
    with pytest.raises(RuntimeError, match="stream failed"):
        with apply_storage(btrfs_plan(str(image)), None, tmp_path / "work"):
            raise RuntimeError("stream failed")
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    assert str(image) not in _run("losetup", "-a")


@pytest.mark.root
def test_refusals_come_before_the_first_write(tmp_path):
    from conftest import require_root

    require_root()
    image = tmp_path / "disk.img"
    with pytest.raises(BadInput, match="no passphrase"):
        with apply_storage(luks_on_lvm_plan(str(image)), None, tmp_path / "work"):
            pass
    assert not image.exists()
    image.write_bytes(bytes(1 << 20))
    loop = subprocess.run(["losetup", "--find", "--show", str(image)], capture_output=True, text=True,
                          check=True).stdout.strip()
    try:
        with pytest.raises(BadInput, match="in use"):
            with apply_storage(btrfs_plan(str(image)), None, tmp_path / "work"):
                pass
        assert image.read_bytes() == bytes(1 << 20)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)


# -- apply in the installer VM: LVM, RAID1, LUKS on LVM ------------------------------------------------------

@pytest.fixture(scope="module")
def vm_results(installer_build, synthetic_image, tmp_path_factory) -> dict[str, dict]:
    from storage_apply_vm import run_checks

    manifest, out, _ = installer_build
    results = run_checks(out / manifest["kernel"]["file"], out / manifest["initramfs"]["file"],
                         tmp_path_factory.mktemp("apply-vm"), synthetic_image)
    return {r["name"]: r for r in results}


def _applied(vm_results, name: str) -> dict:
    result = vm_results[name]
    assert result["ok"], result.get("error")
    return result


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.root
def test_vm_lvm_volume_group_with_root_home_swap_and_a_thin_volume(vm_results):
    result = _applied(vm_results, "lvm")
    lvs = {line.split()[0]: line.split()[1:] for line in
           result["while"]["lvs --noheadings -o lv_name,vg_name,lv_size,segtype --units m vgsys"].splitlines()}
    assert {name: (vg, segtype) for name, (vg, _, segtype) in lvs.items()} == {
        "root": ("vgsys", "linear"), "home": ("vgsys", "linear"), "swap": ("vgsys", "linear"),
        "pool": ("vgsys", "thin-pool"), "data": ("vgsys", "thin")}
    findmnt = result["while"]["findmnt -R -n -o TARGET,SOURCE,FSTYPE {root}"]
    mounts = [line.split()[-2:] for line in findmnt.splitlines()]
    assert mounts == [["/dev/mapper/vgsys-root", "ext4"], ["/dev/vda2", "ext4"], ["/dev/mapper/vgsys-data", "ext4"],
                      ["/dev/mapper/vgsys-home", "xfs"]]
    assert "TYPE=swap" in result["while"]["blkid -o export /dev/mapper/vgsys-swap"]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.root
def test_vm_raid1_over_two_image_files(vm_results):
    result = _applied(vm_results, "raid1")
    mdstat = result["while"]["cat /proc/mdstat"]
    assert mdstat.count("active raid1") == 3
    scan = result["while"]["mdadm --detail --scan"]
    assert "name=any:root" in scan and "name=any:boot" in scan and "metadata=1.0 name=any:esp" in scan
    mounts = result["while"]["findmnt -R -n -o TARGET,SOURCE,FSTYPE {root}"].splitlines()
    assert mounts[0].split()[1:] == [result["while"]["realpath /dev/md/root"].strip(), "ext4"]
    assert "Raid Devices : 2" in result["while"]["mdadm --detail /dev/md/root"]


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.root
def test_vm_luks_root_on_lvm_with_the_planned_uuid(vm_results):
    result = _applied(vm_results, "luks")
    dump = result["while"]["cryptsetup luksDump /dev/vdb3"]
    crypt_uuid = next(d for d in result["devices"] if d.startswith("luks:")).removeprefix("luks:luks-")
    assert f"UUID:          \t{crypt_uuid}\n" in dump and "Version:       \t2\n" in dump
    assert "root vgcrypt" in " ".join(result["while"]["lvs --noheadings -o lv_name,vg_name vgcrypt"].split())
    assert "/dev/mapper/vgcrypt-root ext4" in result["while"]["findmnt -R -n -o TARGET,SOURCE,FSTYPE {root}"]
    logs = vm_results["logs"]
    assert logs["lines"] > 0 and not logs["passphrase_logged"]
    assert any("luksFormat" in line and "--key-file=-" in line for line in logs["argv"])


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.root
def test_vm_install_luks_on_lvm_uefi_tells_the_initramfs_to_unlock_root(vm_results):
    result = _applied(vm_results, "install-luks-lvm-uefi")
    assert result["bootloaders"] == ["grub-mkimage x86_64-efi"] and result["configured"]["crypttab"] == "1"
    written = result["written"]
    crypttab = next(v for k, v in written.items() if k.endswith(":etc/crypttab"))
    name, source, key, options = _lines(crypttab)[0].split()
    assert (source, key, options) == (f"UUID={name.removeprefix('luks-')}", "none", "luks,discard")
    grub = next(v for k, v in written.items() if k.endswith(":grub/grub.cfg"))
    assert f"root=UUID={result['root_uuid']} ro cryptopts=target={name},{source.replace('UUID=', 'source=UUID=')}," \
           "luks,discard" in grub
    fstab = next(v for k, v in written.items() if k.startswith("/dev/mapper/vgsys-root:etc/fstab"))
    assert f"UUID={result['root_uuid']}  /  ext4" in fstab and "  none  swap  sw  0  0" in fstab
    assert PASSPHRASE not in json.dumps(result)


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.root
def test_vm_install_raid1_puts_grub_on_both_disks_and_the_esp_on_md(vm_results):
    result = _applied(vm_results, "install-raid1-both")
    assert result["bootloaders"] == ["grub-bios-setup i386-pc on /dev/vda", "grub-bios-setup i386-pc on /dev/vdb",
                                     "grub-mkimage x86_64-efi"]
    written = result["written"]
    assert written["assemble"].count("has been started with 2 drives") == 3
    grub = next(v for k, v in written.items() if k.endswith(":grub/grub.cfg"))
    assert "insmod part_gpt\ninsmod mdraid1x\ninsmod ext2\n" in grub
    conf = next(v for k, v in written.items() if k.endswith(":etc/mdadm.conf"))
    assert [line.split()[1] for line in _lines(conf) if line] == ["/dev/md/esp", "/dev/md/boot", "/dev/md/root"]
    assert "ARRAY /dev/md/esp metadata=1.0 UUID=" in conf


@pytest.mark.slow
@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.parametrize("name", ["lvm", "raid1", "luks", "install-luks-lvm-uefi", "install-raid1-both"])
def test_vm_teardown_leaves_no_array_mapping_loop_or_mount(vm_results, name):
    after = vm_results[name]["after"]
    assert not [line for line in after["mdstat"].splitlines() if line.startswith("md")], after["mdstat"]
    assert after["dm"].strip() == "No devices found", after["dm"]
    assert after["loops"].strip() == "", after["loops"]
    assert after["mounts"].strip() == "", after["mounts"]


# -- the whole install (deployer.install) onto two disk image files: btrfs subvolumes and a second disk -----------

@pytest.mark.root
def test_install_btrfs_subvolumes_and_a_second_disk(synthetic_image, sparse_disk, tmp_path):
    import dataclasses

    from conftest import require_root, require_tools
    from deployer.install import run_install
    from deployer.plan import local_plan
    from metalstream.contracts.deployspec import BtrfsSpec, ClearPart, DeploySpec, PartSpec

    require_root()
    require_tools("mkfs.btrfs", "grub-mkimage", "mcopy")
    spec = DeploySpec(zerombr=True, clearpart=ClearPart("all"), reqpart=True, reqpart_add_boot=True, partitions=[
        PartSpec("btrfs.01", size_mib=1500, grow=True, ondisk="vda"),
        PartSpec("/srv", fstype="ext4", size_mib=300, grow=True, ondisk="vdb")], btrfs=[
        BtrfsSpec("none", members=["btrfs.01"], data_level="single", label="system"),
        BtrfsSpec("/", subvol=True, name="root", volume="system"),
        BtrfsSpec("/home", subvol=True, name="home", volume="system")])
    plan = dataclasses.replace(local_plan(str(synthetic_image), boot_mode="uefi"), storage=spec)
    disks = {"vda": str(sparse_disk(4 * GIB, "vda.img")), "vdb": str(sparse_disk(1 * GIB, "vdb.img"))}
    events = []

    class Reporter:
        def event(self, phase, message, done=None, total=None):
            events.append((phase, message))

        def result(self, **kwargs):
            events.append(("result", kwargs))

    result = run_install(plan, disks, Reporter())
    assert result.stacked and [t.path for t in result.targets] == list(disks.values())
    volume = result.storage.btrfs_volumes[0]
    srv = next(f for f in result.storage.filesystems if f.mountpoint == "/srv")
    assert events[-1] == ("result", {"success": True, "phase": "finish", "root_uuid": volume.uuid})
    vda = result.storage.disk("vda")
    boot = next(p for p in vda.layout.partitions if p.mountpoint == "/boot")
    grub = _read_partition(disks["vda"], vda.layout, boot, tmp_path / "boot", ["grub/grub.cfg"])["grub/grub.cfg"]
    assert f"root=UUID={volume.uuid} ro rootflags=subvol=root" in grub
    found = _read_partition(disks["vda"], vda.layout, vda.layout.partitions[-1], tmp_path / "top",
                            ["root/etc/fstab"], ["btrfs", "subvolume", "list"])
    assert [line.split()[-1] for line in found["btrfs"].splitlines()] == ["root", "home"]
    fstab = found["root/etc/fstab"]
    assert f"UUID={volume.uuid}  /  btrfs  subvol=root,defaults  0  0" in fstab
    assert f"UUID={volume.uuid}  /home  btrfs  subvol=home,defaults  0  0" in fstab
    assert f"UUID={srv.uuid}  /srv  ext4  defaults,errors=remount-ro  0  2" in fstab
    assert str(tmp_path) not in Path("/proc/mounts").read_text()
    assert not [d for d in disks.values() if d in _run("losetup", "-a")]


def _read_partition(image: str, layout, part, mountpoint: Path, files: list[str], command: list[str] = ()) -> dict:
    """Mount a partition of a disk image file read-only and read `files` (and run `command` on it)."""
    loop = subprocess.run(["losetup", "--find", "--show", "--read-only", "--offset", str(layout.offset(part)),
                           "--sizelimit", str(layout.length(part)), image],
                          capture_output=True, text=True, check=True).stdout.strip()
    mountpoint.mkdir()
    try:
        subprocess.run(["mount", "-o", "ro", loop, mountpoint], check=True)
        try:
            found = {name: (mountpoint / name).read_text() for name in files}
            if command:
                found[command[0]] = _run(*command, str(mountpoint))
            return found
        finally:
            subprocess.run(["umount", mountpoint], check=True)
    finally:
        subprocess.run(["losetup", "--detach", loop], check=True)


def test_install_cli_takes_several_named_disks():
    from deployer.install_cli import _targets

    assert _targets(("disk.img",)) == "disk.img"
    assert _targets(("vda=/tmp/a.img", "vdb=/tmp/b=c.img")) == {"vda": "/tmp/a.img", "vdb": "/tmp/b=c.img"}
    with pytest.raises(BadInput, match="NAME=PATH"):
        _targets(("/tmp/a.img", "/tmp/b.img"))
    with pytest.raises(BadInput, match="twice"):
        _targets(("vda=/tmp/a.img", "vda=/tmp/b.img"))


@pytest.mark.root
def test_dry_run_prints_the_whole_stack_and_writes_nothing(synthetic_image, sparse_disk):
    import dataclasses
    import io

    from deployer.install import run_install
    from deployer.install_cli import _print_dry_run
    from deployer.plan import local_plan
    from metalstream.contracts.deployspec import DeploySpec, LogVolSpec, PartSpec, VolGroupSpec

    spec = DeploySpec(reqpart=True, reqpart_add_boot=True, partitions=[PartSpec("pv.01", size_mib=2000, grow=True)],
                      volgroups=[VolGroupSpec("vgsys", ["pv.01"])],
                      logvols=[LogVolSpec("/", "root", "vgsys", size_mib=1500, grow=True)])
    plan = dataclasses.replace(local_plan(str(synthetic_image), boot_mode="bios"), storage=spec)
    disk = sparse_disk(4 * GIB, "vda.img")

    class Quiet:
        def event(self, *args):
            pass

        def result(self, **kwargs):
            pass

    result = run_install(plan, {"vda": str(disk)}, Quiet(), dry_run=True)
    out = io.StringIO()
    _print_dry_run(result, out)
    text = out.getvalue()
    assert text.startswith("storage plan:\nvda: ") and "vgsys" in text and "root" in text
    assert "partition plan of vda" in text and text.endswith("dry run: nothing was written\n")
    assert disk.stat().st_blocks == 0
