"""The one way the test suite makes images: a tree packed by the builder's own pack stage, described by
the builder's own `describe_root`, its manifest written by the contract's writer (metalstream.contracts).

- `make_image(root, out_dir, name, ...)`: tree → NAME.tar.zst + NAME.json.
- `write_image_manifest(tarball, name, ...)`: the manifest of a tarball made some other way (a stream
  with chosen zstd frames, a sparse file that only has to be served), written beside it.
"""
from __future__ import annotations

import hashlib
from pathlib import Path

from metalstream.contracts.manifests import file_sha256, image_manifest, write_document
from tarball_builder.stages.manifest import describe_root
from tarball_builder.stages.pack import count_entries, pack

EPOCH = 1700000000
NO_BOOTLOADER = {"bios_grub": False, "uefi_grub": False, "shim": False}


def make_image(root: Path, out_dir: Path, name: str, *, family: str = "test", release: str = "",
               kernels: list[dict] = (), packages: list[dict] = (), zstd_level: int = 3) -> Path:
    """Pack `root` as `out_dir/NAME.tar.zst` exactly as `metalstream build` does; return the manifest path."""
    out_dir.mkdir(parents=True, exist_ok=True)
    tarball = out_dir / f"{name}.tar.zst"
    _, _, uncompressed = pack(root, tarball, EPOCH, zstd_level, 0)
    return write_image_manifest(tarball, name, root=root, uncompressed_size=uncompressed, family=family,
                                release=release, kernels=kernels, packages=packages)


def write_image_manifest(tarball: Path, name: str, *, root: Path | None = None, uncompressed_size: int = 0,
                         file_count: int = 0, family: str = "test", release: str = "", kernels: list[dict] = (),
                         packages: list[dict] = ()) -> Path:
    """NAME.json beside `tarball`; distribution and bootloader support are read from `root` when given."""
    described = describe_root(root, family, release) if root is not None else {
        "distribution": {"family": family, "id": family, "version": "1", "codename": release},
        "bootloader": NO_BOOTLOADER}
    manifest = image_manifest(
        name=name, tarball=tarball.name, sha256=file_sha256(tarball), size=tarball.stat().st_size,
        uncompressed_size=uncompressed_size, file_count=count_entries(root) if root is not None else file_count,
        arch="x86_64", kernels=list(kernels), packages=list(packages),
        kickstart_sha256=hashlib.sha256(f"test image {name}".encode()).hexdigest(), created=EPOCH, **described)
    return write_document(tarball.with_name(f"{name}.json"), manifest)
