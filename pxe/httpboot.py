"""UEFI HTTP boot under Secure Boot (issue 18): one disk image the firmware loads into a RAM disk and boots.

Debian 12's signed network GRUB (grubnetx64.efi.signed) has `efinet` and `tftp` built in but not `http`, and
under Secure Boot it loads no module. HTTP-booted directly, shim does fetch grubx64.efi over HTTP, but GRUB's
$prefix is then (http,SERVER:PORT)/grub, which it cannot read ("disk `http,…' not found"), and it stops at its
prompt. So an HTTP boot client gets one file, `/boot/secureboot.img` (`application/vnd.efi-img`: UEFI boots
it from a RAM disk as it would a disk), a FAT filesystem holding

    EFI/BOOT/BOOTX64.EFI   the installer's signed shim (the firmware's default loader on that disk)
    EFI/BOOT/grubx64.efi   the installer's signed network GRUB (shim loads it from beside itself)
    grub/grub.cfg          this machine's config ($prefix is (hd0)/grub): rendered per request
    installer/vmlinuz      the installer's signed kernel and its initramfs, which that config loads
    installer/initrd.img

The image is built once per installer (mtools, in DATA_DIR/httpboot) with grub/grub.cfg a fixed-size
placeholder; each request gets the image with the placeholder's bytes replaced by the machine's config,
padded to the same size with newlines.
"""
from __future__ import annotations

import hashlib
import json
import os
import secrets
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from metalstream import proc
from metalstream.errors import OperationFailed

IMAGE_NAME = "secureboot.img"
MEDIA_TYPE = "application/vnd.efi-img"
CONFIG_SIZE = 16384
CONFIG_IN_IMAGE = "grub/grub.cfg"
# installer manifest key (pxe.imagestore.read_installer_manifest) → file in the image
LAYOUT = (("shim_path", "EFI/BOOT/BOOTX64.EFI"), ("grub_path", "EFI/BOOT/grubx64.efi"),
          ("kernel_path", "installer/vmlinuz"), ("initramfs_path", "installer/initrd.img"))
_SLACK = 8 * 1024 * 1024  # FAT32 tables, directories, cluster rounding
# OVMF's RAM disk takes the largest block size up to 512 that divides the image's size: an odd size gives
# 1-byte blocks, which GRUB cannot read ("sector sizes of 1 bytes aren't supported yet").
_ALIGN = 1024 * 1024
_CHUNK = 1024 * 1024
_SEARCH = 64 * 1024 * 1024  # the config is copied first, right after the FAT tables
_build_lock = threading.Lock()
_built: dict[Path, "BootImage"] = {}


@dataclass(frozen=True)
class BootImage:
    path: Path
    config_offset: int  # where grub/grub.cfg's bytes are in the image

    @property
    def size(self) -> int:
        return self.path.stat().st_size

    def chunks(self, config: str) -> Iterator[bytes]:
        """The image with `config` (padded) in place of the placeholder."""
        body = padded(config)
        end = self.config_offset + CONFIG_SIZE
        with open(self.path, "rb") as image:
            position = 0
            while chunk := image.read(_CHUNK):
                start, stop = position, position + len(chunk)
                if start < end and stop > self.config_offset:
                    patched = bytearray(chunk)
                    low, high = max(start, self.config_offset), min(stop, end)
                    patched[low - start:high - start] = body[low - self.config_offset:high - self.config_offset]
                    chunk = bytes(patched)
                position = stop
                yield chunk


def carries_signed_loaders(installer: dict | None) -> bool:
    return bool(installer and installer.get("shim_path") and installer.get("grub_path"))


def padded(config: str) -> bytes:
    body = config.encode("ascii")
    if len(body) >= CONFIG_SIZE:
        raise OperationFailed(f"the GRUB config is {len(body)} bytes, the HTTP boot image has room for "
                              f"{CONFIG_SIZE - 1}")
    return body + b"\n" * (CONFIG_SIZE - len(body))


def boot_image(installer: dict, cache_dir: Path) -> BootImage:
    """The installer's HTTP boot image, built on first use (a different installer gets its own)."""
    key = hashlib.sha256(json.dumps([installer[key] for key, _ in LAYOUT] + [
        installer["kernel"]["sha256"], installer["initramfs"]["sha256"],
        installer["secure_boot"]["shim"]["sha256"], installer["secure_boot"]["grub"]["sha256"]]).encode()).hexdigest()
    path = cache_dir / f"secureboot-{key[:16]}.img"
    with _build_lock:
        if path not in _built:
            if not path.is_file():
                _build(installer, path)
            _built[path] = BootImage(path, _config_offset(path))
        return _built[path]


def _build(installer: dict, path: Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    placeholder = f"# metalstream placeholder {secrets.token_hex(16)}\n".encode()
    sources = [(Path(installer[key]), name) for key, name in LAYOUT]
    size = sum(source.stat().st_size for source, _ in sources) + CONFIG_SIZE + _SLACK
    size = -(-size // _ALIGN) * _ALIGN
    try:
        with open(tmp, "wb") as image:
            image.truncate(size)
        config = tmp.with_name(tmp.name + ".cfg")
        config.write_bytes(placeholder.ljust(CONFIG_SIZE, b"\n"))
        try:
            proc.run(["mformat", "-i", tmp, "-v", "METALSTREAM", "::"], timeout=60)
            proc.run(["mmd", "-i", tmp, "::/EFI", "::/EFI/BOOT", "::/grub", "::/installer"], timeout=60)
            proc.run(["mcopy", "-i", tmp, config, f"::/{CONFIG_IN_IMAGE}"], timeout=60)
            for source, name in sources:
                proc.run(["mcopy", "-i", tmp, source, f"::/{name}"], timeout=600)
        finally:
            config.unlink(missing_ok=True)
        _config_offset(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)


def _config_offset(path: Path) -> int:
    """Where the placeholder config lies in the image, in one piece (mcopy writes a fresh FAT contiguously)."""
    with open(path, "rb") as image:
        data = image.read(_SEARCH)
    at = data.find(b"# metalstream placeholder ")
    line_end = data.find(b"\n", at) + 1
    if at == -1 or data[at:at + CONFIG_SIZE] != data[at:line_end].ljust(CONFIG_SIZE, b"\n"):
        raise OperationFailed(f"{path}: {CONFIG_IN_IMAGE} is not one contiguous placeholder; delete the file")
    return at
