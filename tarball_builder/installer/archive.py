"""Pack the staged tree as a reproducible newc cpio compressed with zstd (what the kernel unpacks)."""
from __future__ import annotations

import os
import tempfile
from pathlib import Path

from metalstream import proc

MAX_KERNEL_ZSTD_LEVEL = 19  # --ultra levels need windows the kernel's decompressor should not have to hold


def entry_names(stage: Path) -> list[str]:
    """Every entry as `find .` names it, sorted bytewise (parents before children)."""
    names = ["."]
    for dirpath, dirnames, filenames in os.walk(stage):
        rel = os.path.relpath(dirpath, stage)
        prefix = "." if rel == "." else f"./{rel}"
        names.extend(f"{prefix}/{name}" for name in (*dirnames, *filenames))
    return sorted(names, key=os.fsencode)


def write_initramfs(stage: Path, output: Path, *, level: int, threads: int) -> int:
    """Write OUTPUT (cpio newc | zstd); return the uncompressed cpio size. OUTPUT appears only when complete."""
    level = max(1, min(level, MAX_KERNEL_ZSTD_LEVEL))
    workdir = output.parent
    with tempfile.NamedTemporaryFile("wb", dir=workdir, prefix=f".{output.name}.", suffix=".list") as listing, \
            tempfile.NamedTemporaryFile("wb", dir=workdir, prefix=f".{output.name}.", suffix=".cpio") as cpio:
        listing.write(b"".join(os.fsencode(n) + b"\0" for n in entry_names(stage)))
        listing.flush()
        with open(listing.name, "rb") as names:
            archiver = proc.spawn(["cpio", "--create", "--null", "--format=newc", "--reproducible", "--quiet"],
                                  stdin=names, stdout=cpio, cwd=stage)
            proc.wait_checked(archiver, timeout=900)
        cpio.flush()
        size = os.fstat(cpio.fileno()).st_size
        partial = output.with_name(f".{output.name}.partial")
        try:
            proc.run(["zstd", "-q", "-f", f"-{level}", f"-T{threads}", "--no-progress", cpio.name, "-o", partial],
                     timeout=1800)
            partial.chmod(0o644)  # zstd copied the private temporary file's mode
            os.replace(partial, output)
        finally:
            partial.unlink(missing_ok=True)
    return size
