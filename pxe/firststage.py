"""First-stage loaders fetched over TFTP, and what a machine that fetched one and then went silent tells.

Pure: no database, no sockets. The TFTP server attributes a fetch to a MAC through the kernel's neighbour
table (`parse_neighbours` reads /proc/net/arp's format), which only holds clients on directly connected
networks (`parse_connected_networks` reads /proc/net/route's format); the sweeper fails a pending deployment whose
machine fetched a first-stage loader and then asked for nothing, with `silence_message` as its error.
"""
from __future__ import annotations

import ipaddress
import time
from dataclasses import dataclass

from metalstream.contracts import rules
from metalstream.errors import BadInput

from .bootpath import CHOSEN_BY, Choice


@dataclass(frozen=True)
class Loader:
    name: str
    kind: str  # shown in events and messages, e.g. "iPXE for UEFI, unsigned"
    loaded_by: str  # who fetches it: the firmware, or shim (grubx64.efi)


LOADERS = {loader.name: loader for loader in (
    Loader("undionly.kpxe", "iPXE for BIOS", "firmware"),
    Loader("ipxe.efi", "iPXE for UEFI, unsigned", "firmware"),
    Loader("snponly.efi", "iPXE for UEFI, unsigned", "firmware"),
    Loader("shimx64.efi", "signed shim", "firmware"),
    Loader("grubx64.efi", "signed network GRUB", "shim"),
)}
UNSIGNED_UEFI = ("ipxe.efi", "snponly.efi")
# The firmware asks for the same loader twice in a row (once for its size, once to load it): one event.
REPEAT_WINDOW = 30.0

_ATF_COM = 0x2  # the kernel's "entry complete" flag: the hardware address is known
_RTF_UP, _RTF_GATEWAY = 0x1, 0x2  # route flags: usable; through a router


def parse_neighbours(text: str) -> dict[str, str]:
    """IPv4 address → MAC (aa:bb:cc:dd:ee:ff) from the text of /proc/net/arp; incomplete entries left out."""
    table: dict[str, str] = {}
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 4:
            continue
        address, _hw_type, flags, hw_address = fields[:4]
        try:
            ipaddress.IPv4Address(address)
            complete = int(flags, 16) & _ATF_COM
            mac = rules.mac(hw_address, "HW address")
        except (ValueError, BadInput):
            continue
        if complete and mac != "00:00:00:00:00:00":
            table.setdefault(address, mac)
    return table


def _route_address(field: str) -> ipaddress.IPv4Address:
    return ipaddress.IPv4Address(int(field, 16).to_bytes(4, "little"))


def parse_connected_networks(text: str) -> list[ipaddress.IPv4Network]:
    """The networks this host reaches without a router, from the text of /proc/net/route (hex, host order)."""
    networks = []
    for line in text.splitlines()[1:]:
        fields = line.split()
        if len(fields) < 8:
            continue
        try:
            destination, gateway, flags, mask = (_route_address(fields[1]), _route_address(fields[2]),
                                                 int(fields[3], 16), _route_address(fields[7]))
            network = ipaddress.IPv4Network(f"{destination}/{mask}", strict=False)
        except ValueError:
            continue
        if flags & _RTF_UP and not flags & _RTF_GATEWAY and int(gateway) == 0:
            networks.append(network)
    return networks


def record(loader: str, client: str, mac: str | None, at: float, choice: Choice | None = None) -> dict:
    """What a deployment stores as `first_stage`: the loader sent and, for a UEFI client, the boot path chosen
    for it (`path_choice`: the name it asked for, the path, who chose it)."""
    fetch = {"loader": loader, "client": client, "mac": mac, "at": at}
    if choice is not None:
        fetch["path_choice"] = {"asked": choice.asked, "path": choice.path, "chosen_by": choice.chosen_by,
                                **({"note": choice.note} if choice.note else {})}
    return fetch


def is_repeat(previous: dict | None, fetch: dict) -> bool:
    """The same loader fetched again by the same client moments later (no new event for it)."""
    return (isinstance(previous, dict) and previous.get("loader") == fetch["loader"]
            and previous.get("client") == fetch["client"]
            and isinstance(previous.get("at"), (int, float)) and 0 <= fetch["at"] - previous["at"] < REPEAT_WINDOW)


def fetched_event(loader: str, client: str, path_choice: dict | None = None) -> str:
    """The event a deployment gets when its machine fetches a first-stage loader; with the boot path chosen
    for it when that was not simply the loader asked for."""
    known = LOADERS[loader]
    event = f"{known.loaded_by} fetched {loader} ({known.kind}) over TFTP from {client}"
    if not path_choice or (path_choice.get("asked") == loader and not path_choice.get("note")):
        return event
    event += (f" (it asked for {path_choice['asked']}; boot path {path_choice['path']} chosen by "
              f"{CHOSEN_BY.get(path_choice['chosen_by'], path_choice['chosen_by'])})")
    return f"{event}: {path_choice['note']}" if path_choice.get("note") else event


def _clock(at: float) -> str:
    return time.strftime("%H:%M:%S", time.gmtime(at)) + " UTC"


def silence_message(first_stage: dict, silent_for: float, mac: str) -> str:
    """Why a pending deployment is failed: its machine fetched `first_stage["loader"]` and then asked for
    nothing for `silent_for` seconds; names the likely cause for that kind of loader."""
    loader = str(first_stage.get("loader"))
    at = first_stage.get("at")
    when = f" at {_clock(at)}" if isinstance(at, (int, float)) else ""
    silent = f"{silent_for:.0f} s"
    asked = first_stage.get("asked_without_installer")
    if isinstance(asked, (int, float)):
        return (f"the machine fetched {loader}{when} and asked for its boot config at {_clock(asked)}, but the "
                "service has no installer to offer it; start metalstream serve with --installer and create the "
                "deployment again")
    if loader in UNSIGNED_UEFI:
        return (f"the machine fetched {loader} (unsigned iPXE){when} and then asked for nothing for {silent}: "
                "a UEFI firmware with Secure Boot on refuses unsigned loaders — offer the signed path "
                "(metalstream dnsmasq-config --uefi-loader shim, with an installer that carries shim and grub) "
                "or turn Secure Boot off")
    if loader == "shimx64.efi":
        return (f"the machine fetched shimx64.efi (signed shim){when} and then asked for nothing for {silent}: "
                "shim never fetched grubx64.efi — the firmware refused shim (are Microsoft's UEFI keys enrolled?) "
                "or shim could not read grubx64.efi from this TFTP server; check that the installer's "
                "secure_boot files are the distribution's shimx64.efi.signed and grubnetx64.efi.signed")
    if loader == "grubx64.efi":
        return (f"the machine fetched grubx64.efi (signed network GRUB, loaded by shim){when} but GRUB never "
                f"asked for its configuration (grub/grub.cfg, then grub/{mac}.cfg over TFTP) within {silent}: "
                "shim refused grubx64.efi (it must be the same distribution's signed grubnetx64.efi.signed) "
                "or GRUB's prefix is not this TFTP server; check the machine's console and this server's "
                "TFTP log for those files")
    if loader == "undionly.kpxe":
        return (f"the machine fetched undionly.kpxe (iPXE for BIOS){when} and then asked for nothing for {silent}: "
                f"iPXE loaded but never asked for its boot script (/boot.ipxe, then /boot/{mac.replace(':', '-')}.ipxe "
                "over HTTP); "
                "check that DHCP hands iPXE the script's URL (metalstream dnsmasq-config) and that the machine "
                "reaches the service over HTTP")
    return f"the machine fetched {loader}{when} over TFTP and then asked for nothing for {silent}"
