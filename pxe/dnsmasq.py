"""Proxy-DHCP configuration for dnsmasq that chains PXE clients to the service without handing out leases."""
from __future__ import annotations

import ipaddress
import re

from metalstream.errors import BadInput

from .render import SAFE_URL

_IFACE = re.compile(r"^[A-Za-z0-9._-]{1,15}\Z")


def proxy_dhcp_config(*, server_url: str, subnet: str, tftp_server: str, interface: str | None = None) -> str:
    if not SAFE_URL.match(server_url):
        raise BadInput("must be an http(s) URL such as http://10.0.0.5:8080", location="--server-url")
    try:
        network = ipaddress.ip_network(subnet, strict=False)
    except ValueError:
        raise BadInput("must be a network such as 10.0.0.0/24", location="--subnet") from None
    try:
        tftp = ipaddress.ip_address(tftp_server)
    except ValueError:
        raise BadInput("must be an IP address", location="--tftp-server") from None
    if interface is not None and not _IFACE.match(interface):
        raise BadInput("not an interface name", location="--interface")
    lines = [
        "# metalstream: proxy DHCP. The existing DHCP server keeps handing out addresses; dnsmasq only",
        "# adds the PXE boot answer. Legacy PXE ROMs get iPXE over TFTP, iPXE then fetches the boot script.",
        "port=0",
        "log-dhcp",
    ]
    if interface:
        lines += [f"interface={interface}", "bind-interfaces"]
    lines += [
        f"dhcp-range={network.network_address},proxy,{network.netmask}",
        "dhcp-userclass=set:ipxe,iPXE",
        "dhcp-match=set:ipxe,175",
        'pxe-prompt="metalstream",0',
        f'pxe-service=tag:!ipxe,x86PC,"metalstream iPXE (BIOS)",undionly.kpxe,{tftp}',
        f'pxe-service=tag:!ipxe,X86-64_EFI,"metalstream iPXE (UEFI)",snponly.efi,{tftp}',
        f"dhcp-boot=tag:ipxe,{server_url}/boot.ipxe",
        "",
    ]
    return "\n".join(lines)
