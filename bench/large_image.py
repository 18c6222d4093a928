"""A large image for the memory benchmark: the small image's files plus incompressible filler, packed the way
the builder packs (tarball_builder.stages.pack) with a manifest the agent accepts. Kept between runs."""
from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

from deployer.stream import tar_extract_options
from metalstream import proc
from tarball_builder.stages.pack import count_entries, pack

FILLER_FILE = 256 << 20


def make_large_image(small_manifest: Path, target_size: int, work: Path, echo) -> Path:
    """work/large.json (+ tar.zst): reused when it was made from the same small image for the same size."""
    small = json.loads(small_manifest.read_text())
    manifest_path = work / "large.json"
    key = {"from_sha256": small["sha256"], "target_size": target_size}
    if manifest_path.exists():
        existing = json.loads(manifest_path.read_text())
        if existing.get("bench_large_image") == key and (work / existing["tarball"]).exists():
            echo(f"  large image: reusing {manifest_path} ({existing['size'] / 2**30:.2f} GiB)")
            return manifest_path
    echo(f"  large image: making about {target_size / 2**30:.1f} GiB from {small_manifest.name} + random filler ...")
    scratch = Path(tempfile.mkdtemp(prefix="large-image-", dir=work))
    try:
        root = scratch / "root"
        root.mkdir()
        proc.run(["tar", "-x", *tar_extract_options(), "-f", small_manifest.parent / small["tarball"], "-C", root],
                 timeout=1800)
        filler = root / "var/lib/bench-filler"
        filler.mkdir(parents=True)
        remaining, index = max(target_size - small["size"], FILLER_FILE), 0
        while remaining > 0:
            chunk = min(FILLER_FILE, remaining)
            with open(filler / f"random-{index:03d}.bin", "wb") as handle:
                handle.write(os.urandom(chunk))
            remaining -= chunk
            index += 1
        tarball = work / "large.tar.zst"
        sha256, size, uncompressed = pack(root, tarball, small["created"], 1, 0)
        manifest = {**small, "name": "large", "tarball": tarball.name, "sha256": sha256, "size": size,
                    "uncompressed_size": uncompressed, "file_count": count_entries(root), "bench_large_image": key}
        manifest_path.write_text(json.dumps(manifest, indent=2) + "\n")
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    echo(f"  large image: {manifest['size'] / 2**30:.2f} GiB compressed, {uncompressed / 2**30:.2f} GiB unpacked")
    return manifest_path
