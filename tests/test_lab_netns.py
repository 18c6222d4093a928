"""The lab's provisioning network: the plan is pure; a real namespace is made, reached and deleted."""
from __future__ import annotations

import os
import socket
import subprocess
import sys
from pathlib import Path

import pytest

from lab.netns import NetPlan, ProvisioningNet
from metalstream.errors import BadInput


def test_plan_keeps_every_address_inside_its_own_networks():
    plan = NetPlan("mstest", 42)
    assert (plan.server, plan.inside, plan.outside) == ("10.231.42.1", "10.230.42.2", "10.230.42.1")
    assert plan.dhcp_range() == ("10.231.42.50", "10.231.42.99")
    assert plan.guest_address(1) == "10.231.42.51"
    commands = plan.setup_commands(taps=2)
    assert commands[0] == ["ip", "netns", "add", "mstest"]
    assert sum(1 for argv in commands if "tuntap" in argv) == 2
    # everything but creating the namespace and the host's end of the veth runs inside the namespace
    outside = [argv for argv in commands if argv[:3] != ["ip", "netns", "exec"]]
    assert all("mstest" in argv or "msvh42" in argv for argv in outside), outside


@pytest.mark.parametrize("name,index,field", [("bad name", 1, "name"), ("x" * 20, 1, "name"), ("mstest", 256, "index")])
def test_bad_plans_are_refused_with_the_field(name, index, field):
    with pytest.raises(BadInput) as err:
        NetPlan(name, index)
    assert err.value.location == field


def _answer_from_inside(plan: NetPlan) -> bytes:
    """Connect from this host to a one-shot TCP server listening on the namespace's veth address."""
    server = subprocess.Popen(
        [*plan.exec_prefix(), sys.executable, "-c",
         "import socket, sys; s = socket.create_server((sys.argv[1], 7070)); s.settimeout(20); print('up', flush=True);"
         " c, _ = s.accept(); c.sendall(b'inside'); c.close()", plan.inside], stdout=subprocess.PIPE, text=True)
    try:
        assert server.stdout.readline().strip() == "up"
        with socket.create_connection((plan.inside, 7070), timeout=10) as conn:
            return conn.recv(16)
    finally:
        server.wait(timeout=20)


@pytest.mark.root
def test_namespace_is_reachable_from_this_host_and_deleted_on_close(tmp_path):
    from conftest import require_root, require_tools

    require_root()
    require_tools("ip")
    plan = NetPlan(f"msnt{os.getpid() % 100000}", 251)
    with ProvisioningNet(plan, tmp_path) as net:
        assert Path(f"/run/netns/{plan.name}").exists()
        assert _answer_from_inside(plan) == b"inside"
        links = subprocess.run(["ip", "netns", "exec", plan.name, "ip", "-br", "link"], capture_output=True,
                               text=True, check=True).stdout
        assert "msbr0" in links and "mstap0" in links
        assert net.dnsmasq is None
    assert not Path(f"/run/netns/{plan.name}").exists()
    assert subprocess.run(["ip", "link", "show", plan.veth_outside], capture_output=True).returncode != 0


@pytest.mark.root
def test_a_second_run_on_the_same_names_is_refused_and_leaves_the_first_alone(tmp_path):
    from conftest import require_root

    from lab.netns import free_plan
    from metalstream.errors import OperationFailed

    require_root()
    plan = free_plan(first=200)
    with ProvisioningNet(plan, tmp_path / "first"):
        with pytest.raises(OperationFailed, match="already exists"):
            ProvisioningNet(plan, tmp_path / "second").open()
        assert Path(f"/run/netns/{plan.name}").exists() and Path(f"/sys/class/net/{plan.veth_outside}").exists()
        assert free_plan(first=200).index != plan.index
    assert not Path(f"/run/netns/{plan.name}").exists()
