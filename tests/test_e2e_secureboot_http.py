"""UEFI HTTP boot under Secure Boot, end to end as far as the installer's agent (issue 18): a VM with OVMF's Secure
Boot firmware, Microsoft's keys enrolled and its PXE client off (an HTTP-boot-only machine) gets
/boot/secureboot.img from DHCP (`metalstream dnsmasq-config --uefi-loader shim --dhcp-range`), boots it from a
RAM disk (the signed shim, then Debian's signed network GRUB, then the installer's signed kernel) and its agent
calls the service. Nothing goes over TFTP. Lab as in test_e2e_secureboot.py (a network namespace with dnsmasq
and the service inside). Alone: .venv/bin/python -m pytest tests/test_e2e_secureboot_http.py
"""
from __future__ import annotations

import subprocess
import time

import pytest

from conftest import METALSTREAM
from fixtures_e2e import service_with_image

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.slow]  # ~7 min: an installer build, a VM boot

AGENT_WAIT = 420
PXE_OFF = ["-fw_cfg", "name=opt/org.tianocore/IPv4PXESupport,string=no"]


def test_secure_boot_http_boot_reaches_the_agent_without_tftp(tmp_path, installer_build, pxe_image_manifest):
    from lab.demo import ApiClient
    from lab.netns import ProvisioningNet, free_plan
    from lab.service_proc import ServiceProcess
    from lab.vm import OVMF_CODE_SECBOOT, LabVm, VmSpec, create_disk

    from conftest import require_root, require_tools

    require_root()
    require_tools("qemu-system-x86_64", "dnsmasq", "ip", "ss", "mcopy")
    if not OVMF_CODE_SECBOOT.exists():
        pytest.fail(f"{OVMF_CODE_SECBOOT} is missing: run `bash .ci/setup`, which installs ovmf")
    manifest, installer_out, _ = installer_build
    assert "secure_boot" in manifest, "kickstarts/installer.ks must install shim-signed and grub-efi-amd64-signed"
    data_dir = tmp_path / "data"
    _config, engine, image, token = service_with_image(data_dir, pxe_image_manifest, "secure boot http e2e")
    engine.dispose()
    with ProvisioningNet(free_plan(first=150), tmp_path / "net") as net:
        plan, port = net.plan, 8080
        spec = VmSpec("sb-http", firmware="uefi-secureboot", tap=plan.tap(0), netns=plan.name,
                      lab_dir=tmp_path / "lab", memory_mib=2048, disk_size_gib=2, extra_args=PXE_OFF)
        with ServiceProcess(data_dir, port=port, installer=installer_out / "installer.json", netns=plan.name,
                            bind_host="0.0.0.0", reach_host=plan.inside, public_url=f"http://{plan.server}:{port}",
                            agent_timeout=AGENT_WAIT, options=["--tftp", "69"]) as service:
            start, end = plan.dhcp_range()
            config = subprocess.run(
                [*METALSTREAM, "dnsmasq-config", "--server-url", f"http://{plan.server}:{port}",
                 "--subnet", str(plan.lan), "--tftp-server", plan.server, "--interface", "msbr0",
                 "--dhcp-range", f"{start},{end}", "--uefi-loader", "shim"],
                capture_output=True, text=True, timeout=60)
            assert config.returncode == 0, config.stderr
            net.start_dhcp(config.stdout, extra_lines=[f"dhcp-host={spec.mac},{plan.guest_address(0)}"])
            api = ApiClient(service.url, token)
            dep = api.post("/api/v1/deployments", {
                "mac": spec.mac, "image": image["name"], "hostname": "sb-http", "boot_mode": "uefi",
                "kernel_args": ["console=ttyS0,115200"]})
            create_disk(spec)
            with LabVm(spec):
                shown = _wait_for_agent(api, dep["id"])
            serial = spec.serial_log.read_text(errors="replace")
            log = service.log_path.read_text(errors="replace")
    messages = [event["message"] for event in shown["events"]]
    assert "agent started" in messages, (messages, spec.serial_log)
    assert shown["boot_path"] == "shim-grub-http", shown
    assert ("installer boot script served (boot: signed shim + grub over UEFI HTTP boot (RAM disk image))"
            in messages), messages
    assert shown["first_stage"] is None, shown["first_stage"]  # nothing fetched over TFTP
    assert shown["secure_boot"]["installer"] is True, shown["secure_boot"]
    assert "Start HTTP Boot over IPv4" in serial and "/boot/secureboot.img" in serial, spec.serial_log
    assert "secureboot: Secure boot enabled" in serial, spec.serial_log
    assert "Security Violation" not in serial and "Access Denied" not in serial, spec.serial_log
    assert "GET /boot/secureboot.img" in log and "HEAD /boot/secureboot.img" in log, service.log_path
    assert "tftp " not in log, service.log_path


def _wait_for_agent(api, dep_id: str) -> dict:
    """The deployment once the agent's first event (which says how the installer booted) is in, or it ended."""
    deadline = time.monotonic() + AGENT_WAIT
    while True:
        shown = api.get(f"/api/v1/deployments/{dep_id}")
        if (shown["secure_boot"]["installer"] is not None or shown["state"] in ("failed", "cancelled", "active")
                or time.monotonic() > deadline):
            return shown
        time.sleep(1)  # under gunicorn's 2 s keep-alive: a poll every 2 s races the server closing the connection
