"""Stage `initramfs`: a generic (not host-only) initramfs for every installed kernel.

Kernels are found as /lib/modules/VERSION directories with a kernel image (/boot/vmlinuz-VERSION or
/lib/modules/VERSION/vmlinuz). The backend's own generator runs inside the root; each kernel must end
with a non-empty initramfs. A bootable image (its kickstart does not say `bootloader --location=none`)
without any kernel is an error that names %packages.
"""
from __future__ import annotations

from metalstream import rootfs
from metalstream.errors import BadInput, CommandError, OperationFailed

from ..chroot import for_build
from ..context import Backend, BuildContext
from .util import where

INITRAMFS_TIMEOUT = 1200.0


class InitramfsStage:
    name = "initramfs"
    description = "generate a generic initramfs for every kernel"

    def __init__(self, backend: Backend):
        self.backend = backend

    def run(self, ctx: BuildContext) -> None:
        kernels = find_kernels(ctx)
        if not kernels:
            if is_bootable(ctx):
                raise BadInput("no kernel installed, but the image is bootable: add a kernel package to "
                               "%packages (linux-image-amd64 on Debian, kernel on Fedora/RHEL), or say "
                               "`bootloader --location=none` for an image that is never booted directly",
                               location=where(ctx, ctx.build.packages.line))
            ctx.facts["kernels"] = []
            return
        prepare = getattr(self.backend, "prepare_initramfs", None)
        if prepare:
            prepare(ctx.root)
        with for_build(ctx) as chroot:
            for kernel in kernels:
                ctx.log.info("initramfs for kernel %s", kernel["version"])
                try:
                    chroot.run(self.backend.initramfs_argv(kernel["version"]), timeout=INITRAMFS_TIMEOUT)
                except CommandError as exc:
                    raise OperationFailed(f"initramfs for kernel {kernel['version']} failed: {exc}") from exc
                initramfs = self.backend.initramfs_path(kernel["version"])
                target = rootfs.resolve(ctx.root, initramfs)
                if not target.is_file() or target.stat().st_size == 0:
                    raise OperationFailed(f"kernel {kernel['version']}: no initramfs at {initramfs} after generating it")
                kernel["initramfs"] = initramfs
        ctx.facts["kernels"] = kernels


def is_bootable(ctx: BuildContext) -> bool:
    bootloader = ctx.kickstart.deploy.bootloader
    return not (bootloader is not None and bootloader.location == "none")


def find_kernels(ctx: BuildContext) -> list[dict[str, str]]:
    """[{"version", "kernel"}] sorted by version, for each /lib/modules/VERSION with a kernel image."""
    kernels = []
    for modules in ("usr/lib/modules", "lib/modules"):
        base = ctx.root / modules
        if not base.is_dir():
            continue
        for entry in sorted(base.iterdir()):
            version = entry.name
            if any(k["version"] == version for k in kernels):
                continue
            for image in (f"/boot/vmlinuz-{version}", f"/{modules}/{version}/vmlinuz"):
                if rootfs.resolve(ctx.root, image).is_file():
                    kernels.append({"version": version, "kernel": image})
                    break
    return sorted(kernels, key=lambda k: k["version"])
