"""The image manifest (NAME.json beside NAME.tar.zst) and the installer manifest (docs/contracts.md §1, §5).

Writers build the document from named values; readers check a parsed document field by field and
return it unchanged (fields of a later minor version are kept and ignored). Neither touches the
files a manifest describes: checking those against size and sha256 is the caller's job
(`file_sha256` helps).
"""
from __future__ import annotations

import hashlib
import json
import os
import stat
from pathlib import Path
from typing import Any

from .. import __version__
from ..errors import BadInput
from . import jsontext, rules
from .formats import IMAGE, IMAGE_FORMAT, INSTALLER, INSTALLER_FORMAT, check_format

BUILDER_NAME = "metalstream"
BOOTLOADER_FIELDS = ("bios_grub", "uefi_grub", "shim")
# An installer's signed first-stage loaders (`secure_boot` in its manifest): both or neither.
SECURE_BOOT_LOADERS = ("shim", "grub")


def builder_info() -> dict:
    return {"name": BUILDER_NAME, "version": __version__}


def image_manifest(*, name: str, tarball: str, sha256: str, size: int, uncompressed_size: int, file_count: int,
                   arch: str, distribution: dict, kernels: list[dict], bootloader: dict, packages: list[dict],
                   kickstart_sha256: str, created: int) -> dict:
    """The image manifest of a NAME.tar.zst; `kernels` are {version, kernel, initramfs} with absolute paths."""
    return read_image_manifest({
        "format": IMAGE_FORMAT,
        "name": name,
        "tarball": tarball,
        "sha256": sha256,
        "size": size,
        "uncompressed_size": uncompressed_size,
        "file_count": file_count,
        "arch": arch,
        "distribution": distribution,
        "kernels": kernels,
        "bootloader": {key: bool(bootloader.get(key)) for key in BOOTLOADER_FIELDS},
        "packages": packages,
        "kickstart_sha256": kickstart_sha256,
        "created": created,
        "builder": builder_info(),
    }, "image manifest")


def read_image_manifest(data: Any, location: str, *, sep: str = ": ") -> dict:
    """Check an image manifest; BadInput names the field: `LOCATION: kernels[0].kernel` for a file,
    `plan.image.manifest.kernels[0].kernel` with `sep="."` for a manifest inside another document."""
    at = lambda name: f"{location}{sep}{name}"  # noqa: E731
    rules.expect_object(data, location)
    check_format(data.get("format"), IMAGE, at("format"))
    rules.image_name(data.get("name"), at("name"))
    rules.file_name(data.get("tarball"), at("tarball"))
    rules.sha256(data.get("sha256"), at("sha256"))
    rules.integer(data.get("size"), at("size"), minimum=1)
    for key in ("uncompressed_size", "file_count", "created"):
        rules.integer(data.get(key), at(key))
    rules.text(data.get("arch"), at("arch"), max_length=64, allow_empty=False)
    rules.sha256(data.get("kickstart_sha256"), at("kickstart_sha256"))
    distribution = rules.expect_object(data.get("distribution"), at("distribution"))
    rules.text(distribution.get("family"), at("distribution.family"), max_length=64, allow_empty=False)
    for i, kernel in enumerate(rules.expect_list(data.get("kernels"), at("kernels"))):
        where = at(f"kernels[{i}]")
        rules.expect_object(kernel, where)
        rules.text(kernel.get("version"), f"{where}.version", max_length=256, allow_empty=False)
        rules.absolute_path(kernel.get("kernel"), f"{where}.kernel")
        rules.absolute_path(kernel.get("initramfs"), f"{where}.initramfs")
    bootloader = rules.expect_object(data.get("bootloader"), at("bootloader"))
    for key in BOOTLOADER_FIELDS:
        rules.boolean(bootloader.get(key), at(f"bootloader.{key}"))
    rules.expect_list(data.get("packages"), at("packages"), max_items=1_000_000)
    rules.expect_object(data.get("builder"), at("builder"))
    return data


def file_entry(path: Path) -> dict:
    """How a manifest records a file beside it: {file, sha256, size}."""
    return {"file": Path(path).name, "sha256": file_sha256(path), "size": Path(path).stat().st_size}


def installer_manifest(*, name: str, kernel: dict, initramfs: dict, kernel_version: str, created: int,
                       kickstart_sha256: str, initramfs_uncompressed_size: int, file_count: int, module_count: int,
                       agent_sha256: str, secure_boot: dict | None = None) -> dict:
    """The installer manifest; `kernel` and `initramfs` are `file_entry` records of the files beside it.

    `secure_boot` ({"shim": file_entry, "grub": file_entry}: the distribution's signed first-stage
    loaders beside it) is written only when the installer has them."""
    document = {
        "format": INSTALLER_FORMAT,
        "name": name,
        "kernel": kernel,
        "initramfs": initramfs,
        "kernel_version": kernel_version,
        "created": created,
        "kickstart_sha256": kickstart_sha256,
        "builder": builder_info(),
        "initramfs_uncompressed_size": initramfs_uncompressed_size,
        "file_count": file_count,
        "module_count": module_count,
        "agent_sha256": agent_sha256,
    }
    if secure_boot is not None:
        document["secure_boot"] = secure_boot
    return read_installer_manifest(document, "installer manifest")


def read_installer_manifest(data: Any, location: str, *, sep: str = ": ") -> dict:
    """Check an installer manifest (the files it names are not read here); locations as in read_image_manifest."""
    at = lambda name: f"{location}{sep}{name}"  # noqa: E731
    rules.expect_object(data, location)
    check_format(data.get("format"), INSTALLER, at("format"))
    rules.image_name(data.get("name"), at("name"))
    for part in ("kernel", "initramfs"):
        _file_entry(data.get(part), at(part))
    if "secure_boot" in data:  # optional: only installers that carry signed loaders have it
        loaders = rules.expect_object(data["secure_boot"], at("secure_boot"))
        for part in SECURE_BOOT_LOADERS:
            _file_entry(loaders.get(part), at(f"secure_boot.{part}"))
    rules.text(data.get("kernel_version"), at("kernel_version"), max_length=256, allow_empty=False)
    rules.integer(data.get("created"), at("created"))
    for key in ("kickstart_sha256", "agent_sha256"):
        if key in data:  # recorded since the demo reuses installers only when both still match
            rules.sha256(data[key], at(key))
    return data


def _file_entry(value: Any, location: str) -> dict:
    entry = rules.expect_object(value, location)
    rules.file_name(entry.get("file"), f"{location}.file")
    rules.sha256(entry.get("sha256"), f"{location}.sha256")
    rules.integer(entry.get("size"), f"{location}.size", minimum=1)
    return entry


def file_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def load_document(path: Path, *, max_bytes: int = 64 << 20) -> Any:
    """Parse a JSON document from a regular file; BadInput at `PATH[:LINE]` if it cannot be read or parsed."""
    path = Path(path)
    try:
        fd = os.open(path, os.O_RDONLY | os.O_NONBLOCK)  # a FIFO must not block the open
    except FileNotFoundError:
        raise BadInput("no such file", location=str(path)) from None
    except OSError as exc:
        raise BadInput(f"cannot read: {exc.strerror}", location=str(path)) from None
    with os.fdopen(fd, "rb") as f:
        if not stat.S_ISREG(os.fstat(fd).st_mode):
            raise BadInput("not a regular file", location=str(path))
        try:
            raw = f.read(max_bytes + 1)
        except OSError as exc:
            raise BadInput(f"cannot read: {exc.strerror}", location=str(path)) from None
    if len(raw) > max_bytes:
        raise BadInput(f"larger than {max_bytes} bytes", location=str(path))
    try:
        return jsontext.loads(raw)
    except BadInput as exc:
        line = exc.details.get("line")
        where = f"{path}: {exc.location}" if exc.location else f"{path}:{line}" if line else str(path)
        raise BadInput(exc.reason, location=where) from None


def write_document(path: Path, data: dict) -> Path:
    """Write a JSON document atomically: a reader never sees half of it."""
    path = Path(path)
    partial = path.with_name(f".{path.name}.partial")
    partial.write_text(json.dumps(data, indent=2) + "\n")
    os.replace(partial, path)
    return path
