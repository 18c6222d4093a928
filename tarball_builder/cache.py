"""The build cache: downloaded packages kept between builds under BuildOptions.cache_dir.

Layout: `<cache_dir>/<family>-archives/` holds package files (.deb / .rpm) a backend syncs in before
installing and out after. With `--no-cache` (options.use_cache False) a backend gets a fresh empty
directory inside the build's workdir instead: nothing is read from or written to the cache.
A lock file per directory keeps two concurrent builds from syncing into the same place at once.
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .context import BuildContext


def package_dir(ctx: BuildContext, name: str) -> Path:
    """Directory for a backend's downloaded packages (created; locked for the rest of this process's build)."""
    if not ctx.options.use_cache:
        path = ctx.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(ctx.options.cache_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    _lock(ctx, path)
    return path


def _lock(ctx: BuildContext, path: Path) -> None:
    locks = ctx.facts.setdefault("_cache_locks", {})
    if str(path) in locks:
        return
    fd = os.open(path.parent / f".{path.name}.lock", os.O_RDWR | os.O_CREAT, 0o644)
    fcntl.flock(fd, fcntl.LOCK_EX)  # released when the pipeline closes it (or the process exits)
    locks[str(path)] = fd


def release_locks(ctx: BuildContext) -> None:
    for fd in ctx.facts.pop("_cache_locks", {}).values():
        os.close(fd)
