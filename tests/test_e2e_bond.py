"""End to end: a VM with two NICs deploys with an active-backup bond of both and a VLAN on top, as its deploy-time
kickstart says (one anaconda `network` line), with a static address on the VLAN only. Over SSH on the VLAN,
/proc/net/bonding/bond0 and `ip -d link` show them; pulling the active NIC's link (qemu monitor `set_link`)
moves the bond to the other NIC and the machine stays reachable on the VLAN.

The VM sits on the bridge of a lab network namespace (lab.netns) and PXE-boots untagged from NIC 1 (dnsmasq,
iPXE, the service inside the namespace). The namespace joins the VLAN through lab.vlan (tags in user space:
lab hosts' kernels may lack 802.1Q), so the service's activation check and the test's SSH reach the machine
only over tagged frames. Slow (TCG install): .venv/bin/python -m pytest tests/test_e2e_bond.py -m slow
"""
from __future__ import annotations

import re
import subprocess
import time
from dataclasses import dataclass

import pytest

from conftest import METALSTREAM
from fixtures_e2e import service_with_image, wait_terminal

VID = 42
FAILOVER_TIMEOUT = 120


@dataclass
class _Lab:
    """What fixtures_e2e.wait_terminal needs of a lab: its API client."""
    api: object


def test_vlan_frames_are_tagged_and_untagged_for_their_vlan_only():
    from lab.vlan import tag, untag

    frame = bytes(range(12)) + b"\x08\x00" + b"payload"
    tagged = tag(frame, VID)
    assert tagged[12:16] == b"\x81\x00\x00\x2a" and untag(tagged, VID) == frame
    assert untag(tagged, VID + 1) is None and untag(frame, VID) is None


def test_vm_with_extra_nics_and_a_monitor():
    from lab.vm import VmSpec, qemu_argv

    spec = VmSpec("two-nics", tap="mstap0", extra_taps=["mstap1"], netns="msx1", monitor=True)
    argv = qemu_argv(spec)
    assert argv[argv.index("-monitor") + 1] == f"unix:{spec.monitor_socket},server=on,wait=off"
    assert ["-netdev", "tap,id=n1,ifname=mstap1,script=no,downscript=no",
            "-device", f"virtio-net-pci,netdev=n1,mac={spec.macs[1]},romfile="] == \
        argv[argv.index("tap,id=n1,ifname=mstap1,script=no,downscript=no") - 1:][:4]
    assert len(set(spec.macs)) == 2 and spec.macs[0] == spec.mac


@pytest.mark.e2e
@pytest.mark.root
@pytest.mark.slow
def test_bond_and_vlan_from_the_kickstart_survive_a_pulled_link(tmp_path_factory, installer_build,
                                                                debian_minimal_image):
    from lab.demo import ApiClient
    from lab.netns import ProvisioningNet, free_plan
    from lab.service_proc import ServiceProcess
    from lab.vm import OVMF_CODE, LabVm, VmSpec, create_disk

    from conftest import require_root, require_tools

    require_root()
    require_tools("qemu-system-x86_64", "dnsmasq", "ip", "ss", "ssh")
    if not OVMF_CODE.exists():
        pytest.fail(f"{OVMF_CODE} is missing: run `bash .ci/setup`, which installs ovmf")
    base = tmp_path_factory.mktemp("bond")
    data_dir = base / "data"
    _config, engine, image, token = service_with_image(data_dir, debian_minimal_image, "bond e2e")
    engine.dispose()
    _, installer_out, _ = installer_build
    with ProvisioningNet(free_plan(), base / "net", taps=2) as net:
        plan, port = net.plan, 8080
        net.add_vlan(VID)
        spec = VmSpec("bond-vlan", firmware="uefi", tap=plan.tap(0), extra_taps=[plan.tap(1)], netns=plan.name,
                      lab_dir=base / "lab", memory_mib=2048, disk_size_gib=8, monitor=True)
        address = plan.vlan_guest_address(0)
        kickstart = (f"network --device=bond0 --bondslaves={','.join(spec.macs)} "
                     f"--bondopts=mode=active-backup,miimon=100 --vlanid={VID} --bootproto=static "
                     f"--ip={address} --netmask={plan.vlan_lan.netmask} --noipv6\n")
        with ServiceProcess(data_dir, port=port, installer=installer_out / "installer.json", netns=plan.name,
                            bind_host="0.0.0.0", reach_host=plan.inside, public_url=f"http://{plan.server}:{port}",
                            options=["--sweep-interval", "1"]) as service:
            start, end = plan.dhcp_range()
            dnsmasq = subprocess.run(
                [*METALSTREAM, "dnsmasq-config", "--server-url", f"http://{plan.server}:{port}",
                 "--subnet", str(plan.lan), "--tftp-server", plan.server, "--interface", "msbr0",
                 "--dhcp-range", f"{start},{end}"], capture_output=True, text=True, timeout=60)
            assert dnsmasq.returncode == 0, dnsmasq.stderr
            net.start_dhcp(dnsmasq.stdout, extra_lines=[f"dhcp-host={spec.mac},{plan.guest_address(0)}"])
            api = ApiClient(service.url, token)
            dep = api.post("/api/v1/deployments", {
                "mac": spec.mac, "image": image["name"], "hostname": spec.name, "boot_mode": "uefi",
                "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"{address}:22", "kickstart": kickstart})
            create_disk(spec)
            with LabVm(spec) as vm:
                final = wait_terminal(_Lab(api), dep["id"], vm)
                assert final["state"] == "active", (f"deployment ended {final['state']}: {final.get('error')}\n"
                                                    f"serial log: {spec.serial_log}")
                ssh = _ssh(plan.name, data_dir / "deploy_key", address)
                bonding, links = ssh("cat /proc/net/bonding/bond0"), ssh("ip -d link show")
                assert "Bonding Mode: fault-tolerance (active-backup)" in bonding, bonding
                ports = _ports(bonding)
                assert sorted(ports.values()) == sorted(spec.macs) and bonding.count("MII Status: up") == 3, bonding
                assert re.search(rf"bond0\.{VID}@bond0: .*\n(.*\n)*?\s+vlan protocol 802\.1Q id {VID} ", links), links
                assert re.search(r"bond0: .*\n(.*\n)*?\s+bond mode active-backup ", links), links
                active = re.search(r"Currently Active Slave: (\S+)", bonding).group(1)
                pulled = spec.macs.index(ports[active])
                vm.monitor(f"set_link n{pulled} off")
                after = _wait_failover(ssh, active)
                assert re.search(rf"Slave Interface: {active}\nMII Status: down", after), after
                assert ssh(f"cat /sys/class/net/bond0.{VID}/operstate").strip() == "up"


def _ssh(netns: str, key, address: str):
    """Run a command on the machine as root with the service's deploy key, from inside the namespace (over the
    VLAN): returns its output, fails the test when SSH does."""
    def run(command: str, *, check: bool = True) -> str:
        result = subprocess.run(
            ["ip", "netns", "exec", netns, "ssh", "-i", str(key), "-o", "BatchMode=yes", "-o", "ConnectTimeout=15",
             "-o", "StrictHostKeyChecking=no", "-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR",
             f"root@{address}", command], capture_output=True, text=True, timeout=90)
        if check:
            assert result.returncode == 0, f"ssh {command!r}: {result.returncode} {result.stderr}"
        return result.stdout if result.returncode == 0 else ""
    return run


def _ports(bonding: str) -> dict[str, str]:
    """Port name → permanent MAC, from /proc/net/bonding/BOND."""
    return dict(re.findall(r"Slave Interface: (\S+)\n(?:.*\n)*?Permanent HW addr: (\S+)", bonding))


def _wait_failover(ssh, active: str) -> str:
    """/proc/net/bonding/bond0 once another port is active, read over the VLAN (so the machine stayed reachable)."""
    deadline = time.monotonic() + FAILOVER_TIMEOUT
    while True:
        bonding = ssh("cat /proc/net/bonding/bond0", check=False)
        now = re.search(r"Currently Active Slave: (\S+)", bonding)
        if now and now.group(1) != active:
            return bonding
        assert time.monotonic() < deadline, f"the bond still uses {active} after its link was pulled:\n{bonding}"
        time.sleep(2)
