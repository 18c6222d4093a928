"""The one install code path: start, disk, partition, mkfs, stream, verify, configure, bootloader, finish.

`run_install(plan, target, reporter)` is called by `metalstream install` (ConsoleReporter) and by
`metalstream agent` (HttpReporter). Everything that can be decided from data (disk choice, wipe
permission, layout) is decided before the first write. The old partition table is destroyed
first and the bootloader written last, so an install that fails anywhere leaves a disk that boots
nothing rather than a half-written system. Reporter.result is sent once, success or failure.
"""
from __future__ import annotations

import dataclasses
import logging
import os
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
from .deferred import Resolver, run_deploy_time
from .disks import list_disks
from .esp import Esp
from .partition import Layout, check_disk_use, render_sfdisk
from .plan import memory_bytes
from .report import Reporter
from .shim import planned_uefi_loader
from .storage.apply import AppliedStorage, apply_storage
from .storage.bootargs import initramfs_kind, storage_kernel_args
from .storage.choose import choose_disks
from .storage.model import StoragePlan, TargetDisk
from .storage.planner import plan_storage
from .stream import ImageVerificationError, StreamResult, stream_image
from .writeback import EarlyWriteback
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
    storage: StoragePlan | None = None  # every disk and device of the install (layout: its first disk's)
    targets: list[Target] = field(default_factory=list)  # every disk written, first disk first

    @property
    def stacked(self) -> bool:
        """More than one plain disk's partitions: RAID, LUKS, LVM, btrfs or several disks."""
        return self.storage is not None and (len(self.storage.disks) > 1 or bool(self.storage.devices))


class _Phases:
    """Tracks the current phase so a failure is reported against the phase it happened in."""

    def __init__(self, reporter: Reporter):
        self.reporter = reporter
        self.current = "start"

    def __call__(self, phase: str, message: str) -> None:
        self.current = phase
        log.info("[%s] %s", phase, message)
        self.reporter.event(phase, message)


Targets = str | Target | dict[str, str | Target] | None


def _target_disks(plan: Plan, target: Targets) -> list[tuple[TargetDisk, Target]]:
    """The disks to write: the given path/Target (the only disk), the given {storage name: path/Target}, or
    the disks the plan's names and hints choose (deployer.storage.choose)."""
    if target is None:
        chosen = choose_disks(plan, list_disks())
        for disk in chosen:
            log.info("disk chosen for %s: %s", disk.key or "the layout", disk.path)
        return [(d, Target(d.path, d.size, False, d.sector_size)) for d in chosen]
    given = target if isinstance(target, dict) else {"": target}
    disks = []
    for key, value in given.items():
        t = value if isinstance(value, Target) else blockdev.open_target(value)
        names = tuple(dict.fromkeys((key, *t.names))) if key else t.names
        disks.append((TargetDisk(key, t.path, t.size, t.sector_size, names), t))
    return disks


def prepare_storage(plan: Plan, target: Targets, *, wipe_flag: str = "--wipe") -> tuple[list[Target], StoragePlan]:
    """Every decision for every disk, no write: the disks, permission to overwrite each, and the storage plan
    (a plain layout on one disk is exactly `prepare`'s)."""
    disks = _target_disks(plan, target)
    for _, t in disks:
        blockdev.refuse_if_in_use(t)
    storage = plan_storage(plan.storage, plan.boot_mode, [d for d, _ in disks],
                           image_bytes=plan.image.uncompressed_size, memory_bytes=memory_bytes())
    if storage.crypts and not plan.encryption_passphrase:
        first = storage.crypts[0]
        raise BadInput("the layout encrypts devices (--encrypted) but the plan gives no passphrase "
                       "(plan `encryption.passphrase`; `--encryption-passphrase-file`)",
                       location="storage" + (f" (kickstart line {first.line})" if first.line else ""))
    permission = plan.storage if len(disks) == 1 or plan.storage is None \
        else dataclasses.replace(plan.storage, partitions=[])  # --ondisk was checked by the planner
    written = {d.path for d in storage.disks}
    for disk, t in disks:
        if disk.path in written:
            check_disk_use(permission, disk_names=disk.names or t.names, existing=blockdev.existing_signatures(t),
                           wipe_flag=wipe_flag)
    return [t for d, t in disks if d.path in written], storage


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


def _install_bootloaders(plan: Plan, root: Path, result: InstallResult, applied: AppliedStorage, esp: Esp | None,
                         work: Path, phase: _Phases, image_esp: Path) -> list[str]:
    storage, layout = result.storage, result.layout
    boot_source = storage if result.stacked else layout
    kernels = plan.image.kernels
    kernel_args = " ".join(a for a in (plan.kernel_args,
                                       plan.storage.bootloader.append if plan.storage and plan.storage.bootloader
                                       else "",
                                       *(storage_kernel_args(storage, initramfs_kind(root)) if result.stacked
                                         else ())) if a)
    timeout = plan.storage.bootloader.timeout if plan.storage and plan.storage.bootloader else None
    bootloader.write_grub_cfg(root, bootloader.grub_cfg(boot_source, kernels, title=plan.image.name,
                                                        kernel_args=kernel_args,
                                                        timeout=3 if timeout is None else timeout))
    if plan.storage and plan.storage.bootloader and plan.storage.bootloader.location == "none":
        phase("bootloader", "bootloader --location=none: grub.cfg written, no boot code installed")
        return ["grub.cfg only"]
    done = []
    if plan.boot_mode in ("bios", "both"):
        boot_device = applied.path(storage.boot.device)
        for disk in storage.disks:  # every disk with a BIOS boot partition: any one of them boots a RAID1
            target = applied.targets[disk.key]
            if disk.layout.by_role("biosboot") is None:
                continue
            done.append(bootloader.install_bios(root, boot_source, target.path, work,
                                                boot_device=boot_device if target.via_offset_loops else None)
                        + (f" on {target.path}" if result.stacked else ""))
    if plan.boot_mode in ("uefi", "both"):
        uefi = bootloader.install_uefi(root, boot_source, esp, work, image_esp=image_esp,
                                       require_signed=plan.secure_boot)
        done.append(uefi.description)
        for disk_path, number in _esp_partitions(storage, applied):
            if bootloader.add_efi_boot_entry(disk_path, number, plan.image.name, uefi.loader):
                done.append(f"efibootmgr entry for {uefi.loader}" + (f" on {disk_path}" if result.stacked else ""))
    return done


def _esp_partitions(storage: StoragePlan, applied: AppliedStorage) -> list[tuple[str, int]]:
    """(disk, partition number) of the ESP, or of each member of an ESP on RAID1, on block devices only."""
    esp = next((f for f in storage.filesystems if f.fstype == "vfat"), None)
    if esp is None:
        return []
    refs = storage.stack_under(esp.device)
    found = []
    for ref in refs:
        if ref.startswith("part:"):
            _, key, number = ref.split(":")
            target = applied.targets[key]
            if not target.via_offset_loops:
                found.append((target.path, int(number)))
    return found


def run_install(plan: Plan, target: Targets, reporter: Reporter, *, dry_run: bool = False,
                wipe_flag: str = "--wipe", tls_verify: Verify = True,
                resolve_includes: Resolver | None = None) -> InstallResult:
    """Install `plan` onto `target` (path, Target, {storage name: path/Target} for several disks, or None =
    choose by the plan's disk names and hints); an https image's certificate is checked with `tls_verify`.
    The plan's %pre scripts run first (also in a dry run: they decide the layout), then `resolve_includes`
    merges the storage commands of the %includes they wrote (deployer.deferred)."""
    phase = _Phases(reporter)
    try:
        phase("start", f"installing image {plan.image.name} (deployment {plan.deployment_id})")
        plan = run_deploy_time(plan, resolve_includes, phase)
        phase("disk", "choosing the disks and planning the storage")
        targets, storage = prepare_storage(plan, target, wipe_flag=wipe_flag)
        layout = storage.disks[0].layout
        result = InstallResult(targets[0], layout, render_sfdisk(layout), dry_run, root_uuid=storage.root.uuid,
                               storage=storage, targets=targets)
        for t in targets:
            phase("disk", f"target {t.path} ({t.size / (1 << 30):.1f} GiB{', image file' if t.is_file else ''})")
        if dry_run:
            if plan.boot_mode in ("uefi", "both"):
                manifest = plan.image.manifest
                result.uefi_loader = planned_uefi_loader(manifest.get("bootloader") if manifest else None)
            phase("finish", "dry run: nothing was written")
            return result
        _check_other_sources_trusted(plan, tls_verify)
        with tempfile.TemporaryDirectory(prefix="metalstream-install-") as tmp:
            work = Path(tmp)
            _apply(plan, work, phase, result, tls_verify)
        phase("finish", f"installed {plan.image.name} on {', '.join(t.path for t in targets)}")
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


def _apply(plan: Plan, work: Path, phase: _Phases, result: InstallResult, tls_verify: Verify) -> None:
    storage = result.storage
    phase("partition", "wiping old signatures and writing "
          + "; ".join(f"a GPT with {len(d.layout.partitions)} partitions" + (f" on {d.path}" if result.stacked else "")
                      for d in storage.disks))
    with HostKeyForge(work / "host-keys") as host_keys:
        _write_disk(plan, work, phase, result, host_keys, tls_verify)
    os.sync()


def _write_disk(plan: Plan, work: Path, phase: _Phases, result: InstallResult, host_keys: HostKeyForge,
                tls_verify: Verify) -> None:
    storage = result.storage
    with apply_storage(storage, plan.encryption_passphrase, work, phase=phase) as applied:
        esp_fs = next((f for f in storage.filesystems if f.fstype == "vfat"), None)
        esp = Esp(applied.path(esp_fs.device)) if esp_fs else None
        root = applied.root
        with EarlyWriteback(root):  # until the bootloader is in: the final sync then finds little left
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
            phase("configure", "fstab, hostname, network, keys, machine-id"
                  + (", crypttab" if storage.crypts else "") + (", mdadm.conf" if storage.arrays else ""))
            image_esp = work / "image-boot-efi"
            moved = _move_boot_efi(root, esp, image_esp)
            result.configured = configure_target(root, plan, storage if result.stacked else result.layout, host_keys)
            result.configured["esp_files"] = moved
            phase("bootloader", f"boot mode {plan.boot_mode}")
            result.bootloaders = _install_bootloaders(plan, root, result, applied, esp, work, phase, image_esp)
            phase("bootloader", "installed: " + ", ".join(result.bootloaders))
        phase("finish", "writing everything to the disk and unmounting")
