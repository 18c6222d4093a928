"""Paths inside another system's root directory: an image being built, a target being configured.

A path inside such a root is resolved the way that system itself would resolve it once it runs
(as if chrooted): symlinks are followed, an absolute link target starts again at the root, and
`..` never climbs above it. So nothing a package or an earlier step planted in the tree
(`/etc/locale.conf -> /etc/shadow`, `/root -> /`) can make a read or a write reach the host that
does the work. A write replaces a symlink at the path itself with a regular file.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from .errors import OperationFailed

MAX_SYMLINKS = 40  # as the kernel's path walk


def _parts(path: str | os.PathLike) -> list[str]:
    return [part for part in os.fspath(path).split("/") if part]


def resolve(root: Path, path: str | os.PathLike, *, follow_last: bool = True) -> Path:
    """The host path of `path` inside `root`, every symlink on the way resolved inside `root`.

    Missing components are kept as they are (the result may not exist). With `follow_last=False`
    a symlink at the last component is not followed (its own path is returned).
    """
    real_root = Path(os.path.realpath(root))
    pending = list(reversed(_parts(path)))
    current = real_root
    hops = 0
    while pending:
        part = pending.pop()
        if part == ".":
            continue
        if part == "..":
            if current != real_root:
                current = current.parent
            continue
        candidate = current / part
        if (pending or follow_last) and candidate.is_symlink():
            hops += 1
            if hops > MAX_SYMLINKS:
                raise OperationFailed(f"/{'/'.join(_parts(path))}: too many levels of symbolic links in {root}")
            target = os.readlink(candidate)
            if target.startswith("/"):
                current = real_root
            pending.extend(reversed(_parts(target)))
            continue
        current = candidate
    return current


def exists(root: Path, path: str | os.PathLike) -> bool:
    """True if `path` exists inside `root` as that system would see it (symlinks followed inside it)."""
    return resolve(root, path).exists()


def make_dirs(root: Path, path: str | os.PathLike, *, mode: int = 0o755) -> Path:
    """Create directory `path` (and its parents) inside `root`; return its host path."""
    directory = resolve(root, path)
    directory.mkdir(mode=mode, parents=True, exist_ok=True)
    return directory


def writable_path(root: Path, path: str | os.PathLike) -> Path:
    """The host path to write `path` at: its directory resolved (and created) inside `root`, and a
    symlink at `path` itself removed, so the write makes a regular file there."""
    name = PurePosixPath("/", os.fspath(path)).name
    if not name or name in (".", ".."):
        raise OperationFailed(f"{path!r} does not name a file")
    target = make_dirs(root, PurePosixPath("/", os.fspath(path)).parent) / name
    if target.is_symlink():
        target.unlink()
    return target


def write_file(root: Path, path: str | os.PathLike, data: str | bytes, *, mode: int | None = 0o644,
               owner: tuple[int, int] | None = None) -> Path:
    """Write `path` inside `root` atomically (a reader never sees half a file); return its host path.

    `mode=None` keeps the mode of the file being replaced (0644 for a new one); `owner=None` keeps its
    owner (the writing process's for a new one).
    """
    target = writable_path(root, path)
    previous = target.stat() if target.exists() else None
    if mode is None:
        mode = previous.st_mode & 0o7777 if previous else 0o644
    if owner is None and previous:
        owner = (previous.st_uid, previous.st_gid)
    partial = target.with_name(f".{target.name}.metalstream-partial")
    with open(partial, "wb") as f:
        f.write(data.encode() if isinstance(data, str) else data)
    if owner is not None:
        os.chown(partial, *owner)
    os.chmod(partial, mode)
    os.replace(partial, target)
    return target
