"""What the firmware says about how this machine booted the installer: Secure Boot on, off, or BIOS."""
from __future__ import annotations

from pathlib import Path

from metalstream.contracts.efivars import (
    ABSENT,
    BIOS,
    EFIVARS,
    SECURE_BOOT_VARIABLE,
    UNMOUNTED,
    SecureBootState,
    classify,
    unknown,
)


def read_secure_boot(efivars: str | Path = EFIVARS) -> SecureBootState:
    """The SecureBoot variable from efivarfs (see metalstream.contracts.efivars.classify). Never raises:
    it runs before the agent can report anything, and a state it cannot read is `unknown (...)`."""
    directory = Path(efivars)
    variable = directory / SECURE_BOOT_VARIABLE
    if not directory.is_dir():
        return classify(BIOS, str(variable))
    try:
        return classify(variable.read_bytes(), str(variable))
    except FileNotFoundError:
        pass
    except OSError as exc:
        return unknown(f"{variable}: {exc.strerror or exc}")
    try:
        mounted = any(directory.iterdir())
    except OSError as exc:
        return unknown(f"{directory}: {exc.strerror or exc}")
    return classify(ABSENT if mounted else UNMOUNTED, str(variable))
