"""End to end: real VMs PXE-boot from the real service, the agent installs the real Debian image, the VM reboots
into it and the service verifies it over SSH (`active`); a power cycle then boots the disk, not the installer;
a corrupted image fails cleanly and leaves no bootable half system.

UEFI and BIOS are part of the default run (the image and the installer are the session's, shared with the
builder tests); the corrupted image is `slow`. Each VM boot takes a minute or more under TCG.
Alone: .venv/bin/python -m pytest tests/test_e2e_deploy.py -m "e2e or slow"
"""
from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack

import pytest

from fixtures_e2e import (
    corrupted_copy,
    create_deployment,
    deployments_for,
    esp_entries,
    fetch_boot_script,
    gpt_partitions,
    lab_vm_spec,
    qemu_processes_for,
    wait_terminal,
)

pytestmark = [pytest.mark.e2e, pytest.mark.root]

LOGIN_TIMEOUT = 10 * 60
AFTER_FAILURE_WATCH = 90


def _deploy_then_power_cycle(lab, name: str, firmware: str) -> None:
    from lab.vm import LabVm, create_disk

    spec = lab_vm_spec(lab, name, firmware)
    dep = create_deployment(lab, spec, lab.image["name"], spec.ssh_port)
    create_disk(spec)
    with ExitStack() as stack:
        vm = stack.enter_context(LabVm(spec))
        final = wait_terminal(lab, dep["id"], vm)
        assert final["state"] == "active", (f"deployment ended {final['state']}: {final.get('error')}\n"
                                            f"serial log: {spec.serial_log}")
        vm.stop()
    assert not qemu_processes_for(spec), "the first VM run must be stopped before the power cycle"

    # The service no longer offers the installer to this MAC: its boot script is the local-boot one.
    script = fetch_boot_script(lab, spec.mac)
    assert "no install pending" in script
    assert not re.search(r"^\s*(kernel|initrd|imgfetch|chain)\b", script, re.M), script

    create_disk(spec, fresh=False)
    with LabVm(spec) as vm:
        vm.wait_for_serial(r"login:", timeout=LOGIN_TIMEOUT)
    after = lab.api.get(f"/api/v1/deployments/{dep['id']}")
    assert after["state"] == "active"
    assert [d["id"] for d in deployments_for(lab, spec.mac)] == [dep["id"]], "no new deployment for the MAC"
    assert "no install pending" in fetch_boot_script(lab, spec.mac)
    assert not qemu_processes_for(spec)


def test_uefi_vm_deploys_to_active_and_boots_its_disk_after_a_power_cycle(e2e_lab):
    _deploy_then_power_cycle(e2e_lab, "e2e-uefi", "uefi")


def test_bios_vm_deploys_to_active_and_boots_its_disk_after_a_power_cycle(e2e_lab):
    _deploy_then_power_cycle(e2e_lab, "e2e-bios", "bios")


@pytest.mark.slow
def test_corrupted_image_fails_with_the_agent_log_and_leaves_no_bootable_disk(e2e_lab, tmp_path):
    import hashlib

    from lab.vm import LabVm, create_disk

    lab = e2e_lab
    image, stored, original_sha = corrupted_copy(lab, "debian-corrupt", tmp_path / "corrupt")
    spec = lab_vm_spec(lab, "e2e-corrupt", "uefi")
    dep = create_deployment(lab, spec, image["name"], spec.ssh_port)
    create_disk(spec)
    with LabVm(spec) as vm:
        final = wait_terminal(lab, dep["id"], vm)
        assert final["state"] == "failed", f"expected failed, got {final['state']} (serial log {spec.serial_log})"
        assert re.search(r"sha256|hash|checksum|verif|corrupt", final.get("error") or "", re.I), final.get("error")
        # The failed agent must not hand the VM to a half-installed system: give it time to reboot, then
        # check that no login prompt appeared.
        time.sleep(AFTER_FAILURE_WATCH)
        serial = vm.serial_text()
    assert "login:" not in serial, f"the VM booted something after the failure (serial log {spec.serial_log})"
    log = lab.api.session.get(f"{lab.api.base}/api/v1/deployments/{dep['id']}/log", timeout=30)
    assert log.status_code == 200 and log.text.strip(), "the agent's log must be retrievable"
    assert re.search(r"sha256|hash|checksum|verif|corrupt", log.text, re.I), log.text[-2000:]

    partitions = gpt_partitions(spec.disk)
    if partitions:
        assert esp_entries(spec.disk) is None or "BOOTX64" not in esp_entries(spec.disk).upper(), \
            "the ESP of a failed install must hold no boot loader"
    assert "no install pending" in fetch_boot_script(lab, spec.mac)
    # The build output the corrupted copy came from is untouched.
    original = lab.image_manifest.parent / json.loads(lab.image_manifest.read_text())["tarball"]
    digest = hashlib.sha256(original.read_bytes()).hexdigest()
    assert digest == original_sha
