"""The lab's BMC emulators drive real libvirt domains: sushy-tools (Redfish) and virtualbmc (IPMI) power a TCG
domain on and off (virsh domstate shows it), rewrite its boot order, and refuse wrong credentials without
touching the domain. No OS boots here: the domains only reach their firmware."""
from __future__ import annotations

import xml.etree.ElementTree as ET

import pytest
import requests

pytestmark = [pytest.mark.root]

PASSWORD = "lab-bmc-Secret-1"


def test_domain_xml_is_a_tcg_domain_with_the_boot_url_nic_and_a_decoy():
    from lab.libvirt import decoy_mac, domain_xml
    from lab.vm import VmSpec

    spec = VmSpec("xml-check", firmware="uefi", boot_url="http://10.0.2.2:8123/boot.ipxe", ssh_port=2222)
    root = ET.fromstring(domain_xml(spec))
    assert root.get("type") == "qemu"
    assert root.find("os/loader").text.endswith("OVMF_CODE.fd")
    assert root.find("os/nvram").text == str(spec.vars_file)
    args = [a.get("value") for a in root.iter("{http://libvirt.org/schemas/domain/qemu/1.0}arg")]
    netdev = args[args.index("-netdev") + 1]
    assert "bootfile=http://10.0.2.2:8123/boot.ipxe" in netdev and "hostfwd=tcp:127.0.0.1:2222-:22" in netdev
    assert f"mac={spec.mac}" in args[args.index("-device") + 1]
    decoy = root.find("devices/interface")
    assert decoy.find("mac").get("address") == decoy_mac(spec) != spec.mac
    assert decoy.find("link").get("state") == "down" and decoy.find("rom").get("enabled") == "no"
    assert root.find("devices/serial/source").get("path") == str(spec.serial_log)
    assert ET.fromstring(domain_xml(VmSpec("xml-bios", firmware="bios"))).find("os/loader") is None



def test_libvirt_daemon_reuses_a_running_daemon_and_leaves_it_running(libvirt_daemon):
    from lab.libvirt import LibvirtDaemon

    with LibvirtDaemon() as again:
        assert again.started == []
    assert libvirt_daemon.answers()


def test_redfish_powers_the_domain_sets_its_boot_order_and_refuses_a_wrong_password(domain, tmp_path):
    from lab.bmc import SushyEmulator, domain_uuid

    uuid = domain_uuid(domain.name)
    with SushyEmulator(tmp_path / "sushy", [domain.name], password=PASSWORD) as bmc:
        system = bmc.system_path(uuid)
        auth = (bmc.username, PASSWORD)
        assert bmc.get("/redfish/v1/Systems").json()["Members"] == [{"@odata.id": system}]

        def reset(kind: str, credentials=auth) -> requests.Response:
            return requests.post(f"{bmc.url}{system}/Actions/ComputerSystem.Reset", json={"ResetType": kind},
                                 auth=credentials, timeout=30)

        def boot(target: str, credentials=auth) -> requests.Response:
            return requests.patch(f"{bmc.url}{system}", auth=credentials, timeout=30, json={
                "Boot": {"BootSourceOverrideTarget": target, "BootSourceOverrideEnabled": "Once"}})

        wrong = (bmc.username, PASSWORD + "x")
        assert bmc.get(system, auth=wrong).status_code == 401
        assert reset("On", wrong).status_code == 401
        assert boot("Pxe", wrong).status_code == 401
        assert domain.state() == "shut off" and domain.boot_order() == ["disk"]

        assert boot("Pxe").status_code == 204
        assert domain.boot_order() == ["interface", "disk"]
        assert bmc.get(system).json()["Boot"]["BootSourceOverrideTarget"] == "Pxe"
        assert reset("On").status_code == 204
        domain.wait_state("running")
        assert bmc.get(system).json()["PowerState"] == "On"
        assert reset("ForceOff").status_code == 204
        domain.wait_state("shut off")
        assert boot("Hdd").status_code == 204
        assert domain.boot_order() == ["disk"]
        pid = bmc.pid
    assert not bmc.running() and not _process_exists(pid), "the emulator must be gone after the context"


def test_ipmi_powers_the_domain_sets_its_boot_device_and_refuses_a_wrong_password(domain, tmp_path):
    from lab.bmc import VirtualBmc
    from metalstream.errors import CommandError

    with VirtualBmc(tmp_path / "vbmc", domain.name, password=PASSWORD) as bmc:
        refused = bmc.ipmitool("power", "on", password="not-the-password", check=False)
        assert refused.returncode != 0 and "session" in refused.stderr.lower()
        assert domain.state() == "shut off"
        assert bmc.ipmitool("power", "status").stdout.strip() == "Chassis Power is off"

        bmc.ipmitool("chassis", "bootdev", "pxe")
        assert domain.boot_order() == ["network"]
        bmc.ipmitool("power", "on", answer_within=10)
        domain.wait_state("running")
        assert bmc.ipmitool("power", "status").stdout.strip() == "Chassis Power is on"
        bmc.ipmitool("power", "off", answer_within=10)
        domain.wait_state("shut off")
        bmc.ipmitool("chassis", "bootdev", "disk")
        assert domain.boot_order() == ["hd"]
        pid = bmc.pid
    assert not _process_exists(pid)
    with pytest.raises(CommandError):
        bmc.ipmitool("power", "status")


def _process_exists(pid: int) -> bool:
    import os

    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    return True
