"""Building, in one run:

- cold, old path vs new path: each with a new empty package cache (every package is downloaded from the
  machine's apt sources); the old path is the install as it was before issue 19 (METALSTREAM_BUILD_LEGACY=1,
  see tarball_builder/backends/debian.py), the new one today's;
- reuse: the unchanged kickstart built again into the same output directory (tarball_builder.reuse);
- concurrent: two builds started together with one new empty package cache;
and every image's sha256 (all must be equal)."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import time
from pathlib import Path

from . import host

LEGACY_ENV = "METALSTREAM_BUILD_LEGACY"


def _argv(kickstart: Path, out_dir: Path, cache_dir: Path) -> list[str]:
    return [sys.executable, "-m", "metalstream", "build", str(kickstart), "-o", str(out_dir), "--name", "bench",
            "--cache-dir", str(cache_dir)]


def _sha256(out_dir: Path) -> str:
    return json.loads((out_dir / "bench.json").read_text())["sha256"]


def _fresh(*paths: Path) -> None:
    for path in paths:
        shutil.rmtree(path, ignore_errors=True)


def build_once(kickstart: Path, out_dir: Path, cache_dir: Path, label: str, echo, *, legacy: bool = False,
               keep: bool = False) -> tuple[float, str, str]:
    """`metalstream build` into OUT_DIR with CACHE_DIR; returns (seconds, the tarball's sha256, its stderr)."""
    host.settle()
    env = {**os.environ, LEGACY_ENV: "1"} if legacy else {k: v for k, v in os.environ.items() if k != LEGACY_ENV}
    started = time.monotonic()
    run = subprocess.run(_argv(kickstart, out_dir, cache_dir), env=env, capture_output=True, text=True, timeout=3600)
    seconds = time.monotonic() - started
    if run.returncode != 0:
        raise RuntimeError(f"build {label} failed:\n{run.stderr[-3000:]}")
    sha256 = _sha256(out_dir)
    stages = ", ".join(line.split("] ", 1)[1].replace(": done in ", " ").split(" (total")[0]
                       for line in run.stderr.splitlines() if ": done in " in line)
    echo(f"    build {label}: {seconds:.1f} s, sha256 {sha256[:16]}…" + (f" ({stages})" if stages else ""))
    if not keep:
        _fresh(out_dir)
    return seconds, sha256, run.stderr


def concurrent_pair(kickstart: Path, work: Path, echo) -> list[str]:
    """Two builds started together with one new empty package cache; both sha256."""
    cache_dir, outs = work / "build-cache-pair", [work / "build-pair-a", work / "build-pair-b"]
    _fresh(cache_dir, *outs)
    host.settle()
    started = time.monotonic()
    children = [subprocess.Popen(_argv(kickstart, out, cache_dir), stdout=subprocess.DEVNULL, stderr=subprocess.PIPE,
                                 text=True) for out in outs]
    errors = [child.communicate(timeout=3600)[1] for child in children]
    try:
        for child, err in zip(children, errors):
            if child.returncode != 0:
                raise RuntimeError(f"concurrent build failed:\n{err[-3000:]}")
        shas = [_sha256(out) for out in outs]
    finally:
        _fresh(cache_dir, *outs)
    echo(f"    build concurrent pair: {time.monotonic() - started:.1f} s, sha256 {shas[0][:16]}… and {shas[1][:16]}…")
    return shas


def one_run(kickstart: Path, work: Path, echo) -> dict:
    """Cold old path, cold new path, reuse, concurrent pair: seconds and sha256 of each."""
    out, cache = work / "build-out", work / "build-cache"
    try:
        _fresh(out, cache)
        old, old_sha, _ = build_once(kickstart, out, cache, "cold, old path", echo, legacy=True)
        _fresh(out, cache)
        new, new_sha, _ = build_once(kickstart, out, cache, "cold, new path", echo, keep=True)
        reused, reused_sha, log = build_once(kickstart, out, cache, "unchanged, reused", echo, keep=True)
        if "reusing" not in log:
            raise RuntimeError(f"the unchanged build was not reused:\n{log[-3000:]}")
    finally:
        _fresh(out, cache)
    pair = concurrent_pair(kickstart, work, echo)
    return {"old": old, "new": new, "reused": reused, "shas": [old_sha, new_sha, reused_sha],
            "pair_shas": pair}


def bench_build(kickstart: Path, runs: int, work: Path, echo, image_sha: str, figure, ratio, goal) -> dict:
    echo("build: cold old path vs cold new path, unchanged rebuild (reuse), two concurrent builds")
    olds, news, reuses, shas, pairs_equal = [], [], [], [], []
    for index in range(runs):
        echo(f"  run {index + 1}/{runs}")
        run = one_run(kickstart, work, echo)
        olds.append(run["old"])
        news.append(run["new"])
        reuses.append(run["reused"])
        shas += run["shas"] + run["pair_shas"]
        pairs_equal.append(len(set(run["pair_shas"])) == 1)
    old_fig, new_fig, reuse_fig = figure(olds, 1), figure(news, 1), figure(reuses, 1)
    cached_over_cold = ratio(reuse_fig, new_fig)
    new_over_old = ratio(new_fig, old_fig)
    return {
        "cold_seconds": new_fig, "cached_seconds": reuse_fig,
        "cached_over_cold": cached_over_cold, **goal(cached_over_cold, "<=", 0.05),
        "cold_before_after": {"old_seconds": old_fig, "new_seconds": new_fig, "ratio": new_over_old,
                              **goal(new_over_old, "<=", 0.6)},
        "concurrent_reproducible": all(pairs_equal),
        "reproducible": len(set(shas)) == 1, "sha256": sorted(set(shas)),
        "same_as_deployed_image": set(shas) == {image_sha},
    }
