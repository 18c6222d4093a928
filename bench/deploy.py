"""Deploying an image with `metalstream install` against the two alternatives:

* the package install a kickstart network install does (mmdebstrap of the same package set into the
  mounted root, the same configure/%post stages, then the initramfs), with every package already in the
  local cache, so the alternative is measured at its best;
* the raw limit: `zstd -dc IMAGE | tar -x` into a fresh ext4 of the same size, then `sync`.
"""
from __future__ import annotations

import json
import re
import shutil
import sys
import tempfile
import time
from pathlib import Path

from deployer.stream import tar_extract_options
from metalstream import proc

from . import host

DISK_SIZE = 8 << 30
PHASE_LINE = re.compile(r"^\[(\w+)\]")


def install_argv(manifest: Path, disk: Path) -> list[str]:
    return [sys.executable, "-m", "metalstream", "install", str(manifest), "--to", str(disk), "--size", str(DISK_SIZE),
            "--boot", "uefi", "--hostname", "bench"]


def phase_durations(lines: list[tuple[float, str]], total: float) -> dict[str, float]:
    """Seconds per install phase from the `[phase] ...` lines' first appearance (pure)."""
    starts: list[tuple[str, float]] = []
    for at, line in lines:
        match = PHASE_LINE.match(line)
        if match and (not starts or starts[-1][0] != match.group(1)):
            if match.group(1) not in (name for name, _ in starts):
                starts.append((match.group(1), at))
    durations = {}
    for (name, start), (_, end) in zip(starts, starts[1:] + [("end", total)]):
        durations[name] = round(end - start, 3)
    if starts:
        durations["startup"] = round(starts[0][1], 3)  # interpreter start and imports
    return durations


def deploy_once(manifest: Path, work: Path, echo) -> host.TimedRun:
    """One `metalstream install` onto a fresh sparse disk image; the disk is removed afterwards."""
    disk = work / "deploy-disk.img"
    disk.unlink(missing_ok=True)
    host.settle()
    try:
        run = host.timed(install_argv(manifest, disk), sample_rss=True)
    finally:
        disk.unlink(missing_ok=True)
    echo(f"    deploy {manifest.stem}: {run.seconds:.1f} s, agent peak RSS {run.peak_rss_mib} MiB")
    return run


def raw_once(tarball: Path, work: Path, echo) -> float:
    """`zstd -dc | tar -x` (the agent's tar options) into a fresh ext4 of the deploy's disk size, plus sync."""
    with host.fresh_ext4(work / "raw-disk.img", DISK_SIZE, work / "raw-root") as root:
        host.settle()
        started = time.monotonic()
        proc.run(["bash", "-o", "pipefail", "-c",
                  'img=$1 dest=$2; shift 2; zstd -dcq "$img" | tar -x "$@" -f - -C "$dest" && sync',
                  "raw", str(tarball), str(root), *tar_extract_options()], timeout=3600)
        seconds = time.monotonic() - started
    echo(f"    raw pipeline: {seconds:.1f} s")
    return seconds


def package_install_once(kickstart: Path, work: Path, cache_dir: Path, echo) -> tuple[float, dict[str, float]]:
    """What a kickstart network install does, timed from an empty disk: make the root filesystem, install the
    kickstart's packages with the distribution's tool into it, configure, run %post, generate the initramfs,
    sync. The package cache is warm (no downloads) and no bootloader is installed: the alternative's best case."""
    from tarball_builder import cache
    from tarball_builder.backends import backend_for
    from tarball_builder.context import BuildContext, BuildOptions
    from tarball_builder.kickstart import parse_kickstart
    from tarball_builder.pipeline import default_source_date_epoch
    from tarball_builder.stages.accounts import AccountsStage
    from tarball_builder.stages.configure import ConfigureStage
    from tarball_builder.stages.initramfs import InitramfsStage
    from tarball_builder.stages.install import InstallStage
    from tarball_builder.stages.post import PostStage

    split = parse_kickstart(kickstart)
    backend = backend_for(split.build.distribution.family)
    scratch = Path(tempfile.mkdtemp(prefix="package-install-", dir=work))
    options = BuildOptions(output_dir=scratch, name="package-install", cache_dir=cache_dir)
    stages = [InstallStage(backend), ConfigureStage(), AccountsStage(), PostStage(), InitramfsStage(backend)]
    phases: dict[str, float] = {}
    host.settle()
    started = time.monotonic()
    try:
        with host.fresh_ext4(work / "package-disk.img", DISK_SIZE, work / "package-root") as root:
            (root / "lost+found").rmdir()  # mmdebstrap wants an empty directory
            phases["mkfs"] = round(time.monotonic() - started, 3)
            ctx = BuildContext(kickstart=split, options=options, root=root, workdir=scratch,
                               source_date_epoch=default_source_date_epoch(split.sha256))
            try:
                for stage in stages:
                    began = time.monotonic()
                    stage.run(ctx)
                    phases[stage.name] = round(time.monotonic() - began, 3)
            finally:
                cache.release_locks(ctx)
            began = time.monotonic()
            host.settle()
            phases["sync"] = round(time.monotonic() - began, 3)
        seconds = time.monotonic() - started
    finally:
        shutil.rmtree(scratch, ignore_errors=True)
    echo(f"    package install: {seconds:.1f} s ({', '.join(f'{k} {v:.1f}' for k, v in phases.items())})")
    return seconds, phases


def image_files(manifest: Path) -> tuple[dict, Path]:
    data = json.loads(manifest.read_text())
    return data, manifest.parent / data["tarball"]
