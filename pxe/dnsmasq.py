"""dnsmasq configuration that chains PXE clients to the service: proxy DHCP beside an existing DHCP
server (the default), or dnsmasq as the only DHCP server of an isolated provisioning network.

Legacy BIOS PXE ROMs get iPXE (undionly.kpxe) over TFTP. UEFI x86-64 PXE clients get either iPXE
(snponly.efi) or, for Secure Boot, the distribution's signed shim (shimx64.efi), which loads
grubx64.efi and grub/grub.cfg from the same TFTP server. iPXE then fetches the boot script over HTTP.
With the signed shim, UEFI HTTP boot clients (architecture 16, vendor class HTTPClient) are offered the URL of
the service's Secure Boot RAM disk image (pxe.httpboot), when dnsmasq is the DHCP server (--dhcp-range): in
proxy mode dnsmasq answers PXE clients only.

Boot file names are given with their suffix: dnsmasq (2.76 and later) then adds no PXE layer suffix
(".0"), so the client asks the TFTP server for exactly that name.
"""
from __future__ import annotations

import ipaddress
import re

from metalstream.errors import BadInput

from .httpboot import IMAGE_NAME
from .render import SAFE_URL

_IFACE = re.compile(r"^[A-Za-z0-9._-]{1,15}\Z")

BIOS_LOADER = "undionly.kpxe"
# --uefi-loader choice -> (first-stage file on the TFTP server, menu text)
UEFI_LOADERS: dict[str, tuple[str, str]] = {
    "ipxe": ("snponly.efi", "metalstream iPXE (UEFI)"),
    "shim": ("shimx64.efi", "metalstream shim + GRUB (UEFI Secure Boot)"),
}
# DHCP option 93 values of x86-64 UEFI PXE clients. Given as numbers: dnsmasq swapped its names for
# them (x86-64_EFI, BC_EFI) in 2.76, and firmware in the field sends either.
UEFI_X64_ARCHES = (7, 9)
UEFI_HTTP_X64_ARCH = 16
HTTP_BOOT_IMAGE = f"/boot/{IMAGE_NAME}"
LEASE_TIME = "12h"


def dnsmasq_config(*, server_url: str, subnet: str, tftp_server: str, interface: str | None = None,
                   uefi_loader: str = "ipxe", dhcp_range: str | None = None) -> str:
    """The configuration text; BadInput names the option (`--subnet`, `--dhcp-range`, ...) that is wrong."""
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
    if uefi_loader not in UEFI_LOADERS:
        raise BadInput(f"must be one of {', '.join(UEFI_LOADERS)}", location="--uefi-loader")
    uefi_file, uefi_text = UEFI_LOADERS[uefi_loader]

    if dhcp_range is None:
        lines = [
            "# metalstream: proxy DHCP. The existing DHCP server keeps handing out addresses; dnsmasq only",
            "# adds the PXE boot answer (a PXE boot menu entry per client architecture).",
        ]
    else:
        start, end = parse_dhcp_range(dhcp_range, network)
        lines = [
            f"# metalstream: dnsmasq is this network's only DHCP server (addresses {start} to {end}); its",
            "# offers name the boot file directly. Use it only on an isolated provisioning network.",
        ]
    lines += [
        f"# Legacy BIOS PXE ROMs get iPXE ({BIOS_LOADER}) over TFTP from {tftp}.",
        *_uefi_comment(uefi_loader, uefi_file, tftp),
        *_http_boot_comment(uefi_loader, dhcp_range is not None, server_url),
        "# iPXE, once running, gets the boot script's URL.",
        "port=0",
        "log-dhcp",
    ]
    if interface:
        lines += [f"interface={interface}", "bind-interfaces"]
    lines += ["dhcp-userclass=set:ipxe,iPXE", "dhcp-match=set:ipxe,175"]
    if dhcp_range is None:
        lines += [
            f"dhcp-range={network.network_address},proxy,{network.netmask}",
            'pxe-prompt="metalstream",0',
            f'pxe-service=tag:!ipxe,x86PC,"metalstream iPXE (BIOS)",{BIOS_LOADER},{tftp}',
            *(f'pxe-service=tag:!ipxe,{arch},"{uefi_text}",{uefi_file},{tftp}' for arch in UEFI_X64_ARCHES),
        ]
    else:
        # No pxe-service here: dnsmasq answers a UEFI client's follow-up request on udp/4011 only in proxy
        # mode, so the offer itself must carry the file (what every PXE ROM boots from plain DHCP).
        lines += [
            f"dhcp-range={start},{end},{LEASE_TIME}",
            "dhcp-authoritative",
            "dhcp-match=set:bios,option:client-arch,0",
            *(f"dhcp-match=set:uefi-x64,option:client-arch,{arch}" for arch in UEFI_X64_ARCHES),
            f"dhcp-boot=tag:bios,tag:!ipxe,{BIOS_LOADER},,{tftp}",
            f"dhcp-boot=tag:uefi-x64,tag:!ipxe,{uefi_file},,{tftp}",
        ]
        if uefi_loader == "shim":
            # UEFI requires an HTTP boot offer to carry the vendor class HTTPClient back (option 60).
            lines += [
                f"dhcp-match=set:uefi-http,option:client-arch,{UEFI_HTTP_X64_ARCH}",
                f"dhcp-boot=tag:uefi-http,{server_url}{HTTP_BOOT_IMAGE}",
                "dhcp-option-force=tag:uefi-http,60,HTTPClient",
            ]
    lines += [f"dhcp-boot=tag:ipxe,{server_url}/boot.ipxe", ""]
    return "\n".join(lines)


def _uefi_comment(uefi_loader: str, uefi_file: str, tftp) -> list[str]:
    if uefi_loader == "ipxe":
        return [f"# UEFI x86-64 PXE clients get iPXE ({uefi_file}) over TFTP from {tftp}: it does not boot",
                "# with Secure Boot enforced (--uefi-loader shim does)."]
    return [f"# UEFI x86-64 PXE clients get the signed shim ({uefi_file}) over TFTP from {tftp}; shim loads",
            "# grubx64.efi and GRUB reads grub/grub.cfg, the installer's kernel and initramfs from the same",
            "# TFTP server."]


def _http_boot_comment(uefi_loader: str, full_dhcp: bool, server_url: str) -> list[str]:
    if uefi_loader == "shim" and full_dhcp:
        return [f"# UEFI HTTP boot clients (architecture 16) get {server_url}{HTTP_BOOT_IMAGE}: a disk image",
                "# the firmware boots from a RAM disk (signed shim, signed GRUB, this machine's config, the",
                "# installer), as the signed GRUB cannot fetch over HTTP."]
    if uefi_loader == "shim":
        return ["# UEFI HTTP boot clients (architecture 16) are offered nothing and fall back to PXE: dnsmasq's",
                "# proxy DHCP answers PXE clients only (with --dhcp-range they get the Secure Boot image)."]
    return ["# UEFI HTTP boot clients (architecture 16) are offered nothing and fall back to PXE (with",
            "# --uefi-loader shim --dhcp-range they get the Secure Boot RAM disk image over HTTP)."]


def parse_dhcp_range(value: str, network: ipaddress.IPv4Network | ipaddress.IPv6Network) -> tuple[str, str]:
    """START,END: IPv4 host addresses inside `network`, START <= END."""
    parts = [part.strip() for part in value.split(",")]
    if len(parts) != 2:
        raise BadInput("must be START,END, e.g. 10.0.0.100,10.0.0.199", location="--dhcp-range")
    addresses = []
    for part, which in zip(parts, ("START", "END")):
        try:
            address = ipaddress.IPv4Address(part)
        except ValueError:
            raise BadInput(f"{which} {part!r} is not an IPv4 address", location="--dhcp-range") from None
        if address not in network:
            raise BadInput(f"{which} {address} is outside --subnet {network}", location="--dhcp-range")
        if network.num_addresses > 2 and address in (network.network_address, network.broadcast_address):
            kind = "network" if address == network.network_address else "broadcast"
            raise BadInput(f"{which} {address} is the {kind} address of --subnet {network}, not a host address",
                           location="--dhcp-range")
        addresses.append(address)
    start, end = addresses
    if start > end:
        raise BadInput(f"START {start} is above END {end}", location="--dhcp-range")
    return str(start), str(end)
