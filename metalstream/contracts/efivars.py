"""The UEFI `SecureBoot` variable as efivarfs shows it: read by the agent in the installer and, over SSH,
by the service's activation check on the installed system. Both classify what they found with
`classify`, so both say the same thing in the same words.

efivarfs gives a variable's 4 attribute bytes then its data; `SecureBoot` has one data byte, 1 = on.
A machine booted with BIOS has no efivars directory: its state is None, as is a state that could not be
read. Standard library only (the installer ships this module with the agent).
"""
from __future__ import annotations

from dataclasses import dataclass

from ..errors import BadInput

EFIVARS = "/sys/firmware/efi/efivars"
GLOBAL_VARIABLE_GUID = "8be4df61-93ca-11d2-aa0d-00e098032b8c"
SECURE_BOOT_VARIABLE = f"SecureBoot-{GLOBAL_VARIABLE_GUID}"
ATTRIBUTE_BYTES = 4
# What a look at the efivars directory can find instead of the variable (also the words the activation
# check's shell prints): no directory, an empty one (efivarfs not mounted), a mounted one without it.
BIOS, UNMOUNTED, ABSENT = "bios", "unmounted", "absent"


@dataclass(frozen=True)
class SecureBootState:
    enabled: bool | None  # None: BIOS, or UEFI whose state could not be read (`text` says which)
    text: str  # for logs and messages, e.g. "Secure Boot on"


def classify(found: str | bytes, location: str) -> SecureBootState:
    """The state from what was found: BIOS, UNMOUNTED, ABSENT, or the variable's efivarfs content
    (`location` names the variable in the text when that content is not a SecureBoot value)."""
    if found == BIOS:
        return SecureBootState(None, "booted with BIOS (no Secure Boot)")
    if found == UNMOUNTED:
        return unknown("efivarfs is not mounted")
    if found == ABSENT:  # a UEFI firmware without Secure Boot support
        return SecureBootState(False, "Secure Boot off (the firmware has no SecureBoot variable)")
    if not isinstance(found, bytes):
        raise ValueError(f"not a finding: {found!r}")
    try:
        enabled = secure_boot_from_variable(found, location)
    except BadInput as exc:
        return unknown(str(exc))
    return SecureBootState(enabled, "Secure Boot on" if enabled else "Secure Boot off")


def unknown(reason: str) -> SecureBootState:
    """A UEFI machine whose state could not be read, and why."""
    return SecureBootState(None, f"Secure Boot unknown ({reason})")


def secure_boot_from_variable(data: bytes, location: str) -> bool:
    """The state in the variable's efivarfs content (attributes + one data byte)."""
    if len(data) != ATTRIBUTE_BYTES + 1:
        raise BadInput(f"expected {ATTRIBUTE_BYTES} attribute bytes and 1 data byte, got {len(data)} bytes",
                       location=location)
    if data[ATTRIBUTE_BYTES] not in (0, 1):
        raise BadInput(f"data byte is {data[ATTRIBUTE_BYTES]}, expected 0 (off) or 1 (on)", location=location)
    return data[ATTRIBUTE_BYTES] == 1


def bytes_from_od(text: str, location: str) -> bytes:
    """The bytes `od -An -tu1 -v` printed (decimal numbers separated by blanks)."""
    words = text.split()
    if not words or not all(w.isdigit() and int(w) < 256 for w in words):
        raise BadInput(f"not od -tu1 output: {text.strip()[:80]!r}", location=location)
    return bytes(int(w) for w in words)
