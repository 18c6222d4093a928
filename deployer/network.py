"""The deployed machine's network: systemd-networkd files (Debian images) or NetworkManager keyfiles (RPM
images), from the plan's network devices (metalstream.contracts.network).

`networkd_files` and `networkmanager_files` are pure: devices in, {path relative to the target root: text}
out. `configure_network` picks the image's stack and writes them. Ethernet ports, bonds, VLANs and
bridges; a bond's or bridge's ports need no device of their own (they get a port file), a VLAN's
parent neither.
"""
from __future__ import annotations

import ipaddress
import logging
import os
import uuid
from pathlib import Path

from metalstream.contracts.network import NetworkDevice, ipv4_interface, ipv6_interface
from metalstream.errors import OperationFailed
from metalstream.rootfs import writable_path, write_file

log = logging.getLogger("metalstream.network")
WIRED_GLOB = "en* eth*"
SYS_CLASS_NET = Path("/sys/class/net")
NETWORKD_DIR = "etc/systemd/network"
NM_DIR = "etc/NetworkManager/system-connections"

# bond option → (networkd [Bond] key, how the value is written)
_NETWORKD_BOND = {
    "mode": ("Mode", str), "miimon": ("MIIMonitorSec", "ms"), "updelay": ("UpDelaySec", "ms"),
    "downdelay": ("DownDelaySec", "ms"), "lacp_rate": ("LACPTransmitRate", {"0": "slow", "1": "fast"}),
    "xmit_hash_policy": ("TransmitHashPolicy", str), "arp_interval": ("ARPIntervalSec", "ms"),
    "arp_ip_target": ("ARPIPTargets", lambda v: " ".join(v.split(","))), "arp_validate": ("ARPValidate", str),
    "fail_over_mac": ("FailOverMACPolicy", str), "ad_select": ("AdSelect", str), "min_links": ("MinLinks", str),
    "primary_reselect": ("PrimaryReselectPolicy", str),
    "all_slaves_active": ("AllSlavesActive", {"0": "no", "1": "yes"}),
    "resend_igmp": ("ResendIGMP", str), "num_grat_arp": ("GratuitousARP", str),
    "packets_per_slave": ("PacketsPerSlave", str), "lp_interval": ("LearnPacketIntervalSec", str),
}
_NETWORKD_BRIDGE = {"stp": "STP", "priority": "Priority", "forward-delay": "ForwardDelaySec",
                    "hello-time": "HelloTimeSec", "max-age": "MaxAgeSec", "ageing-time": "AgeingTimeSec"}


def _networkd_value(how, value: str) -> str:
    if how == "ms":
        return f"{value}ms"
    if isinstance(how, dict):
        return how.get(value, value)
    return how(value)


class _Topology:
    """Who is whose port, which VLANs sit on which parent, and how to find a port by MAC."""

    def __init__(self, devices: list[NetworkDevice], macs: dict[str, str]):
        self.devices = devices
        self.macs = macs
        self.master: dict[str, NetworkDevice] = {}
        self.vlans: dict[str, list[str]] = {}
        for device in devices:
            for port in (*device.bond_slaves, *device.bridge_slaves):
                self.master[port] = device
            if device.kind == "vlan":
                self.vlans.setdefault(device.device, []).append(device.name)
        self.configured = {d.name for d in devices if not d.wildcard}

    def mac_of(self, name: str, bind: bool) -> str | None:
        """The MAC to match `name` by: `name` itself when it is one, else its MAC when binding by MAC."""
        if _is_mac(name):
            return name.lower()
        if not bind:
            return None
        mac = self.macs.get(name)
        if mac is None:
            log.warning("--bindto=mac: %s has no known MAC address on this machine: matched by name", name)
        return mac

    def primary(self, port: str) -> bool:
        master = self.master.get(port)
        return bool(master and master.kind == "bond" and master.options().get("primary") == port)

    def extra_ports(self) -> list[str]:
        """Ports and VLAN parents that no device configures: they get a file of their own."""
        names = [p for d in self.devices for p in (*d.bond_slaves, *d.bridge_slaves)]
        names += [parent for parent in self.vlans]
        return [n for n in dict.fromkeys(names) if n not in self.configured]


def _is_mac(value: str | None) -> bool:
    return bool(value) and len(value.replace(":", "")) == 12 and value.count(":") == 5


def _nameservers(device: NetworkDevice, version: int) -> list[str]:
    return [ns for ns in device.nameservers if ipaddress.ip_address(ns).version == version]


# ---------------------------------------------------------------- systemd-networkd

def _networkd_match(device: NetworkDevice, topology: _Topology) -> str:
    if device.wildcard:
        return f"Name={WIRED_GLOB}"
    if device.kind != "ethernet":
        return f"Name={device.name}"
    mac = topology.mac_of(device.device, device.bind_to_mac or _bound_port(device.device, topology))
    if mac:
        # a bond takes its first port's MAC: a port is matched by the address it was made with
        key = "PermanentMACAddress" if device.device in topology.master else "MACAddress"
        return f"{key}={mac}"
    return f"Name={device.device}"


def _bound_port(name: str, topology: _Topology) -> bool:
    master = topology.master.get(name)
    return bool(master and master.bind_to_mac)


def _dhcp(device: NetworkDevice) -> str | None:
    """networkd's DHCP=: DHCPv6 goes with DHCPv4 unless IPv6 is off or static (networkd starts DHCPv6 when a
    router advertisement asks for it)."""
    if device.bootproto == "dhcp":
        return "yes" if device.ipv6 in (None, "auto", "dhcp") else "ipv4"
    return "ipv6" if device.ipv6 == "dhcp" else None


def _networkd_network(device: NetworkDevice, topology: _Topology) -> list[str]:
    """The [Network] and later sections of a device that has addresses of its own (or none, deliberately)."""
    lines = ["[Network]"]
    dhcp = _dhcp(device)
    if dhcp:
        lines.append(f"DHCP={dhcp}")
    if device.bootproto == "static":
        lines.append(f"Address={ipv4_interface(device.ip, device.netmask, 'ip')}")
        if device.gateway and not device.nodefroute:
            lines.append(f"Gateway={device.gateway}")
    if device.ipv6 not in (None, "auto", "dhcp", "disabled"):
        lines.append(f"Address={ipv6_interface(device.ipv6, 'ipv6')}")
    if device.ipv6_gateway and not device.nodefroute:
        lines.append(f"Gateway={device.ipv6_gateway}")
    lines += [f"DNS={ns}" for ns in device.nameservers]
    domains = list(dict.fromkeys([*device.ipv4_dns_search, *device.ipv6_dns_search]))
    if domains:
        lines.append("Domains=" + " ".join(domains))
    if device.ipv6 == "auto":
        lines.append("IPv6AcceptRA=yes")
    elif device.ipv6 is not None:
        lines.append("IPv6AcceptRA=no" if device.ipv6 == "disabled" or dhcp not in ("ipv6", "yes") else
                     "IPv6AcceptRA=yes")
    if device.ipv6 == "disabled":
        lines.append("LinkLocalAddressing=no")
    lines += [f"VLAN={vlan}" for vlan in topology.vlans.get(device.name, [])]
    no_dns4 = device.nodns or device.ipv4_ignore_auto_dns
    no_dns6 = device.nodns or device.ipv6_ignore_auto_dns
    if device.bootproto == "dhcp" and (no_dns4 or device.nodefroute or device.dhcp_class):
        lines += ["", "[DHCPv4]"]
        lines += ["UseDNS=no"] if no_dns4 else []
        lines += ["UseGateway=no"] if device.nodefroute else []
        lines += [f"VendorClassIdentifier={device.dhcp_class}"] if device.dhcp_class else []
    if device.ipv6 == "dhcp":
        lines += ["", "[DHCPv6]", "WithoutRA=solicit"] + (["UseDNS=no"] if no_dns6 else [])
    if device.ipv6 in ("auto", "dhcp") and (no_dns6 or device.nodefroute):
        lines += ["", "[IPv6AcceptRA]"]
        lines += ["UseDNS=no"] if no_dns6 else []
        lines += ["UseGateway=no"] if device.nodefroute else []
    return lines


def _networkd_link(device: NetworkDevice | None) -> list[str]:
    link = []
    if device and device.mtu:
        link.append(f"MTUBytes={device.mtu}")
    if device and not device.onboot:
        link += ["ActivationPolicy=manual", "RequiredForOnline=no"]
    return ["", "[Link]", *link] if link else []


def _networkd_port(name: str, device: NetworkDevice | None, topology: _Topology) -> list[str]:
    """[Network] of a bond's or bridge's port, or of a VLAN parent without addresses."""
    master = topology.master.get(name)
    lines = ["[Network]"]
    if master is not None:
        lines.append(f"{'Bond' if master.kind == 'bond' else 'Bridge'}={master.name}")
        if topology.primary(name):
            lines.append("PrimarySlave=yes")
    else:
        lines.append("LinkLocalAddressing=no")
    lines += [f"VLAN={vlan}" for vlan in topology.vlans.get(name, [])]
    return lines


def _networkd_netdev(device: NetworkDevice) -> str:
    lines = ["# written by metalstream", "[NetDev]", f"Name={device.name}", f"Kind={device.kind}"]
    if device.kind == "vlan":
        lines += ["", "[VLAN]", f"Id={device.vlan_id}"]
    elif device.kind == "bond":
        options = [(k, v) for k, v in device.options().items() if k != "primary"]
        lines += ["", "[Bond]"] + [f"{_NETWORKD_BOND[k][0]}={_networkd_value(_NETWORKD_BOND[k][1], v)}"
                                   for k, v in options]
    elif device.kind == "bridge":
        lines += ["", "[Bridge]"] + [f"{_NETWORKD_BRIDGE[k]}={v}" for k, v in device.options().items()]
    return "\n".join(lines) + "\n"


def networkd_files(devices: list[NetworkDevice], macs: dict[str, str] | None = None) -> dict[str, str]:
    """systemd-networkd .netdev and .network files: specific devices first (lower numbers win), ports and VLAN
    parents next, wildcard DHCP last. `macs` (interface name → MAC) serves --bindto=mac."""
    topology = _Topology(devices, macs or {})
    files = {}
    for i, dev in enumerate(devices):
        stem = f"{NETWORKD_DIR}/{90 if dev.wildcard else 10 + i}-metalstream-{i}"
        if dev.kind != "ethernet":
            files[f"{stem}.netdev"] = _networkd_netdev(dev)
        body = (_networkd_port(dev.name, dev, topology) if dev.name in topology.master
                else _networkd_network(dev, topology))
        lines = ["# written by metalstream", "[Match]", _networkd_match(dev, topology), "", *body, *_networkd_link(dev)]
        files[f"{stem}.network"] = "\n".join(lines) + "\n"
    for name in topology.extra_ports():
        mac = topology.mac_of(name, _bound_port(name, topology))
        match = f"PermanentMACAddress={mac}" if mac else f"Name={name}"
        lines = ["# written by metalstream", "[Match]", match, "", *_networkd_port(name, None, topology)]
        files[f"{NETWORKD_DIR}/50-metalstream-port-{name.replace(':', '')}.network"] = "\n".join(lines) + "\n"
    return files


# ---------------------------------------------------------------- NetworkManager

def _nm_text(sections: dict[str, list[str]]) -> str:
    """A keyfile; a section may be empty (NetworkManager needs `[ethernet]` on an Ethernet connection and
    `[bridge-port]` on a bridge's port, even without keys)."""
    return "\n\n".join(f"[{name}]" + "".join(f"\n{line}" for line in lines) for name, lines in sections.items()) + "\n"


def _nm_connection(connection_id: str, kind: str, onboot: bool, priority: int) -> list[str]:
    return [f"id={connection_id}", f"uuid={uuid.uuid5(uuid.NAMESPACE_URL, f'metalstream/{connection_id}')}",
            f"type={kind}", f"autoconnect={'true' if onboot else 'false'}", f"autoconnect-priority={priority}"]


def _nm_ip(device: NetworkDevice) -> dict[str, list[str]]:
    # never-default (nodefroute) and a gateway exclude each other in NetworkManager: no gateway then
    gateway4 = device.gateway if not device.nodefroute else None
    gateway6 = device.ipv6_gateway if not device.nodefroute else None
    ipv4 = ["method=" + {"dhcp": "auto", "static": "manual", "disabled": "disabled"}[device.bootproto]]
    if device.bootproto == "static":
        ipv4.append(f"address1={ipv4_interface(device.ip, device.netmask, 'ip')}"
                    + (f",{gateway4}" if gateway4 else ""))
    ipv6_method = {None: "ignore", "auto": "auto", "dhcp": "dhcp", "disabled": "disabled"}.get(device.ipv6, "manual")
    ipv6 = [f"method={ipv6_method}"]
    if ipv6_method == "manual":
        ipv6.append(f"address1={ipv6_interface(device.ipv6, 'ipv6')}" + (f",{gateway6}" if gateway6 else ""))
    elif gateway6:
        ipv6.append(f"gateway={gateway6}")
    for lines, version, search, ignore in ((ipv4, 4, device.ipv4_dns_search, device.ipv4_ignore_auto_dns),
                                           (ipv6, 6, device.ipv6_dns_search, device.ipv6_ignore_auto_dns)):
        if lines[0] in ("method=disabled", "method=ignore"):
            continue
        servers = _nameservers(device, version)
        lines += ["dns=" + ";".join(servers) + ";"] if servers else []
        lines += ["dns-search=" + ";".join(search) + ";"] if search else []
        lines += ["ignore-auto-dns=true"] if device.nodns or ignore else []
        lines += ["never-default=true"] if device.nodefroute else []
    if device.dhcp_class and device.bootproto == "dhcp":
        ipv4.append(f"dhcp-vendor-class-identifier={device.dhcp_class}")
    return {"ipv4": ipv4, "ipv6": ipv6}


def networkmanager_files(devices: list[NetworkDevice], macs: dict[str, str] | None = None) -> dict[str, str]:
    """NetworkManager keyfiles, one connection per device and per port without a device of its own."""
    topology = _Topology(devices, macs or {})
    files = {}
    for i, dev in enumerate(devices):
        connection_id = f"metalstream-{i}"
        kind = dev.kind
        sections: dict[str, list[str]] = {"connection": _nm_connection(connection_id, kind, dev.onboot,
                                                                      0 if dev.wildcard else 10)}
        ethernet = [f"mtu={dev.mtu}"] if dev.mtu else []
        if dev.wildcard:
            sections["match"] = ["interface-name=" + ";".join(WIRED_GLOB.split())]
        elif kind == "ethernet" and (mac := topology.mac_of(dev.device, dev.bind_to_mac
                                                            or _bound_port(dev.device, topology))):
            ethernet.insert(0, f"mac-address={mac.upper()}")
        else:
            sections["connection"].insert(2, f"interface-name={dev.name}")
        if kind in ("bond", "bridge"):
            sections["connection"].append("autoconnect-slaves=1")
        if dev.name in topology.master:
            sections.update(_nm_port_of(dev.name, topology, sections["connection"]))
        if kind == "ethernet" or ethernet:
            sections["ethernet"] = ethernet
        if kind == "bond":
            sections["bond"] = [f"{k}={v}" for k, v in dev.options().items()] or ["mode=balance-rr"]
        elif kind == "bridge":
            sections["bridge"] = [f"{k}={_nm_bridge_value(k, v)}" for k, v in dev.options().items()]
        elif kind == "vlan":
            sections["vlan"] = [f"id={dev.vlan_id}", f"parent={dev.device}"]
        if dev.name not in topology.master:
            sections.update(_nm_ip(dev))
        files[f"{NM_DIR}/{connection_id}.nmconnection"] = _nm_text(sections)
    for name in topology.extra_ports():
        if name not in topology.master:
            continue  # a VLAN's parent: the VLAN connection names it, NetworkManager needs no more
        connection_id = f"metalstream-port-{name.replace(':', '')}"
        sections = {"connection": _nm_connection(connection_id, "ethernet", True, 10)}
        mac = topology.mac_of(name, _bound_port(name, topology))
        if not mac:
            sections["connection"].insert(2, f"interface-name={name}")
        sections.update(_nm_port_of(name, topology, sections["connection"]))
        sections["ethernet"] = [f"mac-address={mac.upper()}"] if mac else []
        files[f"{NM_DIR}/{connection_id}.nmconnection"] = _nm_text(sections)
    return files


def _nm_port_of(name: str, topology: _Topology, connection: list[str]) -> dict[str, list[str]]:
    """Make `connection` a port of its bond or bridge; the sections a port needs besides."""
    master = topology.master[name]
    connection += [f"master={master.name}", f"slave-type={master.kind}"]
    return {"bridge-port": []} if master.kind == "bridge" else {}


def _nm_bridge_value(key: str, value: str) -> str:
    return ("true" if value == "yes" else "false") if key == "stp" else value


# ---------------------------------------------------------------- writing into the target

def _exists_any(root: Path, *rels: str) -> bool:
    return any(os.path.lexists(root / r) for r in rels)


def network_stack(root: Path) -> str:
    if _exists_any(root, "usr/sbin/NetworkManager", "sbin/NetworkManager"):
        return "networkmanager"
    if _exists_any(root, "usr/lib/systemd/systemd-networkd", "lib/systemd/systemd-networkd"):
        return "networkd"
    return "none"


def _enable_unit(root: Path, unit: str, wanted_by: str) -> None:
    for base in ("usr/lib/systemd/system", "lib/systemd/system"):
        if os.path.lexists(root / base / unit):
            link = writable_path(root, f"etc/systemd/system/{wanted_by}.wants/{unit}")
            link.unlink(missing_ok=True)
            os.symlink(f"/{base}/{unit}", link)
            return


def interface_macs(sys_class_net: Path = SYS_CLASS_NET) -> dict[str, str]:
    """This machine's interface names and MAC addresses (for --bindto=mac), as the running kernel sees them."""
    macs = {}
    for entry in sorted(sys_class_net.glob("*")) if sys_class_net.is_dir() else []:
        try:
            macs[entry.name] = (entry / "address").read_text().strip().lower()
        except OSError:
            continue
    return macs


def configure_network(root: Path, devices: list[NetworkDevice], macs: dict[str, str] | None = None) -> str:
    """Write the network configuration the image's own stack reads; returns the stack used."""
    devices = devices or [NetworkDevice(device=None, bootproto="dhcp")]
    if macs is None and any(d.bind_to_mac for d in devices):
        macs = interface_macs()
    stack = network_stack(root)
    if stack == "networkmanager":
        for rel, text in networkmanager_files(devices, macs).items():
            write_file(root, rel, text, mode=0o600)
    elif stack == "networkd":
        for rel, text in networkd_files(devices, macs).items():
            write_file(root, rel, text)
        _enable_unit(root, "systemd-networkd.service", "multi-user.target")
        _enable_unit(root, "systemd-networkd.socket", "sockets.target")
        nameservers = [ns for d in devices for ns in d.nameservers]
        resolved = _exists_any(root, "usr/lib/systemd/systemd-resolved", "lib/systemd/systemd-resolved")
        if nameservers and not resolved:
            write_file(root, "etc/resolv.conf", "".join(f"nameserver {ns}\n" for ns in nameservers))
    else:
        raise OperationFailed("the image has neither NetworkManager nor systemd-networkd: cannot configure its "
                              "network (metalstream writes NetworkManager keyfiles or systemd-networkd files)")
    return stack
