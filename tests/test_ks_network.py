"""`network` lines → the deploy spec's devices: bonds, VLANs, bridges, IPv4/IPv6 switches, DNS, MTU, binding;
every option honoured, refused at its line, or reported as ignored."""
from __future__ import annotations

from pathlib import Path

import pytest

from metalstream.contracts.network import NetworkDevice
from tarball_builder.kickstart import KickstartError, lint_kickstart, parse_deploy_kickstart

LAYOUT = "clearpart --all\npart / --fstype=ext4 --size=4096 --grow\n"


def _deploy(tmp_path: Path, lines: str) -> list[NetworkDevice]:
    path = tmp_path / "net.ks"
    path.write_text(LAYOUT + lines)
    return parse_deploy_kickstart(path).network


def _problems(tmp_path: Path, lines: str) -> list[str]:
    """Every finding, as `LINE: severity: message` (the first line after LAYOUT is line 3)."""
    path = tmp_path / "net.ks"
    path.write_text(LAYOUT + lines)
    with pytest.raises(KickstartError) as caught:
        parse_deploy_kickstart(path, strict=True)
    return [f"{d.line}: {d.severity}: {d.message}" for d in caught.value.diagnostics]


def test_noipv4_is_ipv4_disabled_not_a_bootproto_complaint(tmp_path):
    assert _deploy(tmp_path, "network --device=eth0 --noipv4 --ipv6=auto\n") == [
        NetworkDevice(device="eth0", bootproto="disabled", ipv6="auto", line=3)]


def test_bond_with_both_option_separators(tmp_path):
    devices = _deploy(tmp_path, "network --device=bond0 --bondslaves=ens3,ens4 --bondopts=mode=active-backup,"
                                "miimon=100,primary=ens3 --bootproto=dhcp\n"
                                "network --device=bond1 --bondslaves=ens5,ens6 "
                                "--bondopts=mode=2;arp_interval=200;arp_ip_target=192.0.2.1,192.0.2.2 --noipv4\n")
    assert devices == [
        NetworkDevice(device="bond0", bond_slaves=["ens3", "ens4"],
                      bond_options=["mode=active-backup", "miimon=100", "primary=ens3"], line=3),
        NetworkDevice(device="bond1", bootproto="disabled", bond_slaves=["ens5", "ens6"],
                      bond_options=["mode=balance-xor", "arp_interval=200", "arp_ip_target=192.0.2.1,192.0.2.2"],
                      line=4)]


def test_bond_with_vlanid_is_the_bond_and_an_addressed_vlan_on_it(tmp_path):
    devices = _deploy(tmp_path, "network --device=bond0 --bondslaves=ens3,ens4 --bondopts=mode=active-backup "
                                "--vlanid=42 --interfacename=vlan42 --bootproto=static --ip=192.0.2.10 "
                                "--netmask=255.255.255.0 --gateway=192.0.2.1 --nameserver=192.0.2.53 --mtu=9000\n")
    assert devices == [
        NetworkDevice(device="bond0", bootproto="disabled", ipv6="disabled", mtu=9000, bond_slaves=["ens3", "ens4"],
                      bond_options=["mode=active-backup"], line=3),
        NetworkDevice(device="bond0", bootproto="static", ip="192.0.2.10", netmask="255.255.255.0",
                      gateway="192.0.2.1", nameservers=["192.0.2.53"], mtu=9000, vlan_id=42,
                      interface_name="vlan42", line=3)]
    assert devices[1].name == "vlan42" and devices[1].kind == "vlan"


def test_bridge_ipv6_dns_and_routes(tmp_path):
    devices = _deploy(tmp_path, "network --device=br0 --bridgeslaves=ens3 --bridgeopts=stp=yes,priority=40,"
                                "forward-delay=4 --bootproto=dhcp --ipv6=2001:db8::5/64 --ipv6gateway=2001:db8::1 "
                                "--nodefroute --nodns --ipv4-dns-search=a.example,b.example "
                                "--ipv6-dns-search=c.example --onboot=no --dhcpclass=metal\n")
    assert devices == [NetworkDevice(
        device="br0", ipv6="2001:db8::5/64", ipv6_gateway="2001:db8::1", nodefroute=True, nodns=True, onboot=False,
        ipv4_dns_search=["a.example", "b.example"], ipv6_dns_search=["c.example"], bridge_slaves=["ens3"],
        bridge_options=["stp=yes", "priority=40", "forward-delay=4"], dhcp_class="metal", line=3)]


def test_device_by_mac_link_bootif_and_bindto(tmp_path):
    devices = _deploy(tmp_path, "network --device=52:54:00:AA:BB:CC --noipv6\n"
                                "network --device=ens9 --bindto=mac --ipv4-ignore-auto-dns\n"
                                "network --device=link\nnetwork --device=bootif --ipv6=dhcp --ipv6-ignore-auto-dns\n")
    assert [(d.device, d.bind_to_mac, d.ipv6, d.ipv4_ignore_auto_dns, d.ipv6_ignore_auto_dns) for d in devices] == [
        ("52:54:00:aa:bb:cc", False, "disabled", False, False), ("ens9", True, None, True, False),
        ("link", False, None, False, False), ("bootif", False, "dhcp", False, True)]


def test_hostname_spelt_either_way_sets_only_the_host_name(tmp_path):
    for spelling in ("--hostname=db-2.example.org", "--hostname db-2.example.org"):
        path = tmp_path / "h.ks"
        path.write_text(f"reqpart\n{LAYOUT}network {spelling}\n")
        spec = parse_deploy_kickstart(path, strict=True)  # not a warning either
        assert (spec.hostname, spec.network) == ("db-2.example.org", [])


def test_installer_only_options_are_listed_as_ignored(tmp_path):
    path = tmp_path / "a.ks"
    path.write_text(LAYOUT + "network --device=eth0 --bootproto=dhcp --activate --ip=192.0.2.4\n")
    ignored = [(d.line, d.severity, d.ignored) for d in lint_kickstart(path) if d.ignored]
    assert ignored == [(3, "warning", "network --activate"), (3, "warning", "network --ip")]
    assert parse_deploy_kickstart(path).network == [NetworkDevice(device="eth0", line=3)]


@pytest.mark.parametrize("line, message", [
    ("network --device=eth0 --bootproto=ibft", "network --bootproto=ibft: use dhcp or static (or --noipv4)"),
    ("network --device=eth0 --noipv4 --ip=192.0.2.1",
     "network --noipv4: no IPv4 at all, so no --bootproto, --ip, --netmask or --gateway"),
    ("network --device=eth0 --noipv6 --ipv6=auto", "network --noipv6: no IPv6 at all, so no --ipv6 or --ipv6gateway"),
    ("network --device=team0 --teamslaves=ens3,ens4",
     "network --teamslaves: teams are not supported: use a bond (--bondslaves, --bondopts)"),
    ("network --device=wlan0 --essid=home --wpakey=secret",
     "network --essid: Wi-Fi is not supported: metalstream configures wired interfaces"),
    ("network --device=eth0 --ethtool=autoneg",
     "network --ethtool: not supported: set NIC driver options in the image (a systemd .link file or NetworkManager "
     "setting written in %post)"),
    ("network --device=eth0 --vlanid=4095", "network --vlanid=4095: must be between 1 and 4094"),
    ("network --device=eth0 --vlanid=7 --interfacename=vlan8",
     "network --interfacename=vlan8: vlan8: a VLAN name starting with vlan must be vlan7"),
    ("network --device=bond0 --bondslaves=ens3 --bondopts=mode=fast",
     "network --bondopts=mode=fast: must be one of balance-rr, active-backup, balance-xor, broadcast, 802.3ad, "
     "balance-tlb, balance-alb (got 'fast')"),
    ("network --device=bond0 --bondslaves=ens3 --bondopts=miimon=often",
     "network --bondopts=miimon=often: bond option miimon must be a whole number, got 'often'"),
    ("network --device=bond0 --bondslaves=ens3 --bondopts=mode=802.3ad,primary=ens3",
     "network --bondopts=mode=802.3ad,primary=ens3: primary is for mode active-backup, balance-tlb, balance-alb, not "
     "802.3ad"),
    ("network --device=bond0 --bondslaves=ens3 --bondopts=mode=balance-xor,arp_interval=100",
     "network --bondopts=mode=balance-xor,arp_interval=100: ARP monitoring needs both arp_interval and "
     "arp_ip_target"),
    ("network --device=bond0 --bondslaves=ens3 --bondopts=mode=active-backup;primary=ens9",
     "network --bondopts=mode=active-backup,primary=ens9: primary=ens9 is not one of the bond's slaves (ens3)"),
    ("network --device=bond0 --bondslaves=ens3,this-name-is-too-long",
     "network --bondslaves=this-name-is-too-long: not an interface name: 'this-name-is-too-long' (1 to 15 of "
     "letters, digits, '_', '.', '-')"),
    ("network --device=br0 --bridgeslaves=ens3 --bridgeopts=stp=maybe",
     "network --bridgeopts=stp=maybe: bridge option stp must be yes or no, got 'maybe'"),
    ("network --device=eth0 --bootproto=static --ip=192.0.2.300 --netmask=255.255.255.0",
     "network --ip=192.0.2.300: bad address: '192.0.2.300/255.255.255.0' does not appear to be an IPv4 or IPv6 "
     "interface"),
    ("network --device=eth0 --ipv6=auto --ipv6gateway=192.0.2.1",
     "network --ipv6gateway=192.0.2.1: not an IPv6 address: '192.0.2.1'"),
    ("network --device=eth0 --mtu=12", "network --mtu=12: must be between 68 and 65535"),
    ("network --bindto=mac",
     "network --bindto=mac: binding to a MAC needs a device named by interface name or MAC (or a bond's or bridge's "
     "ports)"),
    ("network --bondslaves=ens3", "network --bondslaves needs --device (the name of the new interface, or the "
                                  "VLAN's parent)"),
])
def test_refused_options_are_errors_at_their_line(tmp_path, line, message):
    assert f"3: error: {message}" in _problems(tmp_path, line + "\n")


def test_the_set_is_checked_one_interface_one_configuration(tmp_path):
    problems = _problems(tmp_path, "network --device=bond0 --bondslaves=ens3,ens4 --noipv4\n"
                                   "network --device=ens3 --bootproto=dhcp\n")
    assert problems[-1] == ("4: error: network: ens3 is a port of bond0: it cannot have addresses of its own "
                            "(bootproto disabled, ipv6 disabled)")
    problems = _problems(tmp_path, "network --device=br0 --bridgeslaves=ens3\nnetwork --device=br1 "
                                   "--bridgeslaves=ens3\n")
    assert problems[-1] == f"4: error: network: ens3 is already a port of {tmp_path / 'net.ks'}:3"


def test_a_device_configured_twice_is_one_error_naming_both_lines_and_a_vlan_on_it_is_none(tmp_path):
    problems = _problems(tmp_path, "network --device=eth0 --bootproto=dhcp\n"
                                   "network --device=eth0 --bootproto=static --ip=192.0.2.5 --netmask=255.255.255.0\n")
    assert problems[-1:] == [f"4: error: network: --device=eth0: eth0 is configured twice (also {tmp_path / 'net.ks'}:3)"]
    assert not [p for p in problems if p.startswith("4: warning")]  # not also pykickstart's "already defined"
    vlan = "network --device=eth0 --bootproto=dhcp\n" \
           "network --device=eth0 --vlanid=100 --bootproto=static --ip=192.0.2.5 --netmask=255.255.255.0\n"
    devices = _deploy(tmp_path, vlan)
    assert [(d.device, d.vlan_id) for d in devices] == [("eth0", None), ("eth0", 100)]
    assert [p for p in _problems(tmp_path, vlan) if not p.startswith("2: ")] == []  # line 2: no boot partitions


def test_a_later_host_name_overrides_the_earlier_with_a_warning_naming_it(tmp_path):
    problems = _problems(tmp_path, "network --hostname=web1.example.org\nnetwork --hostname web2.example.org\n")
    assert problems[-1:] == [f"4: error: network --hostname: overrides the definition at {tmp_path / 'net.ks'}:3 "
                             "(--strict)"]


def test_every_option_of_the_network_command_is_honoured_ignored_or_refused():
    """A pykickstart update that adds an option fails here until the split decides what to do with it."""
    from pykickstart.version import makeVersion

    from tarball_builder.kickstart.adapter import SYNTAX_VERSION
    from tarball_builder.kickstart.network_split import HONOURED, INSTALLER_ONLY, REFUSED

    parser = makeVersion(SYNTAX_VERSION).commands["network"]._getParser()
    options = {o for action in parser._actions for o in action.option_strings if o not in ("-h", "--help")}
    assert options - {*HONOURED, *INSTALLER_ONLY, *REFUSED} == set()
    assert set(HONOURED) & (set(INSTALLER_ONLY) | set(REFUSED)) == set()
