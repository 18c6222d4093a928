"""The deployed machine's network files (deployer.network) for bonds, VLANs, bridges and the IPv4/IPv6/DNS/route
switches; systemd-networkd itself reads the generated files; the plan carries and checks the same devices."""
from __future__ import annotations

import configparser
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from deployer.network import configure_network, networkd_files, networkmanager_files
from metalstream.contracts.network import NetworkDevice
from metalstream.contracts.plan import ImageRef, Plan
from metalstream.errors import BadInput

NETWORKD = Path("/lib/systemd/systemd-networkd")
BOND_VLAN = [
    NetworkDevice(device="bond0", bootproto="disabled", ipv6="disabled", mtu=9000, bond_slaves=["ens3", "ens4"],
                  bond_options=["mode=active-backup", "miimon=100", "primary=ens3"]),
    NetworkDevice(device="bond0", bootproto="static", ip="192.0.2.10", netmask="255.255.255.0", gateway="192.0.2.1",
                  nameservers=["192.0.2.53", "2001:db8::53"], vlan_id=42, ipv4_dns_search=["example.org"]),
]
BRIDGE = NetworkDevice(device="br0", ipv6="2001:db8::5/64", ipv6_gateway="2001:db8::1", nodefroute=True, nodns=True,
                       onboot=False, bridge_slaves=["52:54:00:00:00:05"], bind_to_mac=False,
                       bridge_options=["stp=yes", "priority=40", "forward-delay=4"], dhcp_class="metal")
EVERYTHING = [*BOND_VLAN, BRIDGE, NetworkDevice(device="ens9", bootproto="disabled", ipv6="dhcp",
                                                ipv6_ignore_auto_dns=True, bind_to_mac=True)]
MACS = {"ens9": "52:54:00:00:00:09"}
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIK0wmN/Cr3JXqmLW7u+g9pTh+wyqDHpSQEIQczXkVx9q deploy"


def test_networkd_bond_with_a_vlan_on_top():
    files = networkd_files(BOND_VLAN)
    assert files == {
        "etc/systemd/network/10-metalstream-0.netdev":
            "# written by metalstream\n[NetDev]\nName=bond0\nKind=bond\n\n[Bond]\nMode=active-backup\n"
            "MIIMonitorSec=100ms\n",
        "etc/systemd/network/10-metalstream-0.network":
            "# written by metalstream\n[Match]\nName=bond0\n\n[Network]\nIPv6AcceptRA=no\nLinkLocalAddressing=no\n"
            "VLAN=bond0.42\n\n[Link]\nMTUBytes=9000\n",
        "etc/systemd/network/11-metalstream-1.netdev":
            "# written by metalstream\n[NetDev]\nName=bond0.42\nKind=vlan\n\n[VLAN]\nId=42\n",
        "etc/systemd/network/11-metalstream-1.network":
            "# written by metalstream\n[Match]\nName=bond0.42\n\n[Network]\nAddress=192.0.2.10/24\n"
            "Gateway=192.0.2.1\nDNS=192.0.2.53\nDNS=2001:db8::53\nDomains=example.org\n",
        "etc/systemd/network/50-metalstream-port-ens3.network":
            "# written by metalstream\n[Match]\nName=ens3\n\n[Network]\nBond=bond0\nPrimarySlave=yes\n",
        "etc/systemd/network/50-metalstream-port-ens4.network":
            "# written by metalstream\n[Match]\nName=ens4\n\n[Network]\nBond=bond0\n",
    }


def test_networkd_bridge_ipv6_routes_dns_and_bind_to_mac():
    files = networkd_files([BRIDGE, EVERYTHING[-1]], MACS)
    assert files["etc/systemd/network/10-metalstream-0.netdev"].endswith(
        "[NetDev]\nName=br0\nKind=bridge\n\n[Bridge]\nSTP=yes\nPriority=40\nForwardDelaySec=4\n")
    assert files["etc/systemd/network/10-metalstream-0.network"] == (
        "# written by metalstream\n[Match]\nName=br0\n\n[Network]\nDHCP=ipv4\nAddress=2001:db8::5/64\n"
        "IPv6AcceptRA=no\n\n[DHCPv4]\nUseDNS=no\nUseGateway=no\nVendorClassIdentifier=metal\n\n"
        "[Link]\nActivationPolicy=manual\nRequiredForOnline=no\n")  # nodefroute: no Gateway= either
    assert files["etc/systemd/network/50-metalstream-port-525400000005.network"] == (
        "# written by metalstream\n[Match]\nPermanentMACAddress=52:54:00:00:00:05\n\n[Network]\nBridge=br0\n")
    assert files["etc/systemd/network/11-metalstream-1.network"] == (
        "# written by metalstream\n[Match]\nMACAddress=52:54:00:00:00:09\n\n[Network]\nDHCP=ipv6\n"
        "IPv6AcceptRA=yes\n\n[DHCPv6]\nWithoutRA=solicit\nUseDNS=no\n\n[IPv6AcceptRA]\nUseDNS=no\n")


def _networkd_reads(files: dict[str, str], work: Path) -> tuple[list[str], str]:
    """Run the host's systemd-networkd for a few seconds in a network and mount namespace of its own, reading
    `files` as /etc/systemd/network: (its complaints about them, `ip -d link` in that namespace)."""
    conf = work / "network"
    conf.mkdir()
    for rel, text in files.items():
        (conf / Path(rel).name).write_text(text)
    script = (f"mount --make-rprivate / && mount --bind {conf} /etc/systemd/network && "
              "mount -t tmpfs tmpfs /run/systemd && ip link set lo up && "
              "for n in ens3 ens4; do ip link add $n type veth peer name p$n; done; "
              f"SYSTEMD_LOG_LEVEL=debug SYSTEMD_LOG_TARGET=console timeout 3 {NETWORKD} 2>{work}/log; "
              "ip -d link")
    result = subprocess.run(["unshare", "--net", "--mount", "sh", "-c", script], capture_output=True, text=True,
                            timeout=60)
    log = (work / "log").read_text()
    return [line for line in log.splitlines() if line.startswith("/etc/systemd/network/")], result.stdout


@pytest.mark.root
def test_systemd_networkd_accepts_every_generated_file(tmp_path):
    """The host's networkd (same major version as the Debian image's) parses each file without a complaint
    (an unknown key or a bad value is logged as `FILE:LINE: ...`) and sets up the bridge it can make here."""
    if os.geteuid() != 0 or not NETWORKD.exists() or shutil.which("unshare") is None:
        pytest.fail("needs root, unshare and systemd-networkd (run `bash .ci/setup`)")
    complaints, links = _networkd_reads(networkd_files([*EVERYTHING, *MORE], MACS), tmp_path)
    assert complaints == []
    assert "br0:" in links and "bridge forward_delay 400 hello_time" in links and "stp_state 1 priority 40" in links


@pytest.mark.root
def test_systemd_networkd_complaints_are_seen(tmp_path):
    """The check above can fail: a misspelt key is reported with its file and line."""
    if os.geteuid() != 0 or not NETWORKD.exists():
        pytest.fail("needs root and systemd-networkd")
    files = networkd_files(BOND_VLAN)
    files["etc/systemd/network/10-metalstream-0.netdev"] += "MIIMonitor=100\n"
    complaints, _ = _networkd_reads(files, tmp_path)
    assert complaints == ["/etc/systemd/network/10-metalstream-0.netdev:9: Unknown key 'MIIMonitor' in section "
                          "[Bond], ignoring."]


def _keyfiles(devices, macs=None) -> dict[str, configparser.ConfigParser]:
    parsed = {}
    for rel, text in networkmanager_files(devices, macs).items():
        config = configparser.ConfigParser(interpolation=None, strict=True)  # duplicate keys/sections refused
        config.optionxform = str
        config.read_string(text)
        parsed[Path(rel).name] = config
    return parsed


def test_networkmanager_bond_vlan_and_ports():
    files = _keyfiles(BOND_VLAN)
    assert sorted(files) == ["metalstream-0.nmconnection", "metalstream-1.nmconnection",
                             "metalstream-port-ens3.nmconnection", "metalstream-port-ens4.nmconnection"]
    bond, vlan, port = (files[f"metalstream-{n}.nmconnection"] for n in ("0", "1", "port-ens3"))
    assert {"type": "bond", "interface-name": "bond0", "autoconnect-slaves": "1", "mode": "active-backup",
            "miimon": "100", "primary": "ens3"}.items() <= (dict(bond["connection"]) | dict(bond["bond"])).items()
    assert (bond["ipv4"]["method"], bond["ipv6"]["method"], bond["ethernet"]["mtu"]) == ("disabled", "disabled", "9000")
    assert dict(vlan["vlan"]) == {"id": "42", "parent": "bond0"} and vlan["connection"]["interface-name"] == "bond0.42"
    assert dict(vlan["ipv4"]) == {"method": "manual", "address1": "192.0.2.10/24,192.0.2.1",
                                  "dns": "192.0.2.53;", "dns-search": "example.org;"}
    assert dict(vlan["ipv6"]) == {"method": "ignore"}
    assert {"type": "ethernet", "interface-name": "ens3", "master": "bond0",
            "slave-type": "bond"}.items() <= dict(port["connection"]).items()
    assert "ipv4" not in port


def test_networkmanager_bridge_and_the_switches():
    files = _keyfiles([BRIDGE, EVERYTHING[-1]], MACS)
    bridge, ens9 = files["metalstream-0.nmconnection"], files["metalstream-1.nmconnection"]
    assert dict(bridge["bridge"]) == {"stp": "true", "priority": "40", "forward-delay": "4"}
    assert bridge["connection"]["autoconnect"] == "false"
    assert dict(bridge["ipv4"]) == {"method": "auto", "ignore-auto-dns": "true", "never-default": "true",
                                    "dhcp-vendor-class-identifier": "metal"}
    assert dict(bridge["ipv6"]) == {"method": "manual", "address1": "2001:db8::5/64",  # nodefroute: no gateway
                                    "ignore-auto-dns": "true", "never-default": "true"}
    port = files["metalstream-port-525400000005.nmconnection"]
    assert port["ethernet"]["mac-address"] == "52:54:00:00:00:05".upper() and port["connection"]["master"] == "br0"
    assert ens9["ethernet"]["mac-address"] == "52:54:00:00:00:09".upper() and "interface-name" not in ens9["connection"]
    assert dict(ens9["ipv4"]) == {"method": "disabled"} and dict(ens9["ipv6"]) == {"method": "dhcp",
                                                                                   "ignore-auto-dns": "true"}


# NetworkManager's own keyfile reader (libnm through the system python's gi): read, verify, and write back;
# a key the writer drops is unknown to NetworkManager unless it is a property left out at its default.
NM_READER = """
import json, sys
import gi
gi.require_version("NM", "1.0")
from gi.repository import GLib, NM

ALIASES = {"ethernet": "802-3-ethernet"}


def keys(keyfile):
    return {(g, k) for g in keyfile.get_groups()[0] for k in keyfile.get_keys(g)[0]}


def known(conn, group, key):
    setting = conn.get_setting_by_name(ALIASES.get(group, group))
    return setting is not None and key in {p.name for p in setting.list_properties()}


out = {}
for name, text in json.load(sys.stdin).items():
    keyfile = GLib.KeyFile()
    try:
        keyfile.load_from_data(text, len(text.encode()), GLib.KeyFileFlags.NONE)
        conn = NM.keyfile_read(keyfile, "/etc/NetworkManager/system-connections", NM.KeyfileHandlerFlags.NONE,
                               None, None)
        conn.verify()
        back = NM.keyfile_write(conn, NM.KeyfileHandlerFlags.NONE, None, None)
        out[name] = [f"unknown key {g}.{k}" for g, k in sorted(keys(keyfile) - keys(back)) if not known(conn, g, k)]
    except GLib.Error as exc:
        out[name] = [exc.message]
print(json.dumps(out))
"""
SYSTEM_PYTHON = "/usr/bin/python3"
MORE = [NetworkDevice(device=None), NetworkDevice(device="br1", bridge_slaves=["bond7"]),
        NetworkDevice(device="bond7", bootproto="disabled", ipv6="disabled", bond_slaves=["ens20", "ens21"],
                      bond_options=["mode=802.3ad", "lacp_rate=fast", "xmit_hash_policy=layer3+4", "min_links=1"]),
        NetworkDevice(device="bond8", bootproto="disabled", bond_slaves=["ens22"], bond_options=[
            "mode=balance-xor", "arp_interval=100", "arp_ip_target=192.0.2.1,192.0.2.2", "arp_validate=all"]),
        NetworkDevice(device="ens23", vlan_id=7, interface_name="vlan7", bootproto="static", ip="10.0.0.1/8",
                      gateway="10.0.0.254", mtu=1400)]


def _networkmanager_reads(files: dict[str, str]) -> dict[str, list[str]]:
    import json

    probe = subprocess.run([SYSTEM_PYTHON, "-c", "import gi; gi.require_version('NM', '1.0')"], capture_output=True)
    if probe.returncode != 0:
        pytest.fail("libnm's introspection data is missing: run `bash .ci/setup` (gir1.2-nm-1.0, python3-gi)")
    result = subprocess.run([SYSTEM_PYTHON, "-c", NM_READER], input=json.dumps(files), capture_output=True,
                            text=True, timeout=60)
    assert result.returncode == 0, result.stderr
    return {Path(rel).name: problems for rel, problems in json.loads(result.stdout).items()}


def test_networkmanager_reads_and_verifies_every_generated_keyfile():
    read = _networkmanager_reads(networkmanager_files([*EVERYTHING, *MORE], MACS))
    assert len(read) == 15 and {name: problems for name, problems in read.items() if problems} == {}


def test_networkmanager_complaints_are_seen():
    """The check above can fail: a misspelt key and an inconsistent bond are reported."""
    files = networkmanager_files(BOND_VLAN)
    files["etc/NetworkManager/system-connections/metalstream-1.nmconnection"] += "never-defualt=true\n"
    files["etc/NetworkManager/system-connections/metalstream-0.nmconnection"] = files[
        "etc/NetworkManager/system-connections/metalstream-0.nmconnection"].replace("mode=active-backup",
                                                                                    "mode=balance-rr")
    read = _networkmanager_reads(files)
    assert read["metalstream-1.nmconnection"] == ["unknown key ipv6.never-defualt"]
    assert read["metalstream-0.nmconnection"] == ["bond.options: 'primary' option is only valid for "
                                                  "'mode=active-backup'"]


def test_configure_network_writes_the_images_stack_and_enables_networkd(tmp_path):
    (tmp_path / "lib/systemd/system").mkdir(parents=True)
    (tmp_path / "lib/systemd/systemd-networkd").write_text("")
    (tmp_path / "lib/systemd/system/systemd-networkd.service").write_text("")
    assert configure_network(tmp_path, BOND_VLAN) == "networkd"
    written = sorted(p.name for p in (tmp_path / "etc/systemd/network").iterdir())
    assert written == ["10-metalstream-0.netdev", "10-metalstream-0.network", "11-metalstream-1.netdev",
                       "11-metalstream-1.network", "50-metalstream-port-ens3.network",
                       "50-metalstream-port-ens4.network"]
    assert (tmp_path / "etc/resolv.conf").read_text() == "nameserver 192.0.2.53\nnameserver 2001:db8::53\n"
    assert os.readlink(tmp_path / "etc/systemd/system/multi-user.target.wants/systemd-networkd.service") == \
        "/lib/systemd/system/systemd-networkd.service"


def _plan(network: list) -> dict:
    document = Plan(image=ImageRef(name="img", url="http://192.0.2.1/img.tar.zst", sha256="0" * 64, size=1),
                    deployment_id="d-1").to_json()
    return {**document, "network": network}


def test_plan_carries_the_devices_and_older_plans_still_read():
    plan = Plan.from_json(_plan([device.to_json() for device in EVERYTHING]))
    assert plan.network == EVERYTHING
    assert Plan.from_json(plan.to_json()).network == EVERYTHING
    old = {"device": "eth0", "bootproto": "dhcp", "ip": None, "netmask": None, "gateway": None, "nameservers": [],
           "ipv6": None, "mtu": None, "onboot": True, "hostname": None, "line": None}
    assert Plan.from_json(_plan([old])).network == [NetworkDevice(device="eth0")]
    assert NetworkDevice(device="eth0").to_json() == old  # a plan without the new fields is what 1.x agents read


@pytest.mark.parametrize("device, location, message", [
    ({"device": "eth0", "vlan_id": 0}, "plan.network[0].vlan_id", "must be between 1 and 4094"),
    ({"device": "bond0", "bond_slaves": ["ens3"], "bond_options": ["mode=fast"]}, "plan.network[0].bond_options[0]",
     "must be one of"),
    ({"device": "bond0", "bond_slaves": ["ens 3"]}, "plan.network[0].bond_slaves[0]", "not an interface name"),
    ({"device": "bond0", "bond_slaves": ["ens3"], "vlan_id": 5}, "plan.network[0].bond_slaves",
     "give vlan_id and bond_slaves as separate devices"),
    ({"device": "eth0", "bootproto": "static", "ip": "192.0.2.1", "ipv6": "fe80::zz"}, "plan.network[0].ipv6",
     "must be auto, dhcp, disabled or an IPv6 address"),
    ({"device": "eth0", "ipv4_dns_search": ["bad domain"]}, "plan.network[0].ipv4_dns_search[0]",
     "not a valid host name"),
    ({"device": "br0", "bridge_slaves": ["ens3"], "bridge_options": ["colour=blue"]},
     "plan.network[0].bridge_options[0]", "unknown bridge option 'colour'"),
    ({"device": "eth0", "interface_name": "eth0.5"}, "plan.network[0].interface_name", "needs vlan_id"),
    ({"device": "eth0", "nodefroute": "yes"}, "plan.network[0].nodefroute", "expected true or false"),
])
def test_plan_errors_name_the_field(device, location, message):
    with pytest.raises(BadInput) as caught:
        Plan.from_json(_plan([device]))
    assert caught.value.location == location and message in caught.value.reason


def test_plan_checks_the_set_of_devices():
    with pytest.raises(BadInput) as caught:
        Plan.from_json(_plan([{"device": "eth0"}, {"device": "eth0", "mtu": 9000}]))
    assert (caught.value.location, caught.value.reason) == (
        "plan.network[1].device", "eth0 is configured twice (also plan.network[0])")
    document = _plan([])
    document["storage"] = {"network": [{"device": "br0", "bridge_slaves": ["ens3"]},
                                       {"device": "bond0", "bond_slaves": ["ens3"]}]}
    with pytest.raises(BadInput) as caught:
        Plan.from_json(document)
    assert caught.value.location == "plan.storage.network[1]"


def test_the_service_takes_a_hosts_devices_and_they_win_over_the_kickstarts():
    """POST /api/v1/deployments `network` (checked like the plan, located at the request's field) becomes the
    plan's `network`, replacing the deploy-time kickstart's devices."""
    from metalstream.contracts.deployspec import DeploySpec
    from pxe.plan import build_plan
    from pxe.schemas.base import parse
    from pxe.schemas.deployments import DeploymentCreate

    def check_deployment(body: dict) -> dict:
        return parse(DeploymentCreate, body).request()

    devices = [device.to_json() for device in BOND_VLAN]
    request = check_deployment({"mac": "52:54:00:00:00:01", "image": "img", "network": devices})
    kickstart = DeploySpec(network=[NetworkDevice(device="eth0", line=3)]).to_dict()
    image = {"name": "img", "url_path": "/images/img.tar.zst", "sha256": "0" * 64, "size": 1, "manifest": None}
    plan = build_plan(deployment_id="d-1", request=request, storage=kickstart, image=image,
                      base_url="http://192.0.2.1:8080", deploy_public_key=KEY)
    assert Plan.from_json(plan).network == BOND_VLAN
    without = build_plan(deployment_id="d-1", request=check_deployment({"mac": "52:54:00:00:00:01", "image": "img"}),
                         storage=kickstart, image=image, base_url="http://192.0.2.1:8080", deploy_public_key=KEY)
    assert Plan.from_json(without).network == [NetworkDevice(device="eth0")]
    with pytest.raises(BadInput) as caught:
        check_deployment({"mac": "52:54:00:00:00:01", "image": "img", "network": [{"device": "eth0", "mtu": 9}]})
    assert caught.value.location == "network[0].mtu"
