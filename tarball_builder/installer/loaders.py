"""The distribution's signed first-stage loaders an installer carries for Secure Boot network boot.

Debian's shim (shim-signed) and its signed network grub (grub-efi-amd64-signed) are taken from the
installer root, so they come from the same distribution that signed the installer's kernel. They are
served beside the kernel, never put into the initramfs (trim.py drops them there).
"""
from __future__ import annotations

from pathlib import Path

from metalstream import rootfs
from metalstream.contracts.secureboot import DEBIAN_GRUB_PACKAGE, DEBIAN_NETWORK_GRUB, DEBIAN_SHIM, DEBIAN_SHIM_PACKAGE
from metalstream.errors import BadInput

# manifest key -> (root-relative source, output suffix: NAME.<suffix> beside NAME.vmlinuz, package)
SIGNED_LOADERS: dict[str, tuple[str, str, str]] = {
    "shim": (DEBIAN_SHIM, "shimx64.efi", DEBIAN_SHIM_PACKAGE),
    "grub": (DEBIAN_NETWORK_GRUB, "grubnetx64.efi", DEBIAN_GRUB_PACKAGE),
}


def find_signed_loaders(root: Path, *, where: str = "%packages") -> dict[str, Path]:
    """{manifest key: host path} of the signed loaders in `root`; empty when it has neither.

    Only one of them is BadInput at `where` (the kickstart's %packages line): shim without its grub,
    or grub without the shim that verifies it, cannot boot under Secure Boot.
    """
    found = {key: rootfs.resolve(root, source) for key, (source, _, _) in SIGNED_LOADERS.items()}
    found = {key: path for key, path in found.items() if path.is_file()}
    if found and len(found) != len(SIGNED_LOADERS):
        (have,) = found
        (lack,) = set(SIGNED_LOADERS) - set(found)
        have_source, _, have_package = SIGNED_LOADERS[have]
        lack_source, _, lack_package = SIGNED_LOADERS[lack]
        raise BadInput(f"the installer root has /{have_source} (from {have_package}) but no /{lack_source}: a half "
                       f"signed chain cannot boot under Secure Boot; add {lack_package} to %packages "
                       f"(or remove {have_package})", location=where)
    return found


def output_name(name: str, key: str) -> str:
    """File name of loader `key` beside NAME.vmlinuz."""
    return f"{name}.{SIGNED_LOADERS[key][1]}"
