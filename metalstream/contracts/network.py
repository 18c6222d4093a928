"""One network interface of a deployed machine: an Ethernet port, a bond, a VLAN or a bridge.

Filled by the kickstart front end from `network` lines, carried in the deploy plan (`network`, and
`storage.network`), rendered by the agent as systemd-networkd files or NetworkManager keyfiles
(deployer.network). Every field added after the first release has a default, so older documents
still read; `to_json` leaves out fields still at their default.

The kind of interface follows from the fields: `vlan_id` makes a VLAN on the parent `device`,
`bond_slaves` a bond named `device`, `bridge_slaves` a bridge named `device`; otherwise `device`
names an Ethernet port (interface name, MAC address, "link", "bootif", or None for every wired port).
"""
from __future__ import annotations

import ipaddress
from dataclasses import asdict, dataclass, field, fields
from typing import Any

from ..errors import BadInput
from . import rules

BOOTPROTOS = ("dhcp", "static", "disabled")  # disabled: no IPv4 (kickstart --noipv4)
IPV6_METHODS = ("auto", "dhcp", "disabled")  # or an address ADDR[/PREFIX]; None: the network stack's default
BOND_MODES = ("balance-rr", "active-backup", "balance-xor", "broadcast", "802.3ad", "balance-tlb", "balance-alb")
# Bond options both stacks can express; the value kinds are checked by `bond_options`.
BOND_OPTIONS = {
    "mode": "mode", "miimon": "int", "updelay": "int", "downdelay": "int", "primary": "ifname",
    "lacp_rate": ("slow", "fast", "0", "1"), "xmit_hash_policy": ("layer2", "layer3+4", "layer2+3", "encap2+3",
                                                                   "encap3+4"),
    "arp_interval": "int", "arp_ip_target": "addresses", "arp_validate": ("none", "active", "backup", "all"),
    "fail_over_mac": ("none", "active", "follow"), "ad_select": ("stable", "bandwidth", "count"),
    "min_links": "int", "primary_reselect": ("always", "better", "failure"), "all_slaves_active": ("0", "1"),
    "resend_igmp": "int", "num_grat_arp": "int", "packets_per_slave": "int", "lp_interval": "int",
}
BRIDGE_OPTIONS = {"stp": "bool", "priority": "int", "forward-delay": "int", "hello-time": "int", "max-age": "int",
                  "ageing-time": "int"}
_NEW_FIELDS_FROM = "ipv6_gateway"  # fields from this one on were added later: written only when set
WILDCARD_DEVICES = (None, "", "link", "bootif")


@dataclass
class NetworkDevice:
    device: str | None = None  # interface name, MAC, "link", "bootif" or None = all wired NICs; a VLAN's parent
    bootproto: str = "dhcp"  # dhcp | static | disabled
    ip: str | None = None
    netmask: str | None = None
    gateway: str | None = None
    nameservers: list[str] = field(default_factory=list)
    ipv6: str | None = None  # auto | dhcp | disabled | ADDR[/PREFIX] | None (the stack's default)
    mtu: int | None = None
    onboot: bool = True
    hostname: str | None = None
    line: int | None = None
    ipv6_gateway: str | None = None
    nodefroute: bool = False  # never the default route
    nodns: bool = False  # ignore DNS servers learnt from DHCP/RA
    ipv4_ignore_auto_dns: bool = False
    ipv6_ignore_auto_dns: bool = False
    ipv4_dns_search: list[str] = field(default_factory=list)
    ipv6_dns_search: list[str] = field(default_factory=list)
    bind_to_mac: bool = False  # match the port (or a bond's/bridge's ports) by MAC address, not name
    bond_slaves: list[str] = field(default_factory=list)
    bond_options: list[str] = field(default_factory=list)  # "key=value", e.g. "mode=active-backup"
    vlan_id: int | None = None
    interface_name: str | None = None  # a VLAN's own name (default DEVICE.VLANID)
    bridge_slaves: list[str] = field(default_factory=list)
    bridge_options: list[str] = field(default_factory=list)  # "key=value", e.g. "stp=yes"
    dhcp_class: str | None = None  # DHCPv4 vendor class identifier

    @property
    def kind(self) -> str:
        if self.vlan_id is not None:
            return "vlan"
        if self.bond_slaves:
            return "bond"
        if self.bridge_slaves:
            return "bridge"
        return "ethernet"

    @property
    def name(self) -> str | None:
        """The interface this device configures (a VLAN's own name), or its MAC/None/link/bootif."""
        if self.kind == "vlan":
            return self.interface_name or f"{self.device}.{self.vlan_id}"
        return self.device

    @property
    def wildcard(self) -> bool:
        return self.kind == "ethernet" and self.device in WILDCARD_DEVICES

    def options(self) -> dict[str, str]:
        return dict(option.split("=", 1) for option in (self.bond_options or self.bridge_options))

    @classmethod
    def from_json(cls, data: Any, location: str = "network") -> "NetworkDevice":
        return read_network_device(data, location)

    def to_json(self) -> dict[str, Any]:
        document = asdict(self)
        defaults = NetworkDevice()
        names = [f.name for f in fields(self)]
        for name in names[names.index(_NEW_FIELDS_FROM):]:
            if document[name] == getattr(defaults, name):
                del document[name]
        return document


def _address(value: str, location: str, version: int | None = None) -> str:
    try:
        address = ipaddress.ip_address(value)
    except ValueError:
        raise BadInput(f"not an IP address: {value!r}", location=location) from None
    if version and address.version != version:
        raise BadInput(f"not an IPv{version} address: {value!r}", location=location)
    return str(address)


def ipv4_interface(ip: str, netmask: str | None, location: str) -> ipaddress.IPv4Interface:
    """`ip` with `netmask` (dotted or a prefix length), or `ip` as ADDR/PREFIX; /24 when neither says."""
    try:
        interface = ipaddress.ip_interface(ip if "/" in ip else f"{ip}/{netmask or '24'}")
    except ValueError as exc:
        raise BadInput(f"bad address: {exc}", location=location) from None
    if interface.version != 4:
        raise BadInput(f"not an IPv4 address: {ip!r} (IPv6 addresses go in ipv6)", location=location)
    return interface


def ipv6_interface(value: str, location: str) -> ipaddress.IPv6Interface:
    try:
        interface = ipaddress.ip_interface(value if "/" in value else f"{value}/64")
    except ValueError as exc:
        raise BadInput(f"must be auto, dhcp, disabled or an IPv6 address ADDR[/PREFIX] ({exc})",
                       location=location) from None
    if interface.version != 6:
        raise BadInput(f"not an IPv6 address: {value!r}", location=location)
    return interface


def _options(items: list[str], location: str, known: dict, what: str):
    """(where, key, kind, value) of each `key=value` item, the key known to `known` (key → kind)."""
    for i, item in enumerate(items):
        where = f"{location}[{i}]"
        key, sep, value = item.partition("=")
        if not sep or not value:
            raise BadInput(f"expected key=value, got {item!r}", location=where)
        if key not in known:
            raise BadInput(f"unknown {what} option {key!r} (known: {', '.join(known)})", location=where)
        yield where, key, known[key], value


def bond_options(items: list[str], location: str) -> list[str]:
    """`key=value` bond options, checked and normalised (a numeric mode becomes its name)."""
    result = []
    for where, key, kind, value in _options(items, location, BOND_OPTIONS, "bond"):
        if kind == "mode":
            value = BOND_MODES[int(value)] if value.isdigit() and int(value) < len(BOND_MODES) else value
            rules.one_of(value, BOND_MODES, where)
        elif kind == "int":
            if not value.isdigit():
                raise BadInput(f"bond option {key} must be a whole number, got {value!r}", location=where)
        elif kind == "ifname":
            rules.interface_name(value, where)
        elif kind == "addresses":
            value = ",".join(_address(a, where, 4) for a in value.split(","))
        elif value not in kind:
            raise BadInput(f"bond option {key} must be one of {', '.join(kind)}, got {value!r}", location=where)
        result.append(f"{key}={value}")
    return result


def bridge_options(items: list[str], location: str) -> list[str]:
    result = []
    for where, key, kind, value in _options(items, location, BRIDGE_OPTIONS, "bridge"):
        if kind == "bool":
            if value.lower() not in ("yes", "no", "true", "false", "1", "0", "on", "off"):
                raise BadInput(f"bridge option {key} must be yes or no, got {value!r}", location=where)
            value = "yes" if value.lower() in ("yes", "true", "1", "on") else "no"
        elif not value.isdigit():
            raise BadInput(f"bridge option {key} must be a whole number, got {value!r}", location=where)
        result.append(f"{key}={value}")
    return result


def _port(value: str, location: str) -> str:
    """A bond or bridge port: an interface name or a MAC address."""
    try:
        return rules.mac(value, location)
    except BadInput:
        return rules.interface_name(value, location)


def check_network_device(device: NetworkDevice, location: str) -> NetworkDevice:
    """Check one device's fields (BadInput located at `location.FIELD`); normalises in place and returns it."""
    at = lambda name: rules.field(location, name)  # noqa: E731
    rules.one_of(device.bootproto, BOOTPROTOS, at("bootproto"))
    if device.device not in WILDCARD_DEVICES:
        device.device = _port(device.device, at("device"))
    elif device.kind != "ethernet":
        raise BadInput(f"a {device.kind} needs a device name", location=at("device"))
    if device.bootproto == "static":
        if not device.ip:
            raise BadInput("a static address needs ip (and netmask or ip/prefix)", location=at("ip"))
        ipv4_interface(device.ip, device.netmask, at("ip"))
    elif device.ip or device.netmask:
        raise BadInput(f"an address is given but bootproto is {device.bootproto}", location=at("ip"))
    if device.gateway:
        device.gateway = _address(device.gateway, at("gateway"), 4)
        if device.bootproto != "static":
            raise BadInput("a gateway needs bootproto static", location=at("gateway"))
    device.nameservers = [_address(ns, f"{at('nameservers')}[{i}]") for i, ns in enumerate(device.nameservers)]
    if device.ipv6 is not None and device.ipv6 not in IPV6_METHODS:
        ipv6_interface(device.ipv6, at("ipv6"))
    if device.ipv6_gateway:
        device.ipv6_gateway = _address(device.ipv6_gateway, at("ipv6_gateway"), 6)
        if device.ipv6 in (None, "disabled"):
            raise BadInput("an IPv6 gateway needs ipv6 (auto, dhcp or an address)", location=at("ipv6_gateway"))
    if device.mtu is not None:
        rules.integer(device.mtu, at("mtu"), minimum=68, maximum=65535)
    for key in ("ipv4_dns_search", "ipv6_dns_search"):
        setattr(device, key, [rules.hostname(d, f"{at(key)}[{i}]") for i, d in enumerate(getattr(device, key))])
    if device.hostname is not None:
        device.hostname = rules.hostname(device.hostname, at("hostname"))
    if device.bind_to_mac and (device.wildcard or device.kind == "vlan"):
        raise BadInput("binding to a MAC needs a device named by interface name or MAC (or a bond's or bridge's "
                       "ports)", location=at("bind_to_mac"))
    if device.dhcp_class is not None:
        rules.text(device.dhcp_class, at("dhcp_class"), max_length=255, allow_empty=False)
    _check_virtual(device, at)
    return device


def _check_virtual(device: NetworkDevice, at) -> None:
    kinds = [name for name, on in (("vlan_id", device.vlan_id is not None), ("bond_slaves", device.bond_slaves),
                                   ("bridge_slaves", device.bridge_slaves)) if on]
    if len(kinds) > 1:
        raise BadInput(f"one device is one interface: give {' and '.join(kinds)} as separate devices "
                       "(the VLAN's device names the bond)", location=at(kinds[1]))
    if device.vlan_id is not None:
        rules.vlan_id(device.vlan_id, at("vlan_id"))
        if rules.is_mac(device.device):
            raise BadInput("a VLAN's parent must be an interface name", location=at("device"))
    if device.interface_name is not None:
        if device.vlan_id is None:
            raise BadInput("interface_name names a VLAN: it needs vlan_id", location=at("interface_name"))
        rules.vlan_interface_name(device.interface_name, device.vlan_id, at("interface_name"))
    if device.kind in ("bond", "bridge") and rules.is_mac(device.device):
        raise BadInput(f"a {device.kind} is named by its interface name, not a MAC", location=at("device"))
    device.bond_slaves = [_port(p, f"{at('bond_slaves')}[{i}]") for i, p in enumerate(device.bond_slaves)]
    device.bridge_slaves = [_port(p, f"{at('bridge_slaves')}[{i}]") for i, p in enumerate(device.bridge_slaves)]
    if device.bond_options and not device.bond_slaves:
        raise BadInput("bond options need bond_slaves", location=at("bond_options"))
    if device.bridge_options and not device.bridge_slaves:
        raise BadInput("bridge options need bridge_slaves", location=at("bridge_options"))
    device.bond_options = bond_options(device.bond_options, at("bond_options"))
    device.bridge_options = bridge_options(device.bridge_options, at("bridge_options"))
    if device.bond_options:
        _check_bond_combination(device, at("bond_options"))


# Options the kernel's bonding driver (and NetworkManager's check) take only in some modes.
_BOND_MODES_OF = {"primary": ("active-backup", "balance-tlb", "balance-alb"), "lacp_rate": ("802.3ad",),
                  "ad_select": ("802.3ad",), "arp_interval": ("balance-rr", "active-backup", "balance-xor",
                                                              "broadcast")}


def _check_bond_combination(device: NetworkDevice, location: str) -> None:
    options = device.options()
    mode = options.get("mode", "balance-rr")
    for key, modes in _BOND_MODES_OF.items():
        if key in options and mode not in modes:
            raise BadInput(f"{key} is for mode {', '.join(modes)}, not {mode}", location=location)
    if ("arp_interval" in options) != ("arp_ip_target" in options):
        raise BadInput("ARP monitoring needs both arp_interval and arp_ip_target", location=location)
    primary = options.get("primary")
    if primary and primary not in device.bond_slaves:
        raise BadInput(f"primary={primary} is not one of the bond's slaves ({', '.join(device.bond_slaves)})",
                       location=location)


def check_network(devices: list[NetworkDevice], location: str) -> list[NetworkDevice]:
    """Each device (`check_network_device`), then the set: one configuration per interface, a port in at most
    one bond or bridge and without addresses of its own."""
    for i, device in enumerate(devices):
        check_network_device(device, f"{location}[{i}]")
    named: dict[str, int] = {}
    for i, device in enumerate(devices):
        if device.wildcard:
            continue
        if device.name in named:
            raise BadInput(f"{device.name} is configured twice (also {location}[{named[device.name]}])",
                           location=f"{location}[{i}].device")
        named[device.name] = i
    ports: dict[str, int] = {}
    for i, device in enumerate(devices):
        for port in (*device.bond_slaves, *device.bridge_slaves):
            if port in ports:
                raise BadInput(f"{port} is already a port of {location}[{ports[port]}]", location=f"{location}[{i}]")
            ports[port] = i
            own = named.get(port)
            addressed = own is not None and (devices[own].bootproto != "disabled"
                                             or devices[own].ipv6 not in (None, "disabled"))
            if addressed:
                raise BadInput(f"{port} is a port of {device.name}: it cannot have addresses of its own "
                               "(bootproto disabled, ipv6 disabled)", location=f"{location}[{own}]")
    return devices


def read_network_device(data: Any, location: str) -> NetworkDevice:
    from .deployspec import from_dict  # deployspec re-exports NetworkDevice from here
    rules.expect_object(data, location)  # from_dict reads null as "absent", which a list item cannot be
    return check_network_device(from_dict(NetworkDevice, data, location), location)
