"""End to end: a deployment with `reboot_method: kexec` jumps from the installer into the installed kernel without a
firmware reboot and reaches `active`; over SSH the root filesystem is the installed one. The same deployment with a
firmware reboot runs beside it, and the test prints power-on → active for both (the lab's answer to "how much does
kexec save"; under TCG the firmware's POST is short, on real servers it takes minutes).

Slow (two VM deployments under TCG). Alone: .venv/bin/python -m pytest -m slow tests/test_e2e_kexec.py -s
"""
from __future__ import annotations

import json
import re
import time
from pathlib import Path

import pytest

from fixtures_e2e import DEPLOY_TIMEOUT, lab_vm_spec, ssh_run

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.slow]

IPXE_BANNER = re.compile(r"iPXE \d+\.\d+")  # printed by the NIC's boot ROM each time the firmware starts it
GRUB_BOOTING = "Booting `"  # grub starting a menu entry
TIMES: dict[str, float] = {}


def _deploy(lab, name: str, reboot_method: str) -> dict:
    """Deploy onto a fresh UEFI VM; returns what the test checks, read while the installed system runs."""
    from lab.demo import PhaseClock, watch_deployment
    from lab.vm import LabVm, create_disk

    spec = lab_vm_spec(lab, name, "uefi")
    dep = lab.api.post("/api/v1/deployments", {
        "mac": spec.mac, "image": lab.image["name"], "hostname": spec.name, "boot_mode": "both",
        "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"127.0.0.1:{spec.ssh_port}",
        "reboot_method": reboot_method,
    })
    create_disk(spec)
    clock = PhaseClock()
    with LabVm(spec) as vm:
        clock.mark("vm_power_on")
        final = watch_deployment(lab.api, dep["id"], clock, vm, timeout=DEPLOY_TIMEOUT, echo=print)
        seconds = clock.since("vm_power_on")
        assert final["state"] == "active", (f"deployment ended {final['state']}: {final.get('error')} "
                                            f"{final.get('check_message')}\nserial log: {spec.serial_log}")
        root_uuid = ssh_run(lab, spec.ssh_port, "findmnt -no UUID /").strip()
        cmdline = ssh_run(lab, spec.ssh_port, "cat /proc/cmdline").strip()
        efi = ssh_run(lab, spec.ssh_port, "test -d /sys/firmware/efi && echo uefi || echo none").strip()
        serial = vm.serial_text()
    TIMES[reboot_method] = seconds
    print(f"power-on -> active with a {reboot_method} reboot: {seconds:.1f} s")
    return {"final": final, "seconds": seconds, "root_uuid": root_uuid, "cmdline": cmdline, "efi": efi,
            "serial": serial, "serial_log": spec.serial_log,
            "reboot_events": [e["message"] for e in final["events"] if (e["message"] or "").startswith("reboot:")]}


def test_firmware_reboot_deployment_reaches_active(e2e_lab):
    """The baseline: the installer reboots, the firmware (and the NIC's iPXE ROM) run again, grub boots the disk."""
    got = _deploy(e2e_lab, "e2e-fw-reboot", "firmware")
    assert got["reboot_events"] == ["reboot: firmware (as the plan asks)"]
    assert got["root_uuid"] == got["final"]["root_uuid"]
    assert len(IPXE_BANNER.findall(got["serial"])) >= 2, got["serial_log"]  # the firmware ran a second time
    assert GRUB_BOOTING in got["serial"] and "BOOT_IMAGE=" in got["cmdline"]  # grub started this kernel


def test_kexec_deployment_reaches_active_on_the_installed_root_without_the_firmware(e2e_lab):
    got = _deploy(e2e_lab, "e2e-kexec", "kexec")
    (event,) = got["reboot_events"]
    assert event.startswith("reboot: kexec (/boot/vmlinuz-"), event
    assert "grub.cfg entry 0" in event
    # The SSH check (the service's, and this one) finds the disk's root filesystem, the UUID the agent reported.
    assert got["root_uuid"] == got["final"]["root_uuid"] and got["root_uuid"]
    # No firmware reboot: the NIC's ROM ran once (the PXE boot into the installer) and grub did not start the
    # kernel (grub puts BOOT_IMAGE= first on the command line it passes); kexec passed grub.cfg's arguments.
    assert len(IPXE_BANNER.findall(got["serial"])) == 1, got["serial_log"]
    assert "BOOT_IMAGE=" not in got["cmdline"] and GRUB_BOOTING not in got["serial"], got["cmdline"]
    assert f"root=UUID={got['root_uuid']}" in got["cmdline"].split() and "console=ttyS0,115200" in got["cmdline"]
    assert got["efi"] == "uefi"  # kexec_file_load handed the EFI state on
    firmware = TIMES.get("firmware")
    print(f"power-on -> active: kexec {got['seconds']:.1f} s, firmware reboot "
          f"{'%.1f s' % firmware if firmware else 'not measured in this run'}")
    record = Path(e2e_lab.lab_dir) / "reboot-times.json"
    record.parent.mkdir(parents=True, exist_ok=True)
    record.write_text(json.dumps({"power_on_to_active_seconds": TIMES, "measured_at": time.time()}, indent=2) + "\n")
