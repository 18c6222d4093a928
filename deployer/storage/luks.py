"""cryptsetup command lines for the planned LUKS devices, and the target's crypttab.

The passphrase only ever travels on the tools' standard input (`--key-file=-`, read whole, no newline
added), never in an argument vector (which proc.run logs). cryptsetup's own key-derivation defaults are
kept, as anaconda keeps them (LUKS2: argon2id benchmarked to about 2 s on the installing machine; its memory
cost is lowered by cryptsetup only where the machine is too slow for the full 1 GiB in that time): nothing is
weakened to make installs or tests faster.
"""
from __future__ import annotations

from .model import Crypt


def format_argv(crypt: Crypt, device: str) -> list[str]:
    return ["cryptsetup", "luksFormat", "--batch-mode", f"--type={crypt.luks_version}", f"--uuid={crypt.uuid}",
            *([f"--cipher={crypt.cipher}"] if crypt.cipher else []), "--key-file=-", device]


def open_argv(crypt: Crypt, device: str) -> list[str]:
    return ["cryptsetup", "open", "--type=luks", "--key-file=-", device, crypt.name]


def close_argv(crypt: Crypt) -> list[str]:
    return ["cryptsetup", "close", crypt.name]


def crypttab_text(crypts: list[Crypt]) -> str:
    """No key file: the passphrase is typed at boot (the initramfs for the root's devices, systemd for others)."""
    lines = ["# /etc/crypttab: written by metalstream at deploy time (the passphrase is asked for at boot)"]
    lines += [f"{c.name} UUID={c.uuid} none luks,discard" for c in crypts]
    return "\n".join(lines) + "\n"
