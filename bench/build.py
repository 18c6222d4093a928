"""Building: a cold build (empty package cache: every package is downloaded from the machine's apt sources)
versus a rebuild of the unchanged kickstart with the cache the cold build filled; both images' sha256."""
from __future__ import annotations

import json
import shutil
import sys
from pathlib import Path

from . import host


def build_once(kickstart: Path, out_dir: Path, cache_dir: Path, label: str, echo) -> tuple[float, str]:
    """`metalstream build` into OUT_DIR with CACHE_DIR; returns (seconds, the tarball's sha256)."""
    shutil.rmtree(out_dir, ignore_errors=True)
    host.settle()
    run = host.timed([sys.executable, "-m", "metalstream", "build", str(kickstart), "-o", str(out_dir), "--name", "bench",
                      "--cache-dir", str(cache_dir)])
    sha256 = json.loads((out_dir / "bench.json").read_text())["sha256"]
    echo(f"    build {label}: {run.seconds:.1f} s, sha256 {sha256[:16]}…")
    shutil.rmtree(out_dir, ignore_errors=True)
    return run.seconds, sha256


def cold_and_cached(kickstart: Path, work: Path, echo) -> tuple[float, float, list[str]]:
    """One cold build with a new empty cache, then one cached rebuild using it."""
    cache_dir = work / "build-cache"
    shutil.rmtree(cache_dir, ignore_errors=True)
    cache_dir.mkdir(parents=True)
    try:
        cold, cold_sha = build_once(kickstart, work / "build-out", cache_dir, "cold", echo)
        cached, cached_sha = build_once(kickstart, work / "build-out", cache_dir, "cached", echo)
    finally:
        shutil.rmtree(cache_dir, ignore_errors=True)
    return cold, cached, [cold_sha, cached_sha]
