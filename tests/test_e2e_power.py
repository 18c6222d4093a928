"""End to end with real BMC emulators (issue 14, acceptance 1 and the VM-level faults of 3): a powered-off libvirt
domain is registered as a machine behind sushy-tools (Redfish) or virtualbmc (IPMI); ONE POST creates the
deployment, and the service alone powers it on, it PXE-boots, installs, reboots and reaches `active` (checked over
SSH by the service). The test never starts, stops or resets the domain: it only reads its state.

The boot device: the domain's user-network NIC always boots first (lab.libvirt explains why) and the service's
boot script sends a machine with nothing pending to its disk; what the BMC sets is checked in the domain's
definition (boot order back to the disk after the install).

All of it is `slow` (each cell is a full VM deployment under TCG; the default run keeps the driver-level tests
against the same emulators, tests/test_power_emulators.py). Alone:
.venv/bin/python -m pytest tests/test_e2e_power.py -m slow
"""
from __future__ import annotations

import json
import time
from contextlib import ExitStack
from dataclasses import dataclass
from pathlib import Path

import pytest

from fixtures_bmc import domain_name
from fixtures_e2e import DEPLOY_TIMEOUT, service_with_image

pytestmark = [pytest.mark.e2e, pytest.mark.root]

TERMINAL = ("active", "failed", "cancelled")
BOOT_TIMEOUT = 150  # the service's --boot-timeout: power-on to the first network boot
SWEEP = 2
PASSWORD = "bmc-Pass-e2e-7"


@dataclass
class PowerLab:
    service: object  # lab.service_proc.ServiceProcess
    api: object  # lab.demo.ApiClient
    image: dict
    lab_dir: Path
    work: Path


@pytest.fixture(scope="module")
def power_lab(tmp_path_factory, debian_minimal_image, installer_build, libvirt_daemon):
    from lab.demo import ApiClient
    from lab.service_proc import ServiceProcess

    _, installer_out, _ = installer_build
    base = tmp_path_factory.mktemp("e2e-power")
    data_dir = base / "data"
    config, _engine, image, token = service_with_image(data_dir, debian_minimal_image, "e2e power tests")
    options = ["--sweep-interval", str(SWEEP), "--boot-timeout", str(BOOT_TIMEOUT)]
    try:
        with ServiceProcess(data_dir, installer=installer_out / "installer.json", options=options) as service:
            api = ApiClient(service.url, token)
            # A new connection per request: gunicorn closes an idle keep-alive connection after 2 s, and a
            # request sent just as it does so fails with "connection reset" (this module polls every 2 s).
            api.session.headers["Connection"] = "close"
            yield PowerLab(service=service, api=api, image=image, lab_dir=base / "lab", work=base)
    finally:
        for disk in (base / "lab").glob("*/disk.img"):
            disk.unlink()


def _domain_spec(lab: PowerLab, prefix: str, firmware: str, *, reachable: bool = True):
    from lab.service_proc import free_port
    from lab.vm import VmSpec, create_disk

    # Unreachable: port 9 (discard) on the host's loopback, where nothing listens: iPXE gets no script.
    boot_url = f"{lab.service.guest_url}/boot.ipxe" if reachable else "http://10.0.2.2:9/boot.ipxe"
    spec = VmSpec(domain_name(prefix), firmware=firmware, boot_url=boot_url, ssh_port=free_port(),
                  lab_dir=lab.lab_dir, memory_mib=2048, disk_size_gib=8)
    create_disk(spec)
    return spec


def _register(lab: PowerLab, spec, emulator) -> dict:
    from lab.bmc import machine_bmc

    return lab.api.post("/api/v1/machines", {"name": spec.name, "macs": [spec.mac], "bmc": machine_bmc(emulator)})


def _deploy(lab: PowerLab, spec) -> dict:
    return lab.api.post("/api/v1/deployments", {
        "machine": spec.name, "image": lab.image["name"], "hostname": spec.name, "boot_mode": "both",
        "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"127.0.0.1:{spec.ssh_port}",
    })


def _wait(lab: PowerLab, dep_id: str, *, until=TERMINAL, timeout: float = DEPLOY_TIMEOUT) -> dict:
    """Poll the deployment (printing its progress) until its state is one of `until`."""
    started = time.monotonic()
    last = None
    while True:
        dep = lab.api.get(f"/api/v1/deployments/{dep_id}")
        line = " | ".join(str(x) for x in (dep["state"], dep.get("phase"), dep.get("message"), dep.get("error")) if x)
        if line != last:
            print(f"[{time.monotonic() - started:6.1f}s] {line}")
            last = line
        if dep["state"] in until or dep["state"] in TERMINAL:
            return dep
        assert time.monotonic() - started < timeout, f"deployment {dep_id} still {dep['state']} after {timeout} s"
        time.sleep(2)


def _eventually(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while not (value := check()):
        assert time.monotonic() < deadline, f"not within {timeout} s: {what}"
        time.sleep(1)
    return value


def _deploy_through_the_bmc(lab: PowerLab, driver: str, firmware: str) -> None:
    from lab.bmc import emulator_for
    from lab.libvirt import LibvirtVm

    spec = _domain_spec(lab, f"pw-{driver}", firmware)
    with ExitStack() as stack:
        vm = stack.enter_context(LibvirtVm(spec))
        bmc = stack.enter_context(emulator_for(driver, lab.work / f"bmc-{spec.name}", spec.name, password=PASSWORD))
        machine = _register(lab, spec, bmc)
        assert vm.state() == "shut off" and not bmc.power_requests()

        dep = _deploy(lab, spec)
        assert dep["machine"] == machine["id"]
        final = _wait(lab, dep["id"])
        assert final["state"] == "active", (f"deployment ended {final['state']}: {final.get('error')} "
                                            f"(serial log {spec.serial_log}, BMC log {bmc.log_path})")
        assert vm.state() == "running"
        assert bmc.power_requests(), "the service powered the domain on through the BMC (the test never did)"
        assert "login:" in vm.serial_text() or vm.wait_for_serial(r"login:", timeout=120)

        # After the install the service sets the boot device back to the disk (Redfish: Hdd → the disk first;
        # IPMI: bootdev disk → <boot dev='hd'/>).
        disk_first = ["disk"] if driver == "redfish" else ["hd"]
        _eventually(lambda: vm.boot_order() == disk_first, timeout=120,
                    what=f"boot order back to the disk (now {vm.boot_order()})")
        devices = bmc.boot_requests()
        assert len(devices) >= 2, f"boot-once network, then the disk: {devices}"
        after = lab.api.get(f"/api/v1/machines/{machine['id']}")
        assert after["state"] == "deployed"
        assert PASSWORD not in json.dumps(after), "a GET never returns the BMC password"


@pytest.mark.slow
def test_redfish_machine_is_powered_on_pxe_boots_installs_and_reaches_active(power_lab):
    _deploy_through_the_bmc(power_lab, "redfish", "uefi")


@pytest.mark.slow
def test_ipmi_machine_is_powered_on_pxe_boots_installs_and_reaches_active(power_lab):
    _deploy_through_the_bmc(power_lab, "ipmi", "bios")


@pytest.mark.slow
def test_powered_on_machine_that_never_network_boots_fails_after_the_boot_timeout(power_lab):
    from lab.bmc import emulator_for
    from lab.libvirt import LibvirtVm

    lab = power_lab
    spec = _domain_spec(lab, "pw-noboot", "uefi", reachable=False)  # OVMF shows iPXE on the serial console
    with LibvirtVm(spec) as vm, emulator_for("ipmi", lab.work / f"bmc-{spec.name}", spec.name,
                                             password=PASSWORD) as bmc:
        machine = _register(lab, spec, bmc)
        dep = _deploy(lab, spec)
        final = _wait(lab, dep["id"], timeout=BOOT_TIMEOUT + 180)
        assert final["state"] == "failed"
        assert "never network-booted" in (final.get("error") or ""), final.get("error")
        assert bmc.power_requests(), "it was powered on (by the service) before it timed out"
        assert "10.0.2.2:9" in vm.serial_text(), "the domain's firmware tried the unreachable boot URL"
        assert lab.api.get(f"/api/v1/machines/{machine['id']}")["state"] == "failed"
        # Nothing half-done: no deployment left open for the machine; a new one may be created.
        open_ones = [d for d in lab.api.get(f"/api/v1/deployments?mac={spec.mac}")["deployments"]
                     if d["state"] not in TERMINAL]
        assert open_ones == []


@pytest.mark.slow
def test_bmc_down_after_power_on_then_back_leaves_nothing_half_done(power_lab):
    """The BMC dies once the service powered the machine on: the install needs no BMC until it is done, so the
    deployment still reaches `active`, and the boot device cannot go back to the disk while the BMC is down. When
    the BMC is back (same address), the service finishes that step: nothing stays half-done."""
    from lab.bmc import emulator_for
    from lab.libvirt import LibvirtVm

    lab = power_lab
    spec = _domain_spec(lab, "pw-bmcdown", "uefi")
    work = lab.work / f"bmc-{spec.name}"
    with LibvirtVm(spec) as vm:
        bmc = emulator_for("redfish", work, spec.name, password=PASSWORD).start()
        try:
            machine = _register(lab, spec, bmc)
            dep = _deploy(lab, spec)
            # Booting: it fetched its boot script, so the service's power-on is over (BMC calls all answered).
            assert _wait(lab, dep["id"], until=("booting", "installing"), timeout=BOOT_TIMEOUT)["state"] in (
                "booting", "installing")
            assert vm.state() == "running" and bmc.power_requests() and bmc.boot_requests()
        finally:
            bmc.stop()
        assert vm.boot_order() == ["interface", "disk"]
        final = _wait(lab, dep["id"])
        assert final["state"] == "active", f"{final['state']}: {final.get('error')} (serial log {spec.serial_log})"
        assert vm.state() == "running"
        assert vm.boot_order() == ["interface", "disk"], "no BMC, so nothing set the boot device back"
        assert lab.api.get(f"/api/v1/machines/{machine['id']}")["state"] == "deployed"

        # The BMC is back at the same address: the service's retry sets the boot device back to the disk.
        with emulator_for("redfish", work, spec.name, password=PASSWORD, port=bmc.port):
            _eventually(lambda: vm.boot_order() == ["disk"], timeout=180,
                        what=f"the service sets the boot device back once the BMC answers (now {vm.boot_order()})")
