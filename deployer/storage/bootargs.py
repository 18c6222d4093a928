"""What the boot chain needs to reach a stacked root: grub's modules for the device holding /boot, and the
kernel arguments that let the target's generic initramfs assemble, activate and unlock the root's stack.

The agent never runs target code, so the image's pregenerated (generic) initramfs is kept and told on the
kernel command line what to do:
- initramfs-tools (Debian): md arrays are assembled by udev and scripts/local-block/mdadm (degraded after
  about 20 s), complete volume groups are activated by udev (69-lvm.rules), btrfs members are scanned by
  local-premount/btrfs: none of these need an argument. LUKS needs one: the generic cryptroot/crypttab is
  empty (written at update-initramfs time), but local-top/cryptroot rebuilds it from every `cryptopts=` of
  the command line, so each LUKS device the root sits on gets
  `cryptopts=target=NAME,source=UUID=<luks uuid>,luks,discard` (other LUKS devices are opened by systemd from
  /etc/crypttab). Regenerating the initramfs in a chroot instead would run target code and take ~35 s.
- dracut (RPM family): `rd.luks.uuid=`, `rd.md.uuid=`, `rd.lvm.lv=` for the devices under / and swap, as
  anaconda writes them.
- btrfs root on a subvolume: `rootflags=subvol=NAME` (both).
"""
from __future__ import annotations

from pathlib import Path

from metalstream.errors import OperationFailed
from metalstream.rootfs import resolve

from .model import Array, Crypt, LogicalVolume, StoragePlan

GRUB_RAID_MODULES = {"raid4": "raid5rec", "raid5": "raid5rec", "raid6": "raid6rec"}


def initramfs_kind(root: Path) -> str | None:
    """The target's initramfs generator: "initramfs-tools", "dracut", or None (neither found)."""
    if resolve(root, "usr/share/initramfs-tools").is_dir():
        return "initramfs-tools"
    if resolve(root, "usr/lib/dracut").is_dir():
        return "dracut"
    return None


def grub_modules(plan: StoragePlan, ref: str) -> tuple[str, ...]:
    """grub modules that read the device `ref` through its stack (it cannot open LUKS without a passphrase)."""
    modules: list[str] = []
    for below in plan.stack_under(ref):
        device = plan.device(below)
        if isinstance(device, Crypt):
            raise OperationFailed(f"/boot would sit on the encrypted {device.name}: grub would have to ask for the "
                                  "passphrase; give /boot its own unencrypted partition or RAID1")
        if isinstance(device, Array):
            modules += ["mdraid09" if device.metadata.startswith("0") else "mdraid1x",
                        *([GRUB_RAID_MODULES[device.level]] if device.level in GRUB_RAID_MODULES else [])]
        elif isinstance(device, LogicalVolume):
            modules.append("lvm")
    return tuple(dict.fromkeys(modules))


def plan_boot_fs(plan: StoragePlan) -> tuple[str, str, str, tuple[str, ...]]:
    """(UUID, fstype, path of /boot inside that filesystem, grub modules) of the filesystem holding /boot."""
    boot = plan.boot
    inside = "" if boot.mountpoint == "/boot" else "/boot"
    prefix = (f"/{boot.subvol}" if boot.subvol else "") + inside
    return boot.uuid, boot.fstype, prefix, grub_modules(plan, boot.device)


def _under_root(plan: StoragePlan) -> list[str]:
    """References of the devices the root and swap filesystems sit on, root's first."""
    wanted = [plan.root, *(f for f in plan.filesystems if f.fstype == "swap")]
    return list(dict.fromkeys(ref for fs in wanted for ref in plan.stack_under(fs.device)))


def storage_kernel_args(plan: StoragePlan, initramfs: str | None) -> list[str]:
    args = [f"rootflags=subvol={plan.root.subvol}"] if plan.root.subvol else []
    root_stack = plan.stack_under(plan.root.device)
    devices = [plan.device(ref) for ref in _under_root(plan)]
    if initramfs == "dracut":
        args += [f"rd.md.uuid={d.uuid}" for d in devices if isinstance(d, Array)]
        args += [f"rd.lvm.lv={d.vg}/{d.name}" for d in devices if isinstance(d, LogicalVolume) and d.kind != "thinpool"]
        args += [f"rd.luks.uuid=luks-{d.uuid}" for d in devices if isinstance(d, Crypt)]
    else:
        args += [f"cryptopts=target={d.name},source=UUID={d.uuid},luks,discard"
                 for d in devices if isinstance(d, Crypt) and d.ref in root_stack]
    return args
