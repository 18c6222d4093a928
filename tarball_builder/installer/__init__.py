"""The installer environment (`metalstream build --format installer`): a kernel plus a zstd newc
initramfs holding python3, the deployer agent and an /init that brings up udev and DHCP and starts
the agent with metalstream.server= / metalstream.token= from the kernel command line.

From a root built from kickstarts/installer.ks, `make_installer(ctx)` writes NAME.vmlinuz and
NAME.initramfs into the output directory, plus NAME.shimx64.efi and NAME.grubnetx64.efi when the root
has the distribution's signed loaders (Secure Boot network boot), and returns the installer manifest
(format metalstream-installer/1, docs/contracts.md). See docs/installer.md.
"""
from __future__ import annotations

import os
import shutil
import time
from pathlib import Path

from metalstream.contracts.manifests import file_entry, installer_manifest

from ..context import BuildContext
from . import archive
from . import stage as staging
from .kernel import find_kernel, read_module_tree
from .loaders import find_signed_loaders, output_name
from .modules import select
from .trim import files_to_copy


def make_installer(ctx: BuildContext) -> dict:
    """Write NAME.vmlinuz, NAME.initramfs (and the signed loaders) for ctx.root; return the installer manifest."""
    out_dir = ctx.options.output_dir
    name = ctx.options.name
    kernel_out, initramfs_out = out_dir / f"{name}.vmlinuz", out_dir / f"{name}.initramfs"
    packages = ctx.build.packages
    where = f"{ctx.kickstart.source}:{packages.line}" if packages.line else (ctx.kickstart.source or "%packages")
    version, kernel_image = find_kernel(ctx.root, where=where)
    loaders = find_signed_loaders(ctx.root, where=where)
    loaders_out = {key: out_dir / output_name(name, key) for key in loaders}
    module_paths = select(read_module_tree(ctx.root, version))
    ctx.log.info("installer: kernel %s, %d modules kept", version, len(module_paths))

    stage = ctx.workdir / "installer-initramfs"
    _remove(stage)
    stage.mkdir(parents=True)
    began = time.monotonic()
    try:
        staging.copy_selected(ctx.root, files_to_copy(ctx.root, version, module_paths), stage)
        staging.add_agent(stage)
        staging.add_init(stage)
        ca_sha256 = staging.add_ca(stage, ctx.options.ca_file) if ctx.options.ca_file else None
        staging.rebuild_module_index(stage, version)
        staging.compile_and_check(stage, ctx.source_date_epoch)
        staging.clamp_mtimes(stage, ctx.source_date_epoch)
        uncompressed_files, entries = staging.tree_size(stage)
        ctx.log.info("installer: staged %d entries (%d bytes) in %.0f s", entries, uncompressed_files,
                     time.monotonic() - began)
        out_dir.mkdir(parents=True, exist_ok=True)
        cpio_size = archive.write_initramfs(stage, initramfs_out, level=ctx.options.zstd_level,
                                            threads=ctx.options.zstd_threads)
        _copy_beside(kernel_image, kernel_out, ctx.source_date_epoch)
        for key, source in loaders.items():
            _copy_beside(source, loaders_out[key], ctx.source_date_epoch)
    except BaseException:
        for written in (kernel_out, initramfs_out, *loaders_out.values()):
            written.unlink(missing_ok=True)
        raise
    finally:
        _remove(stage)
    manifest = installer_manifest(
        name=name, kernel=file_entry(kernel_out), initramfs=file_entry(initramfs_out), kernel_version=version,
        created=ctx.source_date_epoch, kickstart_sha256=ctx.kickstart.sha256,
        initramfs_uncompressed_size=cpio_size, file_count=entries, module_count=len(module_paths),
        agent_sha256=staging.agent_sources_sha256(),
        secure_boot={key: file_entry(path) for key, path in loaders_out.items()} if loaders_out else None)
    if loaders_out:
        ctx.log.info("installer: signed first-stage loaders %s", ", ".join(p.name for p in loaders_out.values()))
    if ca_sha256:
        # Not a field of installer_manifest() yet; readers keep fields they do not know (docs/contracts.md).
        manifest["ca_sha256"] = ca_sha256
    ctx.facts["installer"] = manifest
    return manifest


def _copy_beside(source: Path, target: Path, epoch: int) -> None:
    """Copy a file from the root as is (mode 0644, mtime clamped): the same root gives the same bytes."""
    partial = target.with_name(f".{target.name}.partial")
    try:
        shutil.copyfile(source, partial)
        partial.chmod(0o644)
        os.utime(partial, (epoch, epoch))
        partial.replace(target)
    finally:
        partial.unlink(missing_ok=True)


def _remove(path: Path) -> None:
    if path.exists():
        shutil.rmtree(path)
