"""The UEFI `SecureBoot` variable as efivarfs shows it: read by the agent in the installer and, over SSH,
by the service's activation check on the installed system.

efivarfs gives a variable's 4 attribute bytes then its data; `SecureBoot` has one data byte, 1 = on.
A machine booted with BIOS has no efivars directory: its state is None ("BIOS"), as is a state that
could not be read. Standard library only (the installer ships this module with the agent).
"""
from __future__ import annotations

from ..errors import BadInput

EFIVARS = "/sys/firmware/efi/efivars"
GLOBAL_VARIABLE_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURE_BOOT_VARIABLE = f"SecureBoot-{GLOBAL_VARIABLE_GUID}"
ATTRIBUTE_BYTES = 4


def secure_boot_from_variable(data: bytes, location: str) -> bool:
    """The state in the variable's efivarfs content (attributes + one data byte)."""
    if len(data) != ATTRIBUTE_BYTES + 1:
        raise BadInput(f"expected {ATTRIBUTE_BYTES} attribute bytes and 1 data byte, got {len(data)} bytes",
                       location=location)
    if data[ATTRIBUTE_BYTES] not in (0, 1):
        raise BadInput(f"data byte is {data[ATTRIBUTE_BYTES]}, expected 0 (off) or 1 (on)", location=location)
    return data[ATTRIBUTE_BYTES] == 1


def secure_boot_from_od(text: str, location: str) -> bool:
    """The state in `od -An -tu1 -v` output of the variable (decimal bytes separated by blanks)."""
    words = text.split()
    if not words or not all(w.isdigit() and int(w) < 256 for w in words):
        raise BadInput(f"not od -tu1 output: {text.strip()[:80]!r}", location=location)
    return secure_boot_from_variable(bytes(int(w) for w in words), location)


def describe(state: bool | None) -> str:
    """`on`, `off` or `BIOS` (None: no Secure Boot state, as on a BIOS machine)."""
    return "BIOS" if state is None else "on" if state else "off"
