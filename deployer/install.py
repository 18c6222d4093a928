"""The one install code path: start, disk, partition, mkfs, stream, verify, configure, bootloader, finish.

`run_install(plan, target, reporter)` is called by `metalstream install` (ConsoleReporter) and by
`metalstream agent` (HttpReporter). Everything that can be decided from data (disk choice, wipe
permission, layout) is decided before the first write. The old partition table is destroyed
first and the bootloader written last, so an install that fails anywhere leaves a disk that boots
nothing rather than a half-written system. Reporter.result is sent once, success or failure.
"""
from __future__ import annotations

import logging
import os
import re
import shutil
import tempfile
from dataclasses import dataclass, field
from pathlib import Path

from metalstream import rootfs
from metalstream.contracts.plan import Plan
from metalstream.errors import BadInput, MetalstreamError

from . import blockdev, bootloader
from .blockdev import Target
from .configure import HostKeyForge, configure_target
from .disks import list_disks, select_disk
from .esp import Esp
from .partition import Layout, check_disk_use, plan_layout, render_sfdisk
from .plan import memory_bytes
from .report import Reporter
from .shim import planned_uefi_loader
from .stream import ImageVerificationError, StreamResult, stream_image
from .tls import Verify, check_source_trusted

log = logging.getLogger("metalstream.install")


@dataclass
class InstallResult:
    target: Target
    layout: Layout
    sfdisk_script: str
    dry_run: bool
    root_uuid: str | None = None
    stream: StreamResult | None = None
    bootloaders: list[str] = field(default_factory=list)
    configured: dict = field(default_factory=dict)
    uefi_loader: str | None = None  # dry run: the UEFI loader chain the manifest promises; None: BIOS only


class _Phases:
    """Tracks the current phase so a failure is reported against the phase it happened in."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.current = "start"

    def __call__(self, phase: str, message: str) -> None:
        self.current = phase
        log.info("[%s] %s", phase, message)
        self.reporter.event(phase, message)


def resolve_target(plan: Plan, target: str | Target | None) -> Target:
    """The disk to install on: the given path/Target, or the one the plan's hints select."""
    if isinstance(target, Target):
        return target
    if target is not None:
        return blockdev.open_target(target)
    storage = plan.storage
    disk = select_disk(list_disks(), plan.disk_hints,
                       only_use=storage.ignoredisk.only_use if storage and storage.ignoredisk else [],
                       ignore=storage.ignoredisk.ignore if storage and storage.ignoredisk else [])
    log.info("disk chosen: %s", disk.describe())
    return Target(disk.path, disk.size, False, disk.logical_sector_size)


def _refuse_if_in_use(target: Target) -> None:
    """A block device that is mounted, swapped on, or held (dm, md) is never touched."""
    if target.is_file:
        return
    own = re.compile(re.escape(target.path) + r"(p?\d+)?")
    busy = []
    for table in ("/proc/mounts", "/proc/swaps"):
        with open(table) as f:
            busy += [line.split()[0] for line in f if line.strip() and own.fullmatch(line.split()[0])]
    name = os.path.basename(target.path)
    holders_dir = f"/sys/class/block/{name}/holders"
    busy += [f"held by {h}" for h in (os.listdir(holders_dir) if os.path.isdir(holders_dir) else [])]
    if busy:
        raise BadInput(f"{target.path} is in use ({', '.join(sorted(set(busy)))}); refusing to touch it",
                       location="--to")


def prepare(plan: Plan, target: str | Target | None, *, wipe_flag: str = "--wipe") -> tuple[Target, Layout]:
    """Every decision, no write: the target, permission to overwrite it, and the partition layout."""
    resolved = resolve_target(plan, target)
    _refuse_if_in_use(resolved)
    layout = plan_layout(resolved.size, plan.boot_mode, plan.storage, image_bytes=plan.image.uncompressed_size,
                         sector_size=resolved.sector_size, memory_bytes=memory_bytes())
    existing = blockdev.existing_signatures(resolved)
    check_disk_use(plan.storage, disk_names=resolved.names, existing=existing, wipe_flag=wipe_flag)
    return resolved, layout


def _move_boot_efi(root: Path, esp: Esp | None, keep: Path) -> int:
    """The image's /boot/efi content belongs on the ESP; the directory stays as the mount point. The content
    is kept in `keep` for the bootloader phase (the RPM family's shim and signed grub are in it)."""
    source = rootfs.resolve(root, "boot/efi")  # a symlink in the image is followed inside it, never to the host
    keep.mkdir()
    if esp is None or not source.is_dir():
        return 0
    for child in source.iterdir():
        shutil.move(child, keep / child.name)
    return esp.put_tree(keep, "/")


def _install_bootloaders(plan: Plan, root: Path, layout: Layout, target: Target, devices: dict[int, str],
                         esp: Esp | None, work: Path, phase: _Phases, image_esp: Path) -> list[str]:
    kernels = plan.image.kernels
    kernel_args = " ".join(a for a in (plan.kernel_args,
                                       plan.storage.bootloader.append if plan.storage and plan.storage.bootloader
                                       else "") if a)
    timeout = plan.storage.bootloader.timeout if plan.storage and plan.storage.bootloader else None
    bootloader.write_grub_cfg(root, bootloader.grub_cfg(layout, kernels, title=plan.image.name,
                                                        kernel_args=kernel_args,
                                                        timeout=3 if timeout is None else timeout))
    if plan.storage and plan.storage.bootloader and plan.storage.bootloader.location == "none":
        phase("bootloader", "bootloader --location=none: grub.cfg written, no boot code installed")
        return ["grub.cfg only"]
    done = []
    if plan.boot_mode in ("bios", "both"):
        boot = next((p for p in layout.partitions if p.mountpoint == "/boot"), layout.root)
        done.append(bootloader.install_bios(root, layout, target.path, work,
                                            boot_device=devices[boot.number] if target.via_offset_loops else None))
    if plan.boot_mode in ("uefi", "both"):
        uefi = bootloader.install_uefi(root, layout, esp, work, image_esp=image_esp, require_signed=plan.secure_boot)
        done.append(uefi.description)
        if not target.via_offset_loops and bootloader.add_efi_boot_entry(target.path, layout.by_role("esp").number,
                                                                          plan.image.name, uefi.loader):
            done.append(f"efibootmgr entry for {uefi.loader}")
    return done


def run_install(plan: Plan, target: str | Target | None, reporter: Reporter, *, dry_run: bool = False,
                wipe_flag: str = "--wipe", tls_verify: Verify = True) -> InstallResult:
    """Install `plan` onto `target` (path, Target, or None = choose by the plan's disk hints); an https
    image's certificate is checked with `tls_verify` (deployer.tls.trust)."""
    phase = _Phases(reporter)
    try:
        phase("start", f"installing image {plan.image.name} (deployment {plan.deployment_id})")
        phase("disk", "choosing the disk and planning the layout")
        resolved, layout = prepare(plan, target, wipe_flag=wipe_flag)
        result = InstallResult(resolved, layout, render_sfdisk(layout), dry_run, root_uuid=layout.root.fs_uuid)
        phase("disk", f"target {resolved.path} ({resolved.size / (1 << 30):.1f} GiB"
                      f"{', image file' if resolved.is_file else ''})")
        if dry_run:
            if plan.boot_mode in ("uefi", "both"):
                manifest = plan.image.manifest
                result.uefi_loader = planned_uefi_loader(manifest.get("bootloader") if manifest else None)
            phase("finish", "dry run: nothing was written")
            return result
        _check_other_sources_trusted(plan, tls_verify)
        with tempfile.TemporaryDirectory(prefix="metalstream-install-") as tmp:
            work = Path(tmp)
            _apply(plan, resolved, layout, work, phase, result, tls_verify)
        phase("finish", f"installed {plan.image.name} on {resolved.path}")
        reporter.result(success=True, phase="finish", root_uuid=result.root_uuid)
        return result
    except MetalstreamError as exc:
        reporter.result(success=False, phase=phase.current, error=str(exc))
        raise
    except BaseException as exc:  # Ctrl-C or a bug: still say which phase it stopped in
        reporter.result(success=False, phase=phase.current, error=f"{type(exc).__name__}: {exc}")
        raise


def _check_other_sources_trusted(plan: Plan, tls_verify: Verify) -> None:
    """The callers check the image's first URL before any write; its other sources (mirrors) get the same
    TLS handshake here, still before the disk is touched: a certificate that fails is never failed over."""
    for url in plan.image.urls[1:]:
        check_source_trusted(url, tls_verify)


def _apply(plan: Plan, target: Target, layout: Layout, work: Path, phase: _Phases, result: InstallResult,
           tls_verify: Verify) -> None:
    phase("partition", f"wiping old signatures and writing a GPT with {len(layout.partitions)} partitions")
    with HostKeyForge(work / "host-keys") as host_keys:
        _write_disk(plan, target, layout, work, phase, result, host_keys, tls_verify)
    os.sync()


def _write_disk(plan: Plan, target: Target, layout: Layout, work: Path, phase: _Phases, result: InstallResult,
                host_keys: HostKeyForge, tls_verify: Verify) -> None:
    blockdev.wipe(target)
    blockdev.write_table(target, layout)
    with blockdev.partition_devices(target, layout) as devices:
        phase("mkfs", ", ".join(f"{p.fstype} on #{p.number}" for p in layout.partitions if p.fstype))
        blockdev.make_filesystems(layout, devices)
        esp_part = layout.by_role("esp")
        esp = Esp(devices[esp_part.number]) if esp_part else None
        with blockdev.mounted_tree(layout, devices, work / "root") as root:
            phase("stream", "streaming " + " or ".join(plan.image.urls))
            result.stream = stream_image(
                plan.image.urls, root, sha256=plan.image.sha256, size=plan.image.size, verify=tls_verify,
                progress=lambda done, total: phase.reporter.event("stream", "streaming image", done, total))
            phase.current = "verify"
            if result.stream.sha256 != plan.image.sha256:  # stream_image checks too; never trust one place only
                raise ImageVerificationError(f"image sha256 {result.stream.sha256} != plan {plan.image.sha256}")
            phase("verify", f"sha256 {result.stream.sha256[:16]}... matches the plan "
                            f"({result.stream.bytes_read} bytes from {result.stream.origin}, "
                            f"{result.stream.resumes} resume(s), {result.stream.failovers} failover(s))")
            phase("configure", "fstab, hostname, network, keys, machine-id")
            image_esp = work / "image-boot-efi"
            moved = _move_boot_efi(root, esp, image_esp)
            result.configured = configure_target(root, plan, layout, host_keys)
            result.configured["esp_files"] = moved
            phase("bootloader", f"boot mode {plan.boot_mode}")
            result.bootloaders = _install_bootloaders(plan, root, layout, target, devices, esp, work, phase,
                                                      image_esp)
            phase("bootloader", "installed: " + ", ".join(result.bootloaders))
            phase("finish", "writing everything to the disk and unmounting")
