"""Install the bootloader, LAST: grub.cfg written directly, the image's shim + signed grub where the
distribution puts them (deployer.shim) or else a grub-mkimage UEFI grub at the removable path
EFI/BOOT/BOOTX64.EFI, and BIOS grub into the 1 MiB BIOS boot partition.

Nothing runs inside the target: grub images are made with this machine's grub-mkimage from the
target's own module directory (ROOT/usr/lib/grub/<platform>), so the target's grub version boots.
"""
from __future__ import annotations

import os
import re
import shutil
import tempfile
from dataclasses import dataclass
from pathlib import Path

from metalstream import proc
from metalstream.contracts.efivars import EFIVARS
from metalstream.contracts.plan import Kernel
from metalstream.contracts.secureboot import DEBIAN_GRUB, DEBIAN_SHIM
from metalstream.errors import OperationFailed

from .esp import Esp
from .grubimage import read_grub_image
from .partition import Layout, Partition
from .storage.bootargs import plan_boot_fs
from .storage.model import StoragePlan
from .shim import FALLBACK, REMOVABLE_DIR, REMOVABLE_LOADER, ShimChain, find_shim_chain

EFI_MODULES = ("part_gpt", "part_msdos", "fat", "ext2", "xfs", "normal", "configfile", "search", "search_fs_uuid",
               "linux", "echo", "test", "all_video", "gzio", "serial", "terminal", "sleep", "efi_gop", "reboot")
BIOS_MODULES = ("biosdisk", "part_gpt", "part_msdos", "ext2", "xfs", "normal", "configfile", "search",
                "search_fs_uuid", "linux", "echo", "test", "gzio", "serial", "terminal", "sleep", "reboot")
_SAFE_WORD = re.compile(r"[A-Za-z0-9=,._/:+@%-]+")
# What the grub.cfg files written here use besides the /boot filesystem's module: under Secure Boot the signed
# grub cannot insmod from disk, so these must be built into it.
SIGNED_GRUB_NEEDS = ("part_gpt", "search", "configfile", "normal", "linux", "test", "echo")


@dataclass(frozen=True)
class BootFs:
    """The filesystem holding /boot: its UUID, the path of /boot inside it ("/boot" or "", below the btrfs
    subvolume's directory) and the grub modules that reach the device it sits on (RAID, LVM)."""
    uuid: str
    fstype: str
    prefix: str
    modules: tuple[str, ...] = ()


def boot_fs(source: Layout | StoragePlan) -> BootFs:
    if isinstance(source, StoragePlan):
        return BootFs(*plan_boot_fs(source))
    boot = next((p for p in source.partitions if p.mountpoint == "/boot"), None)
    part: Partition = boot or source.root
    return BootFs(part.fs_uuid, part.fstype, "" if boot else "/boot")


def root_uuid(source: Layout | StoragePlan) -> str:
    return source.root.uuid if isinstance(source, StoragePlan) else source.root.fs_uuid


def _grub_word(word: str) -> str:
    return word if _SAFE_WORD.fullmatch(word) else "'" + word.replace("'", "'\\''") + "'"


def grub_cfg(layout: Layout | StoragePlan, kernels: list[Kernel], *, title: str, kernel_args: str,
             timeout: int = 3) -> str:
    """grub.cfg finding /boot by filesystem UUID, booting root=UUID=... with the manifest's kernel+initramfs.
    For a StoragePlan the stack's kernel arguments (storage_kernel_args) belong in `kernel_args`."""
    if not kernels:
        raise OperationFailed("the image manifest lists no kernel: nothing to boot")
    boot = boot_fs(layout)
    args = " ".join(_grub_word(w) for w in ["root=UUID=" + root_uuid(layout), "ro", *kernel_args.split()])
    lines = ["# written by metalstream at deploy time; no grub-mkconfig ran on this system",
             f"set timeout={timeout}", "set default=0", "insmod part_gpt",
             *(f"insmod {m}" for m in boot.modules), f"insmod {_grub_module(boot.fstype)}",
             f"search --no-floppy --fs-uuid --set=root {boot.uuid}"]
    if "console=ttyS0" in kernel_args:
        lines += ["serial --unit=0 --speed=115200", "terminal_input console serial",
                  "terminal_output console serial"]
    for i, k in enumerate(kernels):
        kernel = boot.prefix + k.kernel.removeprefix("/boot")
        initrd = boot.prefix + k.initramfs.removeprefix("/boot")
        lines += ["", f"menuentry {_grub_word(f'{title} ({k.version})')} --id metalstream-{i} {{",
                  f"\tlinux {kernel} {args}", f"\tinitrd {initrd}", "}"]
    return "\n".join(lines) + "\n"


def _grub_module(fstype: str) -> str:
    return "ext2" if fstype.startswith("ext") else fstype


def with_boot_modules(modules: tuple[str, ...], layout: Layout | StoragePlan) -> tuple[str, ...]:
    """A grub image's modules plus what its early config needs to find /boot (RAID, LVM, btrfs)."""
    boot = boot_fs(layout)
    return (*modules, *(m for m in (*boot.modules, _grub_module(boot.fstype)) if m not in modules))


def early_cfg(layout: Layout | StoragePlan) -> str:
    """Embedded in the grub image: find the /boot filesystem by UUID and read its grub.cfg."""
    boot = boot_fs(layout)
    return (f"search --no-floppy --fs-uuid --set=root {boot.uuid}\n"
            f"set prefix=($root){boot.prefix}/grub\n"
            f"configfile ($root){boot.prefix}/grub/grub.cfg\n")


def write_grub_cfg(root: Path, text: str) -> Path:
    path = root / "boot/grub/grub.cfg"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    return path


def _copy_modules(root: Path, platform: str) -> None:
    """Mirror what grub-install does: the platform's modules under /boot/grub, for `insmod` in grub.cfg."""
    source, dest = root / "usr/lib/grub" / platform, root / "boot/grub" / platform
    if dest.exists():
        shutil.rmtree(dest)
    shutil.copytree(source, dest, ignore=shutil.ignore_patterns("*.h", "*.pl", "*.py", "*.sh"))


def mkimage(root: Path, platform: str, modules: tuple[str, ...], early: str, output: Path) -> None:
    directory = root / "usr/lib/grub" / platform
    if not (directory / "moddep.lst").exists():
        raise OperationFailed(f"the image has no grub for {platform} ({directory.relative_to(root)} is missing): "
                              f"install grub for {platform} in the image or choose another boot mode")
    with tempfile.NamedTemporaryFile("w", suffix=".cfg", delete=True) as cfg:
        cfg.write(early)
        cfg.flush()
        proc.run(["grub-mkimage", "-O", platform, "-d", directory, "-c", cfg.name, "-p", "/boot/grub",
                  "-o", output, *modules])


@dataclass(frozen=True)
class UefiLoader:
    description: str  # what was installed, for the bootloader phase's message
    loader: str  # the ESP path an NVRAM entry starts (efibootmgr --loader)


def install_uefi(root: Path, layout: Layout | StoragePlan, esp: Esp, work: Path, *, image_esp: Path | None = None,
                 require_signed: bool = False) -> UefiLoader:
    """The image's shim + signed grub as its distribution installs them, else a grub-mkimage image at
    EFI/BOOT/BOOTX64.EFI. `image_esp` is the image's /boot/efi content (RPM family: the chain is there);
    `require_signed` (a Secure Boot plan) refuses the unsigned fallback."""
    chain = find_shim_chain(root, image_esp)
    if chain is not None:
        return UefiLoader(_install_shim_chain(chain, root, layout, esp, work, require_signed=require_signed),
                          chain.loader)
    if require_signed:
        raise OperationFailed("the plan asks for Secure Boot but the image has no signed shim and grub "
                              f"(Debian: /{DEBIAN_SHIM} and /{DEBIAN_GRUB}; RPM family: /boot/efi/EFI/<vendor>/"
                              "shimx64.efi and grubx64.efi): an unsigned grub would not boot")
    image = work / "BOOTX64.EFI"
    mkimage(root, "x86_64-efi", with_boot_modules(EFI_MODULES, layout), early_cfg(layout), image)
    _copy_modules(root, "x86_64-efi")
    esp.put_file(image, "/EFI/BOOT/BOOTX64.EFI")
    return UefiLoader("grub-mkimage x86_64-efi", REMOVABLE_LOADER)


def _install_shim_chain(chain: ShimChain, root: Path, layout: Layout | StoragePlan, esp: Esp, work: Path, *,
                        require_signed: bool) -> str:
    """The chain onto the ESP; its description. A signed grub lacking modules grub.cfg needs is refused
    before anything is written when `require_signed` (Secure Boot on: it could not load them), else noted."""
    lacking = _not_built_in(chain.grub, layout)
    if lacking and require_signed:
        raise OperationFailed(f"the plan asks for Secure Boot but the image's signed grub ({chain.describe()}) lacks "
                              f"built-in {', '.join(lacking)}, which grub.cfg needs: with Secure Boot on it cannot "
                              "load modules from disk and the installed system would not boot; use a /boot "
                              "filesystem the signed grub carries (ext4) or an image whose signed grub has them")
    for source, dest in chain.copies():
        esp.put_file(source, dest)
    fallback = f"/{REMOVABLE_DIR}/{FALLBACK}"  # the RPM family's /boot/efi brought it along
    if esp.exists(fallback):
        esp.delete(fallback)
    stub = work / "grub-stub.cfg"
    stub.write_text(early_cfg(layout))
    for path in chain.stub_paths:
        esp.put_file(stub, path)
    if (root / "usr/lib/grub/x86_64-efi").is_dir():  # for a boot without Secure Boot, where insmod may load them
        _copy_modules(root, "x86_64-efi")
    if lacking:
        return (f"{chain.describe()}; the signed grub lacks built-in {', '.join(lacking)}: with Secure Boot on "
                "it cannot load them from disk")
    return chain.describe()


def _not_built_in(grub: Path, layout: Layout | StoragePlan) -> list[str]:
    """Modules grub.cfg needs that the signed grub does not carry (empty when it cannot be told)."""
    image = read_grub_image(grub.read_bytes())
    if image is None:
        return []
    boot = boot_fs(layout)
    needed = (*SIGNED_GRUB_NEEDS, *boot.modules, _grub_module(boot.fstype))
    return [module for module in needed if module not in image.modules]


def efi_boot_entry_argv(disk: str, esp_number: int, label: str, loader: str) -> list[str]:
    return ["efibootmgr", "--quiet", "--create", "--disk", disk, "--part", str(esp_number), "--label", label,
            "--loader", loader]


def add_efi_boot_entry(disk: str, esp_number: int, label: str, loader: str = REMOVABLE_LOADER) -> bool:
    """An NVRAM boot entry, only when this machine booted with UEFI (never for disk image files)."""
    if not os.path.isdir(EFIVARS):
        return False
    proc.run(efi_boot_entry_argv(disk, esp_number, label, loader))
    return True


def _grub_bios_setup() -> str:
    """Debian keeps grub-bios-setup off PATH, in grub-pc-bin's platform directory."""
    return shutil.which("grub-bios-setup") or next(
        (p for p in ("/usr/lib/grub/i386-pc/grub-bios-setup", "/usr/sbin/grub2-bios-setup") if os.path.exists(p)),
        "grub-bios-setup")


def install_bios(root: Path, layout: Layout | StoragePlan, disk: str, work: Path, *,
                 boot_device: str | None = None) -> str:
    """grub core.img into the BIOS boot partition and boot.img into the protective MBR, via grub-bios-setup.

    Like grub-install, the images and modules go to /boot/grub/i386-pc. grub-bios-setup insists on
    opening the filesystem that directory lives on: on a block device that is a partition of (hd0);
    on a disk image file (partitions reached through an offset loop device, `boot_device`) the
    device map names that loop device as a disk of its own, (hd1). The embedded early config
    finds /boot by UUID at boot time either way.
    """
    _copy_modules(root, "i386-pc")
    grub_dir = root / "boot/grub/i386-pc"
    mkimage(root, "i386-pc", with_boot_modules(BIOS_MODULES, layout), early_cfg(layout), grub_dir / "core.img")
    shutil.copy(root / "usr/lib/grub/i386-pc/boot.img", grub_dir / "boot.img")
    device_map = work / "device.map"
    device_map.write_text(f"(hd0)\t{disk}\n" + (f"(hd1)\t{boot_device}\n" if boot_device else ""))
    try:
        proc.run([_grub_bios_setup(), "--skip-fs-probe", "--directory", grub_dir, "--device-map", device_map, disk])
    except OperationFailed as exc:
        raise OperationFailed(f"BIOS bootloader could not be written to {disk}: {exc}") from exc
    return "grub-bios-setup i386-pc"
