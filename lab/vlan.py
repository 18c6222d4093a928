"""A VLAN interface in a lab namespace on a kernel without 802.1Q support: two taps and a relay.

The trunk tap is a port of the namespace's bridge and carries tagged frames; the access tap holds the
namespace's address on the VLAN. The relay (this module run as a program inside the namespace, started by
`ProvisioningNet.add_vlan`) tags what the access tap sends and untags what arrives on the trunk with its VLAN
id; frames of other VLANs and untagged frames are not its business. `tag` and `untag` are pure.

    python -m lab.vlan TRUNK ACCESS VID
"""
from __future__ import annotations

import fcntl
import os
import select
import struct
import sys

TPID = 0x8100
TUNSETIFF = 0x400454CA
IFF_TAP, IFF_NO_PI = 0x0002, 0x1000
MAX_FRAME = 65536


def tag(frame: bytes, vid: int) -> bytes:
    """`frame` with an 802.1Q header for `vid` after the two MAC addresses."""
    return frame[:12] + struct.pack("!HH", TPID, vid) + frame[12:]


def untag(frame: bytes, vid: int) -> bytes | None:
    """`frame` without its 802.1Q header when it is tagged with `vid`, else None."""
    if len(frame) < 18 or struct.unpack("!H", frame[12:14])[0] != TPID:
        return None
    if struct.unpack("!H", frame[14:16])[0] & 0x0FFF != vid:
        return None
    return frame[:12] + frame[16:]


def open_tap(name: str) -> int:
    fd = os.open("/dev/net/tun", os.O_RDWR)
    fcntl.ioctl(fd, TUNSETIFF, struct.pack("16sH", name.encode(), IFF_TAP | IFF_NO_PI))
    return fd


def relay(trunk: int, access: int, vid: int) -> None:
    while True:
        readable, _, _ = select.select([trunk, access], [], [])
        for fd in readable:
            frame = os.read(fd, MAX_FRAME)
            out, data = (trunk, tag(frame, vid)) if fd == access else (access, untag(frame, vid))
            if data is not None:
                try:
                    os.write(out, data)
                except OSError:
                    pass  # a tap going down drops the frame, as a switch port would


def main(argv: list[str]) -> int:
    trunk_name, access_name, vid = argv[0], argv[1], int(argv[2])
    trunk, access = open_tap(trunk_name), open_tap(access_name)
    print("relaying", flush=True)  # the taps are attached: ProvisioningNet.add_vlan waits for this line
    relay(trunk, access, vid)
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))
