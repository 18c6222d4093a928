"""Storage stacks end to end (issue 13): each layout is a deploy-time kickstart sent with a deployment; the real
service PXE-boots a qemu VM (TCG) into the installer, whose agent builds the stack on the VM's disks, installs,
reboots, and the service's SSH check makes the deployment `active`; the test then checks over SSH that the running
system sits on the stack the kickstart asked for. (The agent builds RAID, LVM and LUKS in the installer VM: this
host's kernel may have no device-mapper or md driver.)

The image is kickstarts/debian-storage.ks (debian-minimal plus mdadm, lvm2, cryptsetup, btrfs-progs), built
once per session. The %pre-written btrfs layout on two disks, the RAID boots (whole and with each disk removed)
and the LUKS boot are `slow`:
    .venv/bin/python -m pytest -m slow tests/test_e2e_storage.py -s
"""
from __future__ import annotations

import re

import pytest

from fixtures_e2e import DEPLOY_TIMEOUT, lab_vm_spec, ssh_run

pytestmark = [pytest.mark.e2e, pytest.mark.root]

LOGIN = r"login: *$"
BOOT_TIMEOUT = 600

LVM_AUTOPART = """zerombr
clearpart --all --initlabel
autopart --type=lvm
bootloader --timeout=1
"""
RAID1 = """zerombr
clearpart --all --initlabel
part raid.e1 --size=600 --ondisk=vda
part raid.e2 --size=600 --ondisk=vdb
part raid.b1 --size=1024 --ondisk=vda
part raid.b2 --size=1024 --ondisk=vdb
part raid.r1 --size=3000 --grow --ondisk=vda
part raid.r2 --size=3000 --grow --ondisk=vdb
raid /boot/efi --level=1 --device=esp --fstype=efi raid.e1 raid.e2
raid /boot --level=1 --device=boot --fstype=ext4 raid.b1 raid.b2
raid / --level=1 --device=root --fstype=ext4 raid.r1 raid.r2
bootloader --timeout=1
"""
BTRFS_TWO_DISKS = """zerombr
clearpart --all --initlabel --drives=vda,vdb
reqpart --add-boot
part btrfs.01 --size=3000 --grow --ondisk=vda
btrfs none --label=system --data=single btrfs.01
btrfs / --subvol --name=root system
btrfs /home --subvol --name=home system
part /srv --fstype=ext4 --size=500 --grow --ondisk=vdb
bootloader --timeout=1
"""
PRE_BTRFS_TWO_DISKS = """zerombr
clearpart --all --initlabel --drives=vda,vdb
reqpart --add-boot
bootloader --timeout=1
%pre --erroronfail
set -- $(ls /sys/block | grep '^vd' | sort)
[ $# -ge 2 ] || { echo "two disks wanted, found: $*" >&2; exit 1; }
cat > /tmp/storage-include <<LAYOUT
part btrfs.01 --size=3000 --grow --ondisk=$1
btrfs none --label=system --data=single btrfs.01
btrfs / --subvol --name=root system
btrfs /home --subvol --name=home system
part /srv --fstype=ext4 --size=500 --grow --ondisk=$2
LAYOUT
%end
%include /tmp/storage-include
"""
LUKS_ON_LVM = """zerombr
clearpart --all --initlabel
reqpart --add-boot
part pv.01 --size=3000 --grow --encrypted --luks-version=luks2
volgroup vgsys pv.01
logvol / --vgname=vgsys --name=root --fstype=ext4 --size=3000 --grow
logvol swap --vgname=vgsys --name=swap --size=256
bootloader --timeout=1
"""
PASSPHRASE = "correct horse battery staple 13"


@pytest.fixture(scope="module")
def storage_lab(e2e_lab, debian_storage_image):
    """The session's e2e service with the storage image registered too."""
    from pxe import imagestore

    image = imagestore.register(e2e_lab.engine, e2e_lab.image_dir, debian_storage_image)
    return e2e_lab, image["name"]


def _deploy(storage_lab, name: str, firmware: str, kickstart: str, *, disks: int = 1, passphrase: str | None = None,
            hints: dict | None = None, expect: str = "active", boot_mode: str | None = None):
    """Deploy the storage image with `kickstart` onto a fresh VM with `disks` disks; returns (vm, spec, final) with the
    VM still running (the caller stops it)."""
    from lab.vm import LabVm, create_disk

    lab, image = storage_lab
    spec = lab_vm_spec(lab, name, firmware)
    spec.serial_input = passphrase is not None
    body = {"mac": spec.mac, "image": image, "hostname": spec.name,
            "boot_mode": boot_mode or firmware,
            "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"127.0.0.1:{spec.ssh_port}",
            "kickstart": kickstart}
    if passphrase is not None:
        body["encryption_passphrase"] = passphrase
    if hints:
        body["disks"] = hints
    dep = lab.api.post("/api/v1/deployments", body)
    create_disk(spec)
    spec.extra_disks = [spec.dir / f"disk{k}.img" for k in range(1, disks)]
    for extra in spec.extra_disks:
        with open(extra, "wb") as f:
            f.truncate(spec.disk_size_gib << 30)
    vm = LabVm(spec).start()
    try:
        if passphrase is not None:
            typed = _type_passphrase_when_asked(vm, passphrase)
        final = _wait(lab, dep["id"], vm)
        assert final["state"] == expect, (f"deployment ended {final['state']}: {final.get('error')} "
                                          f"{final.get('check_message')}\nserial log: {spec.serial_log}")
        if passphrase is not None:
            assert not typed.is_alive(), "the installed system never asked for the passphrase"
    except BaseException:
        vm.stop()
        raise
    return vm, spec, final


def _type_passphrase_when_asked(vm, passphrase: str):
    """The installed system's initramfs asks on the console; a thread waits for the prompt and types the answer."""
    import threading

    def answer():
        vm.wait_for_serial(r"Please unlock disk", timeout=DEPLOY_TIMEOUT)
        vm.type_serial(passphrase + "\n")

    thread = threading.Thread(target=answer, daemon=True)
    thread.start()
    return thread


def _wait(lab, dep_id: str, vm) -> dict:
    from lab.demo import PhaseClock, watch_deployment

    clock = PhaseClock()
    clock.mark("vm_power_on")
    return watch_deployment(lab.api, dep_id, clock, vm, timeout=DEPLOY_TIMEOUT, echo=print)


def test_autopart_lvm_boots_on_its_volume_group(storage_lab):
    """Acceptance 1: `autopart --type=lvm` → /boot + a volume group with root, home and swap."""
    lab, _ = storage_lab
    vm, spec, _ = _deploy(storage_lab, "st-lvm", "uefi", LVM_AUTOPART)
    with vm:
        lvs = ssh_run(lab, spec.ssh_port, "lvs --noheadings -o vg_name,lv_name --separator=/").split()
        root = ssh_run(lab, spec.ssh_port, "findmnt -no SOURCE /").strip()
        swap = ssh_run(lab, spec.ssh_port, "swapon --noheadings --show=NAME").strip()
        boot = ssh_run(lab, spec.ssh_port, "findmnt -no FSTYPE /boot").strip()
    assert sorted(lvs) == ["system/home", "system/root", "system/swap"], lvs
    assert root == "/dev/mapper/system-root", root
    assert swap and boot == "ext4", (swap, boot)


@pytest.mark.slow
def test_pre_writes_a_btrfs_layout_over_two_disks(storage_lab):
    """Acceptance 3, 5 and 6: a %pre finds the two disks and writes the layout the kickstart %includes — btrfs root
    and home subvolumes on vda, /srv on vdb, which the plan's serial hint must match."""
    lab, _ = storage_lab
    vm, spec, final = _deploy(storage_lab, "st-btrfs", "uefi", PRE_BTRFS_TWO_DISKS, disks=2,
                              hints={"vdb": {"serial": "ms-st-btrfs-d1"}})
    with vm:
        mounts = ssh_run(lab, spec.ssh_port, "for m in / /home /srv; do findmnt -rno TARGET,FSTYPE,OPTIONS -M $m; done")
        subvols = ssh_run(lab, spec.ssh_port, "btrfs subvolume list /")
        srv_disk = ssh_run(lab, spec.ssh_port, "lsblk -no PKNAME $(findmnt -no SOURCE /srv)").strip()
        srv_serial = ssh_run(lab, spec.ssh_port, f"cat /sys/block/{srv_disk}/serial").strip()
    rows = {line.split()[0]: line.split()[1:] for line in mounts.splitlines()}
    assert rows["/"][0] == "btrfs" and "subvol=/root" in rows["/"][1], mounts
    assert rows["/home"][0] == "btrfs" and "subvol=/home" in rows["/home"][1], mounts
    assert rows["/srv"][0] == "ext4" and srv_serial == "ms-st-btrfs-d1", (mounts, srv_disk, srv_serial)
    assert re.search(r"path root$", subvols, re.M) and re.search(r"path home$", subvols, re.M), subvols
    assert any("storage from %include /tmp/storage-include" in (e["message"] or "") for e in final["events"]), \
        [e["message"] for e in final["events"]]


def test_a_wrong_disk_hint_fails_before_the_first_write(storage_lab):
    """Acceptance 5: a hint that matches no disk fails the deployment before anything is written to either disk."""
    import hashlib

    vm, spec, final = _deploy(storage_lab, "st-wrong", "uefi", BTRFS_TWO_DISKS, disks=2,
                              hints={"vdb": {"serial": "NO-SUCH-SERIAL"}}, expect="failed")
    vm.stop()
    assert "NO-SUCH-SERIAL" in final["error"] and "vdb" in final["error"], final["error"]
    empty = hashlib.sha256(b"\0" * (1 << 20)).hexdigest()
    for disk in (spec.disk, *spec.extra_disks):
        with open(disk, "rb") as f:
            assert hashlib.sha256(f.read(1 << 20)).hexdigest() == empty, f"{disk} was written"
        assert disk.stat().st_blocks == 0, f"{disk} has data"  # sparse and never written


@pytest.mark.slow
@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_raid1_boots_with_either_disk_removed(storage_lab, firmware):
    """Acceptance 2: RAID1 for the ESP (metadata 1.0), /boot and / across two disks; the system runs on the arrays,
    then boots with each disk removed in turn."""
    import shutil

    from lab.vm import LabVm

    lab, _ = storage_lab
    vm, spec, _ = _deploy(storage_lab, f"st-raid-{firmware}", firmware, RAID1, disks=2, boot_mode="both")
    with vm:
        mdstat = ssh_run(lab, spec.ssh_port, "cat /proc/mdstat")
    arrays = re.findall(r"^md\S+ : active (?:\(auto-read-only\) )?raid1 ", mdstat, re.M)
    assert len(arrays) == 3 and mdstat.count("[UU]") == 3, mdstat  # ("Personalities : [raid1]" heads the file)
    for missing, kept in (("vda", spec.extra_disks[0]), ("vdb", spec.disk)):
        degraded = lab_vm_spec(lab, f"st-raid-{firmware[0]}-no-{missing}", firmware)
        degraded.boot_first = "disk"
        degraded.dir.mkdir(parents=True, exist_ok=True)
        degraded.disk.unlink(missing_ok=True)
        degraded.disk.symlink_to(kept)  # the VM's only disk is the member that is left
        if firmware == "uefi":
            shutil.copyfile(spec.vars_file, degraded.vars_file)
        with LabVm(degraded) as boot:
            boot.wait_for_serial(LOGIN, timeout=BOOT_TIMEOUT * 2)  # the initramfs waits for the missing member


@pytest.mark.slow
def test_luks_root_on_lvm_asks_for_the_passphrase(storage_lab):
    """Acceptance 4: an encrypted PV holds the root LV; the boot waits for the passphrase, which the test types on
    the serial console; the passphrase is nowhere in the service's answers, events, logs or database."""
    lab, _ = storage_lab
    vm, spec, final = _deploy(storage_lab, "st-luks", "uefi", LUKS_ON_LVM, passphrase=PASSPHRASE)
    with vm:
        stack = ssh_run(lab, spec.ssh_port, "lsblk -no TYPE -s $(findmnt -no SOURCE /)").split()
        found = ssh_run(lab, spec.ssh_port, f"grep -rlF '{PASSPHRASE}' /etc /boot /var/log 2>/dev/null || true").strip()
    assert {"lvm", "crypt", "part"} <= set(stack), stack  # / is an LV on an opened LUKS partition
    assert found == "", found
    assert PASSPHRASE not in str(final) and PASSPHRASE not in str(lab.api.get(f"/api/v1/deployments/{final['id']}"))
    for log in lab.service.data_dir.rglob("*.log"):
        assert PASSPHRASE not in log.read_text(errors="replace"), log
    for stored in lab.service.data_dir.rglob("*"):  # the database, logs, audit: everything but the images
        if stored.is_file() and stored.stat().st_size < (64 << 20):
            assert PASSPHRASE.encode() not in stored.read_bytes(), stored
