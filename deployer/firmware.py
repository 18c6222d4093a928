"""What the firmware says about how this machine booted the installer: Secure Boot on, off, or BIOS."""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from metalstream.contracts.efivars import EFIVARS, SECURE_BOOT_VARIABLE, secure_boot_from_variable
from metalstream.errors import BadInput


@dataclass(frozen=True)
class SecureBootState:
    enabled: bool | None  # None: BIOS, or UEFI whose state could not be read (`text` says which)
    text: str


def read_secure_boot(efivars: str | Path = EFIVARS) -> SecureBootState:
    """The SecureBoot variable from efivarfs. No efivars directory: BIOS. A UEFI firmware without the
    variable has no Secure Boot support: off. An empty directory is efivarfs not mounted: unknown."""
    directory = Path(efivars)
    if not directory.is_dir():
        return SecureBootState(None, "BIOS")
    variable = directory / SECURE_BOOT_VARIABLE
    try:
        data = variable.read_bytes()
    except FileNotFoundError:
        if not any(directory.iterdir()):
            return SecureBootState(None, f"unknown (efivarfs is not mounted on {directory})")
        return SecureBootState(False, "off (the firmware has no SecureBoot variable)")
    except OSError as exc:
        return SecureBootState(None, f"unknown ({variable}: {exc.strerror or exc})")
    try:
        enabled = secure_boot_from_variable(data, str(variable))
    except BadInput as exc:
        return SecureBootState(None, f"unknown ({exc})")
    return SecureBootState(enabled, "on" if enabled else "off")
