"""End to end under Secure Boot (issue 18): a VM with OVMF's Secure Boot firmware and Microsoft's keys enrolled
network-boots the signed path (Debian's shim, then Debian's signed network GRUB, then the installer's signed
kernel, everything over the service's own TFTP), installs the debian-secureboot image, reboots with Secure Boot
still enforced and reaches `active`; the deployment shows Secure Boot on in the installer and on the installed
system. Offered the unsigned iPXE loader instead, the same firmware refuses it and the deployment fails with a
message naming Secure Boot.

qemu's user networking answers TFTP itself, so these VMs sit on a bridge in a network namespace the test makes
(lab.netns) with dnsmasq as its DHCP server (configured by `metalstream dnsmasq-config --dhcp-range`) and the
service running inside the namespace. Alone: .venv/bin/python -m pytest tests/test_e2e_secureboot.py
"""
from __future__ import annotations

import subprocess
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest

from conftest import METALSTREAM
from fixtures_e2e import esp_entries, service_with_image, wait_terminal

pytestmark = [pytest.mark.e2e, pytest.mark.root, pytest.mark.slow]  # ~8 min: its own image, two VM boots

INSTALL_AGENT_TIMEOUT = 600
REFUSAL_AGENT_TIMEOUT = 45
LOGIN_TIMEOUT = 10 * 60


@dataclass
class SecureBootLab:
    net: object  # lab.netns.ProvisioningNet
    data_dir: Path
    lab_dir: Path
    installer_manifest: Path
    image: dict
    token: str


@pytest.fixture(scope="module")
def sb_lab(tmp_path_factory, installer_build, debian_secureboot_image):
    from lab.netns import ProvisioningNet, free_plan
    from lab.vm import OVMF_CODE_SECBOOT, OVMF_VARS_MS

    from conftest import require_root, require_tools

    require_root()
    require_tools("qemu-system-x86_64", "dnsmasq", "ip", "ss", "mdir")
    for firmware in (OVMF_CODE_SECBOOT, OVMF_VARS_MS):
        if not firmware.exists():
            pytest.fail(f"{firmware} is missing: run `bash .ci/setup`, which installs ovmf")
    manifest, installer_out, _ = installer_build
    if "secure_boot" not in manifest:
        pytest.fail("the installer carries no signed shim and grub: kickstarts/installer.ks must install "
                    "shim-signed and grub-efi-amd64-signed")
    base = tmp_path_factory.mktemp("secureboot")
    data_dir = base / "data"
    _config, engine, image, token = service_with_image(data_dir, debian_secureboot_image, "secure boot e2e")
    engine.dispose()
    with ProvisioningNet(free_plan(), base / "net", taps=2) as net:
        try:
            yield SecureBootLab(net=net, data_dir=data_dir, lab_dir=base / "lab",
                                installer_manifest=installer_out / "installer.json", image=image, token=token)
        finally:
            for disk in (base / "lab").glob("*/disk.img"):
                disk.unlink()


@contextmanager
def _deployment(lab: SecureBootLab, vm_index: int, name: str, *, uefi_loader: str, agent_timeout: float,
                **request):
    """The service in the namespace, dnsmasq offering `uefi_loader` to UEFI clients (configured by the product's
    own `dnsmasq-config`), and a deployment for VM number `vm_index`: yields (api, deployment, vm spec)."""
    from lab.demo import ApiClient
    from lab.service_proc import ServiceProcess
    from lab.vm import VmSpec, create_disk

    plan, port = lab.net.plan, 8080
    spec = VmSpec(name, firmware="uefi-secureboot", tap=plan.tap(vm_index), netns=plan.name, lab_dir=lab.lab_dir,
                  memory_mib=2048, disk_size_gib=8)
    with ServiceProcess(lab.data_dir, port=port, installer=lab.installer_manifest, netns=plan.name,
                        bind_host="0.0.0.0", reach_host=plan.inside, public_url=f"http://{plan.server}:{port}",
                        agent_timeout=agent_timeout, options=["--tftp", "69", "--sweep-interval", "1"]) as service:
        start, end = plan.dhcp_range()
        config = subprocess.run(
            [*METALSTREAM, "dnsmasq-config", "--server-url", f"http://{plan.server}:{port}",
             "--subnet", str(plan.lan), "--tftp-server", plan.server, "--interface", "msbr0",
             "--dhcp-range", f"{start},{end}", "--uefi-loader", uefi_loader],
            capture_output=True, text=True, timeout=60)
        assert config.returncode == 0, config.stderr
        lab.net.start_dhcp(config.stdout, extra_lines=[f"dhcp-host={spec.mac},{plan.guest_address(vm_index)}"])
        api = ApiClient(service.url, lab.token)
        dep = api.post("/api/v1/deployments", {
            "mac": spec.mac, "image": lab.image["name"], "hostname": name, "boot_mode": "uefi",
            "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"{plan.guest_address(vm_index)}:22",
            **request})
        create_disk(spec)
        yield api, dep, spec


def test_secure_boot_vm_installs_over_the_signed_path_and_boots_enforced_to_active(sb_lab):
    from lab.vm import LabVm, create_disk

    with _deployment(sb_lab, 0, "sb-signed", uefi_loader="shim", agent_timeout=INSTALL_AGENT_TIMEOUT,
                     secure_boot=True) as (api, dep, spec):
        with LabVm(spec) as vm:
            final = wait_terminal(_Lab(api), dep["id"], vm)
            serial = vm.serial_text()
        assert final["state"] == "active", (f"deployment ended {final['state']}: {final.get('error')}\n"
                                            f"serial log: {spec.serial_log}")
        assert final["boot_path"] == "shim-grub", final
        assert final["secure_boot"] == {"requested": True, "installer": True, "target": True}, final
        assert final["first_stage"]["loader"] in ("shimx64.efi", "grubx64.efi"), final["first_stage"]
        assert "Security Violation" not in serial and "Access Denied" not in serial, spec.serial_log
        debian_dir = esp_entries(spec.disk, "::/EFI/debian") or ""
        assert "shimx64" in debian_dir and "grubx64" in debian_dir, debian_dir

    # The installed chain on its own: the firmware boots the disk first (shim, Debian's signed GRUB, the
    # signed kernel from the ESP and /boot), Secure Boot still enforced.
    spec.boot_first = "disk"
    create_disk(spec, fresh=False)
    with LabVm(spec) as vm:
        vm.wait_for_serial(r"login:", timeout=LOGIN_TIMEOUT)
        serial = vm.serial_text()
    assert "PXE" not in serial, "the disk must boot without the network"
    assert "secureboot: Secure boot enabled" in serial and "Security Violation" not in serial, spec.serial_log


def test_secure_boot_refuses_the_unsigned_loader_and_the_deployment_names_the_cause(sb_lab):
    from lab.vm import LabVm

    with _deployment(sb_lab, 1, "sb-unsigned", uefi_loader="ipxe", agent_timeout=REFUSAL_AGENT_TIMEOUT) \
            as (api, dep, spec):
        with LabVm(spec) as vm:
            final = wait_terminal(_Lab(api), dep["id"], vm, timeout=REFUSAL_AGENT_TIMEOUT + 240)
            serial = vm.serial_text()
    assert final["state"] == "failed", final
    assert final["first_stage"]["loader"] == "snponly.efi", final
    assert final["boot_path"] is None, final
    assert "Secure Boot" in final["error"] and "snponly.efi" in final["error"], final["error"]
    assert "Security Violation" in serial or "Access Denied" in serial, spec.serial_log
    assert not (spec.disk.exists() and _has_partition_table(spec.disk)), "nothing may be written to the disk"


@dataclass
class _Lab:
    """What fixtures_e2e.wait_terminal needs of a lab: its API client."""
    api: object


def _has_partition_table(disk: Path) -> bool:
    with open(disk, "rb") as handle:
        handle.seek(512)
        return handle.read(8) == b"EFI PART"

