"""`network` lines → the deploy spec's network devices (metalstream.contracts.network).

Every option is honoured, refused with a located error, or (when it only concerns the installer's own
environment) reported as ignored; none is dropped silently. Values go through the contract's checks, so
a kickstart lints clean exactly when the plan reader and the agent accept its network.
"""
from __future__ import annotations

import re
from dataclasses import replace

from metalstream.contracts import rules
from metalstream.contracts.network import NetworkDevice, check_network, check_network_device
from metalstream.errors import BadInput

from .adapter import Parsed
from .diagnostics import Findings

# NetworkDevice field → the kickstart option that sets it (for messages).
OPTION_OF = {
    "device": "--device", "bootproto": "--bootproto", "ip": "--ip", "netmask": "--netmask", "gateway": "--gateway",
    "nameservers": "--nameserver", "ipv6": "--ipv6", "mtu": "--mtu", "hostname": "--hostname",
    "ipv6_gateway": "--ipv6gateway", "ipv4_dns_search": "--ipv4-dns-search", "ipv6_dns_search": "--ipv6-dns-search",
    "bond_slaves": "--bondslaves", "bond_options": "--bondopts", "vlan_id": "--vlanid",
    "interface_name": "--interfacename", "bridge_slaves": "--bridgeslaves", "bridge_options": "--bridgeopts",
    "dhcp_class": "--dhcpclass", "bind_to_mac": "--bindto",
}
# Options whose values the deploy spec carries (the rest of the parser's options are INSTALLER_ONLY or REFUSED).
HONOURED = (*OPTION_OF.values(), "--noipv4", "--noipv6", "--nodefroute", "--nodns", "--ipv4-ignore-auto-dns",
            "--ipv6-ignore-auto-dns", "--onboot")
INSTALLER_ONLY = {
    "--activate": "it activates the device in the installer; the deployed machine follows --onboot",
    "--no-activate": "it keeps the device down in the installer; the deployed machine follows --onboot",
    "--notksdevice": "it concerns the installer's own network device",
}
REFUSED = {
    "--teamslaves": "teams are not supported: use a bond (--bondslaves, --bondopts)",
    "--teamconfig": "teams are not supported: use a bond (--bondslaves, --bondopts)",
    "--essid": "Wi-Fi is not supported: metalstream configures wired interfaces",
    "--wepkey": "Wi-Fi is not supported: metalstream configures wired interfaces",
    "--wpakey": "Wi-Fi is not supported: metalstream configures wired interfaces",
    "--ethtool": "not supported: set NIC driver options in the image (a systemd .link file or NetworkManager "
                 "setting written in %post)",
}


def split_network(parsed: Parsed, findings: Findings, original) -> tuple[list[NetworkDevice], str | None]:
    """The devices of every `network` line, and the host name (the last `--hostname`)."""
    devices: list[NetworkDevice] = []
    lines: list[int] = []
    hostname, hostname_line = None, None
    for data in parsed.handler.network.network:
        line = data.lineno
        given = _options(parsed.args_of(line))
        if data.hostname:
            if hostname_line is not None:
                findings.warn(line, f"network --hostname: overrides the definition at {findings.place(hostname_line)}")
            hostname = findings.check(line, rules.hostname, data.hostname, f"network --hostname={data.hostname}")
            hostname_line = line
        if given <= {"--hostname"}:
            continue  # `network --hostname=x` (or `--hostname x`) sets the host name only
        for option in sorted(given & set(INSTALLER_ONLY)):
            _ignore(findings, line, f"network {option}", INSTALLER_ONLY[option])
        refused = sorted(given & set(REFUSED))
        for option in refused:
            findings.error(line, f"network {option}: {REFUSED[option]}")
        made = _devices(data, given, line, findings, original(line))
        if made is None or refused:
            continue
        for device in made:
            if _checked(device, line, findings):
                devices.append(device)
                lines.append(line)
    try:
        check_network(devices, "network")
    except BadInput as exc:
        index = int(m.group(1)) if (m := re.match(r"network\[(\d+)\]", exc.location or "")) else None
        reason = re.sub(r"\bnetwork\[(\d+)\]", lambda m: findings.place(lines[int(m.group(1))]), _reason(exc, devices))
        findings.error(lines[index] if index is not None else lines[-1], f"network: {reason}")
    return devices, hostname


def _options(args: list[str]) -> set[str]:
    return {arg.split("=", 1)[0] for arg in args if arg.startswith("--")}


def _ignore(findings: Findings, line: int, what: str, reason: str) -> None:
    ignore = getattr(findings, "ignore", None)
    if ignore:
        ignore(line, what, f"ignored: {reason}")
    else:
        findings.warn(line, f"{what}: ignored: {reason}")


def _split_list(text: str | None) -> list[str]:
    return [item.strip() for item in (text or "").split(",") if item.strip()]


def _bond_options(text: str) -> list[str]:
    """anaconda's --bondopts: `;`-separated when the text has a `;` (so values may hold commas), else `,`."""
    separator = ";" if ";" in text else ","
    return [item.strip() for item in text.split(separator) if item.strip()]


def _devices(data, given: set[str], line: int, findings: Findings, at: int | None) -> list[NetworkDevice] | None:
    """The device(s) of one line; a bond or bridge with --vlanid is two: the bond, and the VLAN on it."""
    ok = True
    bootproto = "dhcp" if data.bootProto == "bootp" else data.bootProto
    if data.noipv4:
        if given & {"--bootproto", "--ip", "--netmask", "--gateway"}:
            findings.error(line, "network --noipv4: no IPv4 at all, so no --bootproto, --ip, --netmask or --gateway")
            ok = False
        bootproto = "disabled"
    elif bootproto not in ("dhcp", "static"):
        findings.error(line, f"network --bootproto={data.bootProto}: use dhcp or static (or --noipv4)")
        ok = False
    ip, netmask, gateway = data.ip or None, data.netmask or None, data.gateway or None
    if bootproto == "dhcp":
        for option, value in (("--ip", ip), ("--netmask", netmask), ("--gateway", gateway)):
            if value:
                _ignore(findings, line, f"network {option}", "an address from DHCP (--bootproto=dhcp)")
        ip = netmask = gateway = None
    if bootproto == "static" and not (data.ip and data.netmask) and "/" not in (data.ip or ""):
        findings.error(line, "network --bootproto=static needs --ip and --netmask (or --ip=ADDR/PREFIX)")
        ok = False
    ipv6 = "disabled" if data.noipv6 else (data.ipv6 or None)
    if data.noipv6 and (data.ipv6 or data.ipv6gateway):
        findings.error(line, "network --noipv6: no IPv6 at all, so no --ipv6 or --ipv6gateway")
        ok = False
    mtu = None
    if data.mtu:
        if not str(data.mtu).isdigit():
            findings.error(line, f"network --mtu={data.mtu}: not a number")
            ok = False
        else:
            mtu = int(data.mtu)
    vlan_id = None
    if data.vlanid:
        if not str(data.vlanid).isdigit():
            findings.error(line, f"network --vlanid={data.vlanid}: not a number (1 to 4094)")
            ok = False
        else:
            vlan_id = int(data.vlanid)
    virtual = [flag for flag, on in (("--bondslaves", data.bondslaves), ("--bridgeslaves", data.bridgeslaves),
                                     ("--vlanid", data.vlanid)) if on]
    if virtual and not data.device:
        findings.error(line, f"network {virtual[0]} needs --device (the name of the new interface, or the VLAN's "
                             "parent)")
        ok = False
    if data.bondslaves and data.bridgeslaves:
        findings.error(line, "network --bondslaves and --bridgeslaves: one line makes one bond or one bridge (name "
                             "the bond in the bridge's --bridgeslaves on another line)")
        ok = False
    if not ok:
        return None
    device = NetworkDevice(
        device=data.device or None, bootproto=bootproto, ip=ip, netmask=netmask, gateway=gateway,
        nameservers=_split_list(data.nameserver), ipv6=ipv6, mtu=mtu, onboot=bool(data.onboot),
        hostname=data.hostname or None, line=at, ipv6_gateway=data.ipv6gateway or None,
        nodefroute=bool(data.nodefroute), nodns=bool(data.nodns),
        ipv4_ignore_auto_dns=bool(getattr(data, "ipv4_ignore_auto_dns", False)),
        ipv6_ignore_auto_dns=bool(getattr(data, "ipv6_ignore_auto_dns", False)),
        ipv4_dns_search=_split_list(getattr(data, "ipv4_dns_search", None)),
        ipv6_dns_search=_split_list(getattr(data, "ipv6_dns_search", None)),
        bind_to_mac=data.bindto == "mac", bond_slaves=_split_list(data.bondslaves),
        bond_options=_bond_options(data.bondopts or ""), vlan_id=vlan_id,
        interface_name=data.interfacename or None, bridge_slaves=_split_list(data.bridgeslaves),
        bridge_options=_split_list(data.bridgeopts), dhcp_class=data.dhcpclass or None)
    if vlan_id is not None and (device.bond_slaves or device.bridge_slaves):
        # anaconda: the bond (or bridge) carries no address of its own, the VLAN on it gets the line's addresses
        master = replace(device, bootproto="disabled", ip=None, netmask=None, gateway=None, nameservers=[],
                         ipv6="disabled", ipv6_gateway=None, nodefroute=False, nodns=False,
                         ipv4_ignore_auto_dns=False, ipv6_ignore_auto_dns=False, ipv4_dns_search=[],
                         ipv6_dns_search=[], vlan_id=None, interface_name=None, hostname=None, dhcp_class=None)
        vlan = replace(device, bond_slaves=[], bond_options=[], bridge_slaves=[], bridge_options=[], bind_to_mac=False)
        return [master, vlan]
    return [device]


def _checked(device: NetworkDevice, line: int, findings: Findings) -> bool:
    try:
        check_network_device(device, "network")
    except BadInput as exc:
        findings.error(line, f"network {_reason(exc, [device])}")
        return False
    return True


def _reason(exc: BadInput, devices: list[NetworkDevice]) -> str:
    """`--option=value: reason` for a complaint located at a device field (`network[1].vlan_id` → `--vlanid`)."""
    match = re.search(r"(?:\[(\d+)\])?\.(\w+)(?:\[(\d+)\])?\Z", exc.location or "")
    if not match or match.group(2) not in OPTION_OF:
        return exc.reason
    device = devices[int(match.group(1))] if match.group(1) else devices[0]
    value = getattr(device, match.group(2))
    if isinstance(value, list):
        value = value[int(match.group(3))] if match.group(3) else ",".join(map(str, value))
    if isinstance(value, bool):
        value = "mac" if match.group(2) == "bind_to_mac" and value else None  # --bindto=mac is the only such
    shown = f"={value}" if value not in (None, "", []) else ""
    return f"{OPTION_OF[match.group(2)]}{shown}: {exc.reason}"
