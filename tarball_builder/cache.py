"""The package cache: downloaded packages kept between builds under BuildOptions.cache_dir.

Layout: `<cache_dir>/<family>-archives/` holds package files (.deb / .rpm) a backend copies in before
installing and out after. With `--no-cache` (options.use_cache False) a backend gets a fresh empty
directory inside the build's workdir instead: nothing is read from or written to the cache.
Each directory has a lock file beside it (`.<name>.lock`). A backend that copies packages itself takes
it only while copying (Debian: flock around its mmdebstrap hooks), so concurrent builds share the cache;
one whose tool uses the directory in place (dnf's cache) holds it in this process (`lock=True`) until
the stage that took it ends (the pipeline calls release_locks after every stage).

(The image cache — reusing a whole previous build — is tarball_builder.reuse.)
"""
from __future__ import annotations

import fcntl
import os
from pathlib import Path

from .context import BuildContext


def package_dir(ctx: BuildContext, name: str, *, lock: bool = True) -> Path:
    """Directory for a backend's downloaded packages (created; with `lock`, locked until the stage ends)."""
    if not ctx.options.use_cache:
        path = ctx.workdir / name
        path.mkdir(parents=True, exist_ok=True)
        return path
    path = Path(ctx.options.cache_dir) / name
    path.mkdir(parents=True, exist_ok=True)
    if lock:
        _lock(ctx, path)
    return path


def lock_file(path: Path) -> Path:
    """The lock file that guards package directory `path` (created)."""
    lock = path.parent / f".{path.name}.lock"
    os.close(os.open(lock, os.O_RDWR | os.O_CREAT, 0o644))
    return lock


def _lock(ctx: BuildContext, path: Path) -> None:
    locks = ctx.facts.setdefault("_cache_locks", {})
    if str(path) in locks:
        return
    fd = os.open(lock_file(path), os.O_RDWR)
    fcntl.flock(fd, fcntl.LOCK_EX)  # released by release_locks (or when the process exits)
    locks[str(path)] = fd


def release_locks(ctx: BuildContext) -> None:
    for fd in ctx.facts.pop("_cache_locks", {}).values():
        os.close(fd)
