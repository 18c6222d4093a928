"""Which packages give an image the distribution's signed boot chain (shim → grub → kernel).

A Secure Boot firmware runs only what Microsoft's key (shim) and the distribution's key (grub, the
kernel) signed. The image manifest's `bootloader` flags say a shim and a UEFI grub are present, but
not that they are the signed builds (Debian's `shim-unsigned` and `grub-efi-amd64-bin` are not), so
the installed packages are the evidence: the service checks an image's manifest before accepting a
Secure Boot deployment of it, and `ks lint` checks a kickstart's %packages.
"""
from __future__ import annotations

import re
from fnmatch import fnmatchcase

from ..errors import BadInput

DEBIAN_SHIM_PACKAGE = "shim-signed"
DEBIAN_GRUB_PACKAGE = "grub-efi-amd64-signed"
# Where those packages put the signed binaries, relative to the root: shim, the disk grub (prefix /EFI/debian)
# and the network grub (prefix (tftp,SERVER)/grub) an installer serves for PXE boot.
DEBIAN_SHIM = "usr/lib/shim/shimx64.efi.signed"
DEBIAN_GRUB = "usr/lib/grub/x86_64-efi-signed/grubx64.efi.signed"
DEBIAN_NETWORK_GRUB = "usr/lib/grub/x86_64-efi-signed/grubnetx64.efi.signed"

# Per family, what a kickstart's %packages must list; each pattern is matched against package names.
SIGNED_CHAIN = {
    "debian": (DEBIAN_SHIM_PACKAGE, DEBIAN_GRUB_PACKAGE, "linux-image-*"),
    "rpm": ("shim-x64", "grub2-efi-x64", "kernel"),
}
# Other names that stand for one of the above: Fedora's signed vmlinuz is in kernel-core (`kernel` pulls it in).
_SATISFIED_ALSO_BY = {"kernel": ("kernel-core",)}
# Debian's kernel packages that are not the signed kernel.
_UNSIGNED_KERNELS = ("linux-image-*-unsigned", "linux-image-*-dbg")
# Which link of the chain each SIGNED_CHAIN pattern provides, for messages.
_CHAIN_PART = {DEBIAN_SHIM_PACKAGE: "shim", DEBIAN_GRUB_PACKAGE: "grub", "linux-image-*": "kernel",
               "shim-x64": "shim", "grub2-efi-x64": "grub", "kernel": "kernel"}
_DEBIAN_QUALIFIER = re.compile(r"[:=/].*\Z")  # name:arch, name=version, name/suite


def check_boot_mode(boot_mode: str, location: str) -> str:
    """Secure Boot is a UEFI matter: a plan asking for it must let the disk boot UEFI (uefi or both)."""
    if boot_mode == "bios":
        raise BadInput("Secure Boot needs UEFI: boot_mode must be uefi or both, not bios", location=location)
    return boot_mode


def missing_signed_packages(family: str, names: list[str] | tuple[str, ...]) -> list[str] | None:
    """The patterns of SIGNED_CHAIN[family] no package in `names` satisfies; None for a family without a rule."""
    wanted = SIGNED_CHAIN.get(family)
    if wanted is None:
        return None
    bare = {_DEBIAN_QUALIFIER.sub("", name) for name in names}
    bare = {name for name in bare if not any(fnmatchcase(name, p) for p in _UNSIGNED_KERNELS)}
    return [pattern for pattern in wanted
            if not any(fnmatchcase(name, p) for name in bare for p in (pattern, *_SATISFIED_ALSO_BY.get(pattern, ())))]


def image_refusal(name: str, manifest: dict) -> str | None:
    """Why image `name` (its manifest) cannot boot under Secure Boot, or None when it has the signed chain:
    the signed packages of its family in its package list, and the shim and grub EFI binaries in its tree."""
    family = manifest.get("distribution", {}).get("family", "")
    names = [package.get("name", "") for package in manifest.get("packages", []) if isinstance(package, dict)]
    missing = missing_signed_packages(family, names)
    if missing is None:
        return (f"image {name} (family {family!r}) has no signed shim, grub and kernel metalstream knows of: build it "
                f"with {_listed(SIGNED_CHAIN['debian'])} (Debian) or {_listed(SIGNED_CHAIN['rpm'])} (RPM family) "
                "in its %packages")
    if missing:
        return (f"image {name} has no signed {_and([_CHAIN_PART[p] for p in missing])} for Secure Boot: "
                f"add {_listed(tuple(missing))} to its kickstart's %packages and rebuild it")
    loaders = manifest.get("bootloader", {})
    absent = [what for what, key in (("shim", "shim"), ("grub", "uefi_grub")) if not loaders.get(key)]
    if absent:
        return (f"image {name} lists the signed packages but its tree has no {' or '.join(absent)} EFI binary "
                "(removed by %post?): rebuild it")
    return None


def _listed(patterns: tuple[str, ...]) -> str:
    return _and([p.replace("linux-image-*", "linux-image-amd64") for p in patterns])


def _and(words: list[str]) -> str:
    return words[0] if len(words) == 1 else ", ".join(words[:-1]) + " and " + words[-1]
