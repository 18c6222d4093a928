"""Stage `manifest`: NAME.json beside NAME.tar.zst, written by the contract (metalstream.contracts.manifests).

What the manifest says about the tree (distribution, bootloader support) is read from the root by
`describe_root`, which also serves anyone else who packs a tree (the test suite's image factory).
"""
from __future__ import annotations

from pathlib import Path

from metalstream import rootfs
from metalstream.contracts.manifests import image_manifest, write_document

from ..context import Backend, BuildContext

SHIM_GLOBS = ("usr/lib/shim/shim*.efi*", "boot/efi/EFI/*/shim*.efi")
SIGNED_GRUB_GLOBS = ("usr/lib/grub/x86_64-efi-signed/*.efi*", "boot/efi/EFI/*/grubx64.efi")


class ManifestStage:
    name = "manifest"
    description = "write the image manifest"

    def __init__(self, backend: Backend):
        self.backend = backend

    def run(self, ctx: BuildContext) -> None:
        tarball = ctx.facts["tarball"]
        dist = ctx.build.distribution
        manifest = image_manifest(
            name=ctx.options.name, tarball=Path(tarball["path"]).name, sha256=tarball["sha256"],
            size=tarball["size"], uncompressed_size=tarball["uncompressed_size"], file_count=ctx.facts["file_count"],
            arch=dist.arch, kernels=ctx.facts.get("kernels", []), packages=self.backend.installed_packages(ctx),
            kickstart_sha256=ctx.kickstart.sha256, created=ctx.source_date_epoch,
            **describe_root(ctx.root, dist.family, dist.release))
        ctx.facts["manifest_path"] = write_document(ctx.options.output_dir / f"{ctx.options.name}.json", manifest)


def describe_root(root: Path, family: str, release: str = "") -> dict:
    """The manifest's `distribution` and `bootloader` fields, read from an installed tree."""
    return {"distribution": distribution(root, family, release), "bootloader": bootloader_support(root)}


def distribution(root: Path, family: str, release: str = "") -> dict:
    values = {}
    for name in ("/etc/os-release", "/usr/lib/os-release"):
        path = rootfs.resolve(root, name)
        if path.is_file():
            values = parse_os_release(path.read_text())
            break
    return {"family": family, "id": values.get("ID", ""), "version": values.get("VERSION_ID", ""),
            "codename": values.get("VERSION_CODENAME", "") or (release if family == "debian" else "")}


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def bootloader_support(root: Path) -> dict[str, bool]:
    return {
        "bios_grub": rootfs.resolve(root, "usr/lib/grub/i386-pc").is_dir(),
        "uefi_grub": rootfs.resolve(root, "usr/lib/grub/x86_64-efi").is_dir() or _any(root, SIGNED_GRUB_GLOBS),
        "shim": _any(root, SHIM_GLOBS),
    }


def _any(root: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(iter(root.glob(p)), None) is not None for p in patterns)
