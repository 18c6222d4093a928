"""Stage `manifest`: NAME.json beside NAME.tar.zst (format metalstream-image/1, docs/contracts.md)."""
from __future__ import annotations

import json
import os
from pathlib import Path

from deployer import __version__

from ..context import Backend, BuildContext
from .util import exists_in_root, in_root

FORMAT = "metalstream-image/1"
INSTALLER_FORMAT = "metalstream-installer/1"
SHIM_GLOBS = ("usr/lib/shim/shim*.efi*", "boot/efi/EFI/*/shim*.efi")
SIGNED_GRUB_GLOBS = ("usr/lib/grub/x86_64-efi-signed/*.efi*", "boot/efi/EFI/*/grubx64.efi")


class ManifestStage:
    name = "manifest"
    description = "write the image manifest"

    def __init__(self, backend: Backend):
        self.backend = backend

    def run(self, ctx: BuildContext) -> None:
        manifest = image_manifest(ctx, self.backend.installed_packages(ctx))
        path = write_json(ctx.options.output_dir / f"{ctx.options.name}.json", manifest)
        ctx.facts["manifest_path"] = path


def image_manifest(ctx: BuildContext, packages: list[dict[str, str]]) -> dict:
    tarball = ctx.facts["tarball"]
    return {
        "format": FORMAT,
        "name": ctx.options.name,
        "tarball": Path(tarball["path"]).name,
        "sha256": tarball["sha256"],
        "size": tarball["size"],
        "uncompressed_size": tarball["uncompressed_size"],
        "file_count": ctx.facts["file_count"],
        "arch": ctx.build.distribution.arch,
        "distribution": distribution(ctx),
        "kernels": ctx.facts.get("kernels", []),
        "bootloader": bootloader_support(ctx),
        "packages": packages,
        "kickstart_sha256": ctx.kickstart.sha256,
        "created": ctx.source_date_epoch,
        "builder": builder_info(),
    }


def builder_info() -> dict:
    return {"name": "metalstream", "version": __version__}


def distribution(ctx: BuildContext) -> dict:
    release = {}
    for name in ("/etc/os-release", "/usr/lib/os-release"):
        if exists_in_root(ctx, name):
            release = parse_os_release(in_root(ctx, name).read_text())
            break
    dist = ctx.build.distribution
    return {"family": dist.family, "id": release.get("ID", ""),
            "version": release.get("VERSION_ID", ""),
            "codename": release.get("VERSION_CODENAME", "") or (dist.release if dist.family == "debian" else "")}


def parse_os_release(text: str) -> dict[str, str]:
    values = {}
    for line in text.splitlines():
        key, sep, value = line.partition("=")
        if sep and not key.startswith("#"):
            values[key.strip()] = value.strip().strip('"').strip("'")
    return values


def bootloader_support(ctx: BuildContext) -> dict[str, bool]:
    root = ctx.root
    return {
        "bios_grub": (root / "usr/lib/grub/i386-pc").is_dir(),
        "uefi_grub": (root / "usr/lib/grub/x86_64-efi").is_dir() or _any(root, SIGNED_GRUB_GLOBS),
        "shim": _any(root, SHIM_GLOBS),
    }


def _any(root: Path, patterns: tuple[str, ...]) -> bool:
    return any(next(iter(root.glob(p)), None) is not None for p in patterns)


def write_json(path: Path, data: dict) -> Path:
    """Write atomically: a reader never sees half a manifest."""
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2, sort_keys=False) + "\n")
    os.replace(partial, path)
    return path
