"""A PXE client's side of DHCP, for testing a real dnsmasq: run inside a network namespace as
`python3 dhcp_probe.py INTERFACE CLIENT_IP SERVER_IP ARCH [ipxe]`, it prints one JSON object.

It does what PXE firmware does (PXE 2.1, RFC 4578): a DHCPDISCOVER with the PXEClient vendor class
and client architecture ARCH (option 93), then, as firmware does when the offer names no boot file,
a DHCPREQUEST to the boot server on udp/4011 (picking the first boot menu item, if the offer has a
menu). With `ipxe` it is iPXE asking (user class "iPXE"). The JSON holds each answer (boot file,
next server, PXE menu) and `boot_file` / `next_server`: what the client fetches next, from where.
Standard library only: it runs under any python3.
"""
from __future__ import annotations

import json
import os
import socket
import struct
import sys

MAGIC = bytes([99, 130, 83, 99])
DISCOVER, OFFER, REQUEST, ACK = 1, 2, 3, 5
MAC = bytes([0x52, 0x54, 0x00, 0x12, 0x34, 0x56])
UUID = bytes(range(16))
TIMEOUT = 5.0


def packet(message_type: int, xid: int, arch: int, *, ciaddr: str = "0.0.0.0", boot_item: bytes | None = None,
           ipxe: bool = False) -> bytes:
    vendor_class = f"PXEClient:Arch:{arch:05d}:UNDI:003016".encode()
    options = [(53, bytes([message_type])), (60, vendor_class), (93, struct.pack("!H", arch)), (94, bytes([1, 3, 16])),
               (97, b"\0" + UUID), (55, bytes([1, 3, 6, 43, 60, 66, 67, 97, 128, 129, 130, 131, 132, 133, 134, 135]))]
    if ipxe:
        options.append((77, b"iPXE"))
    if boot_item is not None:
        options.append((43, bytes([71, len(boot_item)]) + boot_item + bytes([255])))
    body = b"".join(bytes([code, len(value)]) + value for code, value in options) + bytes([255])
    header = struct.pack("!BBBBIHH4s4s4s4s16s64s128s", 1, 1, 6, 0, xid, 0, 0x8000, socket.inet_aton(ciaddr),
                         bytes(4), bytes(4), bytes(4), MAC.ljust(16, b"\0"), bytes(64), bytes(128))
    return header + MAGIC + body


def parse(data: bytes) -> dict:
    (_, _, _, _, xid, _, _, _, _, siaddr, _, _, sname, file) = struct.unpack("!BBBBIHH4s4s4s4s16s64s128s", data[:236])
    options: dict[int, bytes] = {}
    i = 240
    while i < len(data) and data[i] != 255:
        if data[i] == 0:
            i += 1
            continue
        code, length = data[i], data[i + 1]
        options[code] = options.get(code, b"") + data[i + 2:i + 2 + length]
        i += 2 + length
    return {"xid": xid, "type": options.get(53, b"\0")[0], "next_server": socket.inet_ntoa(siaddr),
            "file": file.split(b"\0", 1)[0].decode(errors="replace"),
            "sname": sname.split(b"\0", 1)[0].decode(errors="replace"),
            "bootfile_option": options[67].split(b"\0", 1)[0].decode() if 67 in options else None,
            "vendor_class": options[60].decode(errors="replace") if 60 in options else None,
            "menu": _menu(options.get(43, b""))}


def _menu(encapsulated: bytes) -> list[dict]:
    """PXE boot menu (option 43, sub-option 9): [{type, text}] in the server's order."""
    subs: dict[int, bytes] = {}
    i = 0
    while i + 1 < len(encapsulated) and encapsulated[i] != 255:
        code, length = encapsulated[i], encapsulated[i + 1]
        subs[code] = encapsulated[i + 2:i + 2 + length]
        i += 2 + length
    items, raw = [], subs.get(9, b"")
    while len(raw) >= 3:
        boot_type, length = struct.unpack("!HB", raw[:3])
        items.append({"type": boot_type, "text": raw[3:3 + length].decode(errors="replace")})
        raw = raw[3 + length:]
    return items


def receive(sock: socket.socket, xid: int, want: int) -> dict | None:
    sock.settimeout(TIMEOUT)
    try:
        while True:
            data, _ = sock.recvfrom(4096)
            if len(data) >= 240 and data[236:240] == MAGIC:
                reply = parse(data)
                if reply["xid"] == xid and reply["type"] == want:
                    return reply
    except socket.timeout:
        return None


def probe(interface: str, client_ip: str, server_ip: str, arch: int, *, ipxe: bool = False) -> dict:
    xid = int.from_bytes(os.urandom(4), "big")
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BROADCAST, 1)
        sock.setsockopt(socket.SOL_SOCKET, socket.SO_BINDTODEVICE, interface.encode())
        sock.bind(("0.0.0.0", 68))
        sock.sendto(packet(DISCOVER, xid, arch, ipxe=ipxe), ("255.255.255.255", 67))
        offer = receive(sock, xid, OFFER)
        result = {"offer": offer, "boot_server": None, "boot_file": None, "next_server": None}
        answer = offer
        if offer is not None and not _boot_file(offer):
            item = struct.pack("!HH", offer["menu"][0]["type"], 0) if offer["menu"] else None
            sock.sendto(packet(REQUEST, xid, arch, ciaddr=client_ip, boot_item=item, ipxe=ipxe), (server_ip, 4011))
            answer = result["boot_server"] = receive(sock, xid, ACK)
        if answer is not None and _boot_file(answer):
            result.update(boot_file=_boot_file(answer), next_server=answer["next_server"])
        return result


def _boot_file(reply: dict) -> str | None:
    """What the client fetches next: the BOOTP file field, else option 67."""
    return reply["file"] or reply["bootfile_option"]


if __name__ == "__main__":
    print(json.dumps(probe(sys.argv[1], sys.argv[2], sys.argv[3], int(sys.argv[4]), ipxe=sys.argv[5:] == ["ipxe"])))
