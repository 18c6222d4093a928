"""End to end, enlistment (issue 14, acceptance 2): an unregistered UEFI VM powered on while the service runs with
`--discovery` network-boots the real installer in inspection mode, its agent reports the hardware and powers the VM
off (qemu exits by itself), and the VM appears as a `new` machine whose facts match its qemu definition: both disks'
sizes, serials and the SCSI disk's WWN, the MAC, the memory, the CPU count and the firmware mode.

Alone: .venv/bin/python -m pytest tests/test_e2e_enlist.py -s
"""
from __future__ import annotations

import time

import pytest

pytestmark = [pytest.mark.e2e, pytest.mark.root]

ENLIST_TIMEOUT = 10 * 60  # power-on to power-off under TCG on a loaded host (about 1-2 minutes alone)
MEMORY_MIB, CPUS = 1536, 2
DISK_A_GIB, DISK_B_GIB = 4, 3
DISK_B_SERIAL, DISK_B_WWN = "ENLIST-B-0001", "0x5000c50015ea71ac"


@pytest.fixture
def discovery_lab(tmp_path, installer_build):
    """The real service with --discovery serving the session's installer (no image, no deployment)."""
    from conftest import require_root, require_tools
    from lab.service_proc import ServiceProcess
    from lab.vm import OVMF_CODE
    from pxe.cli import _engine

    require_root()
    require_tools("qemu-system-x86_64")
    if not OVMF_CODE.exists():
        pytest.fail(f"{OVMF_CODE} is missing: run `bash .ci/setup`, which installs ovmf")
    _, installer_out, _ = installer_build
    data_dir = tmp_path / "data"
    _, engine = _engine(data_dir, None, create=True)
    with ServiceProcess(data_dir, installer=installer_out / "installer.json", options=["--discovery"]) as service:
        yield service, engine, tmp_path / "lab"
    engine.dispose()


def _wait_for_exit(vm, timeout: float) -> int:
    deadline = time.monotonic() + timeout
    while vm.process.poll() is None:
        if time.monotonic() > deadline:
            tail = vm.serial_text()[-3000:]
            pytest.fail(f"the VM did not power itself off within {timeout:.0f} s; console tail:\n{tail}")
        time.sleep(2)
    return vm.process.returncode


def test_an_unregistered_vm_enlists_itself_with_its_facts_and_powers_off(discovery_lab):
    from lab.vm import LabVm, VmSpec, create_disk
    from pxe import machines

    service, engine, lab_dir = discovery_lab
    spec = VmSpec("enlist", firmware="uefi", memory_mib=MEMORY_MIB, cpus=CPUS, disk_size_gib=DISK_A_GIB,
                  lab_dir=lab_dir, boot_url=f"{service.guest_url}/boot.ipxe")
    create_disk(spec)
    disk_b = spec.dir / "disk-b.img"
    with open(disk_b, "wb") as handle:
        handle.truncate(DISK_B_GIB << 30)
    spec.extra_args = [
        "-device", "virtio-scsi-pci,id=scsi0",
        "-drive", f"file={disk_b},format=raw,if=none,id=disk1,cache=unsafe",
        "-device", f"scsi-hd,drive=disk1,bus=scsi0.0,serial={DISK_B_SERIAL},wwn={DISK_B_WWN}",
    ]
    assert machines.find_by_mac(engine, spec.mac) is None
    started = time.monotonic()
    try:
        with LabVm(spec) as vm:
            status = _wait_for_exit(vm, ENLIST_TIMEOUT)
            console = vm.serial_text()
    finally:
        spec.disk.unlink(missing_ok=True)
        disk_b.unlink(missing_ok=True)
    print(f"power-on → powered off: {time.monotonic() - started:.0f} s")
    assert status == 0, f"qemu exited {status}; serial log {spec.serial_log}"
    assert "metalstream-agent: facts reported" in console, console[-3000:]

    machine = machines.find_by_mac(engine, spec.mac)
    assert machine is not None, f"no machine for {spec.mac}; console tail:\n{console[-3000:]}"
    assert machine["state"] == "new" and machine["name"] == "new-" + spec.mac.replace(":", "")
    facts = machine["facts"]
    print(facts)
    assert facts["firmware"] == "uefi"
    assert facts["memory_mib"] == MEMORY_MIB
    assert facts["cpus"]["count"] == CPUS
    assert facts["dmi"]["vendor"] == "QEMU"
    disks = {disk["serial"]: disk for disk in facts["disks"]}
    assert sorted(disks) == sorted([f"ms-{spec.name}", DISK_B_SERIAL]), facts["disks"]
    assert disks[f"ms-{spec.name}"]["size_bytes"] == DISK_A_GIB << 30
    assert disks[f"ms-{spec.name}"]["name"] == "vda"
    assert disks[DISK_B_SERIAL]["size_bytes"] == DISK_B_GIB << 30
    assert disks[DISK_B_SERIAL]["wwn"] == DISK_B_WWN
    assert disks[DISK_B_SERIAL]["name"].startswith("sd")
    assert all(disk["by_path"] is None or disk["by_path"].startswith("/dev/disk/by-path/pci-")
               for disk in facts["disks"])
    [nic] = facts["nics"]
    assert nic["mac"] == spec.mac and nic["driver"] == "virtio_net" and nic["link"] is True
    assert machines.get(engine, machine["id"])["macs"] == [spec.mac]
