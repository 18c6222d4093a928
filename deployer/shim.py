"""The distribution's signed UEFI loader chain in an image (shim → signed grub), and where the distribution
puts each file on the ESP. Planning only: this reads the image tree and writes nothing.

- Debian (shim-signed, shim-helpers-amd64-signed, grub-efi-amd64-signed) keeps the signed binaries under
  /usr/lib; grub-install copies them to EFI/<distributor>/ (the directory the signed grub's built-in
  prefix names, `/EFI/debian`) and, for the removable path, to EFI/BOOT/.
- The RPM family (shim-x64, grub2-efi-x64) installs them straight into /boot/efi/EFI/<vendor>/ (fedora,
  redhat, rocky, almalinux, centos...) plus EFI/BOOT/BOOTX64.EFI and fbx64.efi; the agent moves the image's
  /boot/efi onto the ESP, so those files are found in that moved tree (`image_esp`).
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from metalstream import rootfs
from metalstream.contracts.secureboot import DEBIAN_GRUB, DEBIAN_SHIM

from .grubimage import read_grub_image

DEBIAN_MOK_MANAGER = "usr/lib/shim/mmx64.efi.signed"
DEBIAN_BOOT_CSV = "usr/lib/shim/BOOTX64.CSV"
DEBIAN_VENDOR = "debian"
REMOVABLE_DIR = "EFI/BOOT"
REMOVABLE_LOADER = "\\EFI\\BOOT\\BOOTX64.EFI"
# Under EFI/BOOT, shim runs fbx64.efi instead of grub when it is there: fallback writes NVRAM entries from
# BOOTX64.CSV and resets the machine once more. The agent writes the NVRAM entry itself (when the installer
# booted with UEFI), so the removable path gets shim, grub and MokManager only, as Debian's grub-install does.
FALLBACK = "fbx64.efi"


@dataclass(frozen=True)
class ShimChain:
    family: str  # "debian" | "rpm"
    vendor: str  # the directory under EFI/ the signed grub reads its grub.cfg from
    shim: Path
    grub: Path
    mok_manager: Path | None
    boot_csv: Path | None

    @property
    def vendor_dir(self) -> str:
        return f"EFI/{self.vendor}"

    @property
    def loader(self) -> str:
        """The NVRAM entry's loader path (efibootmgr --loader)."""
        return f"\\EFI\\{self.vendor}\\shimx64.efi"

    def copies(self) -> list[tuple[Path, str]]:
        """(file in the image, path on the ESP): the distribution's directory, then the removable path."""
        own = [(self.shim, "shimx64.efi"), (self.grub, "grubx64.efi"), (self.mok_manager, "mmx64.efi"),
               (self.boot_csv, "BOOTX64.CSV")]
        removable = [(self.shim, "BOOTX64.EFI"), (self.grub, "grubx64.efi"), (self.mok_manager, "mmx64.efi")]
        return ([(source, f"/{self.vendor_dir}/{name}") for source, name in own if source is not None]
                + [(source, f"/{REMOVABLE_DIR}/{name}") for source, name in removable if source is not None])

    @property
    def stub_paths(self) -> list[str]:
        """Where the small grub.cfg that finds the real one goes: the signed grub reads it from its prefix
        directory; from EFI/BOOT it still reads EFI/<vendor>/grub.cfg, and EFI/BOOT/grub.cfg is its last resort."""
        return [f"/{self.vendor_dir}/grub.cfg", f"/{REMOVABLE_DIR}/grub.cfg"]

    def describe(self) -> str:
        return f"shim + signed grub ({self.family}, {self.vendor_dir})"


def find_shim_chain(root: Path, image_esp: Path | None = None) -> ShimChain | None:
    """The image's signed chain: Debian's under /usr/lib of `root` first, else an RPM-style
    EFI/<vendor>/ holding shimx64.efi and grubx64.efi in `image_esp` (the image's /boot/efi content)."""
    return _debian_chain(root) or (_rpm_chain(image_esp) if image_esp is not None else None)


def _file(root: Path, relative: str) -> Path | None:
    path = rootfs.resolve(root, relative)
    return path if path.is_file() else None


def _debian_chain(root: Path) -> ShimChain | None:
    shim, grub = _file(root, DEBIAN_SHIM), _file(root, DEBIAN_GRUB)
    if shim is None or grub is None:
        return None
    return ShimChain("debian", _prefix_vendor(grub) or DEBIAN_VENDOR, shim, grub,
                     _file(root, DEBIAN_MOK_MANAGER), _file(root, DEBIAN_BOOT_CSV))


def _prefix_vendor(grub: Path) -> str | None:
    """`debian` from the signed grub's built-in prefix `/EFI/debian` (Ubuntu's says ubuntu)."""
    image = read_grub_image(grub.read_bytes())
    parts = PurePosixPath(image.prefix).parts if image and image.prefix else ()
    if len(parts) == 3 and parts[:2] == ("/", "EFI") and parts[2].upper() != "BOOT":
        return parts[2]
    return None


def _rpm_chain(image_esp: Path) -> ShimChain | None:
    efi = image_esp / "EFI"
    if not efi.is_dir() or efi.is_symlink():
        return None
    for vendor in sorted(p for p in efi.iterdir() if p.is_dir() and not p.is_symlink()):
        if vendor.name.upper() == "BOOT":
            continue
        here = f"EFI/{vendor.name}"
        shim, grub = _file(image_esp, f"{here}/shimx64.efi"), _file(image_esp, f"{here}/grubx64.efi")
        if shim is not None and grub is not None:
            return ShimChain("rpm", vendor.name, shim, grub, _file(image_esp, f"{here}/mmx64.efi"),
                             _file(image_esp, f"{here}/BOOTX64.CSV"))
    return None


def planned_uefi_loader(bootloader: dict | None) -> str:
    """What `metalstream install --dry-run` can say before the image is streamed: the image manifest's
    `bootloader` flags tell whether it has a shim (the tree itself decides at install time)."""
    if bootloader is None:
        return "decided from the image once streamed (the plan carries no image manifest)"
    if bootloader.get("shim") and bootloader.get("uefi_grub"):
        return ("shim + signed grub from the image (EFI/<vendor>/ and the removable path EFI/BOOT/), "
                "an NVRAM entry for shimx64.efi when this machine booted with UEFI")
    if bootloader.get("uefi_grub"):
        return ("grub-mkimage x86_64-efi at EFI/BOOT/BOOTX64.EFI (unsigned: a firmware with Secure Boot on "
                "refuses it; the image has no shim)")
    return "none: the image has no UEFI grub, the bootloader phase will fail"
