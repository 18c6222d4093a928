"""Paths inside another system's root directory: an image being built, a target being configured.

A path inside such a root is resolved the way that system itself would resolve it once it runs
(as if chrooted): symlinks are followed, an absolute link target starts again at the root, and
`..` never climbs above it. So nothing a package or an earlier step planted in the tree
(`/etc/locale.conf -> /etc/shadow`, `/root -> /`) can make a read or a write reach the host that
does the work. A write replaces a symlink at the path itself with a regular file; a removal or a
truncation acts on a symlink itself, never on what it names, and enters no symlinked directory.
"""
from __future__ import annotations

import fnmatch
import os
import re
import shutil
from pathlib import Path, PurePosixPath

from .errors import OperationFailed

MAX_SYMLINKS = 40  # as the kernel's path walk
_GLOB_MAGIC = re.compile(r"[*?[]")


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
    """True if `path` exists inside `root` as that system would see it (symlinks followed inside it);
    False for a symlink loop, as for `os.path.exists`."""
    try:
        return resolve(root, path).exists()
    except OperationFailed:  # too many levels of symbolic links
        return False


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


def glob(root: Path, pattern: str) -> list[PurePosixPath]:
    """The paths inside `root` that shell pattern `pattern` matches, sorted.

    Directories on the way resolve inside `root` as in `resolve`. `**` stands for any number of
    directories and enters no symlink. A symlink the last component matches is returned as itself.
    As in a shell, a name starting with a dot is matched only by a component starting with one, and
    a symlink loop matches nothing.
    """
    found = [PurePosixPath("/")]
    for part in _parts(pattern):
        found = [match for directory in found for match in _expand(root, directory, part)]
    return sorted({path for path in found if _lexists(root, path)})


def _expand(root: Path, directory: PurePosixPath, part: str) -> list[PurePosixPath]:
    if part == "**":
        return [directory, *_subdirectories(root, directory)]
    if not _GLOB_MAGIC.search(part):
        return [directory / part]
    top = _directory(root, directory)
    if top is None:
        return []
    return [directory / name for name in os.listdir(top)
            if fnmatch.fnmatchcase(name, part) and (part.startswith(".") or not name.startswith("."))]


def _subdirectories(root: Path, directory: PurePosixPath) -> list[PurePosixPath]:
    """Every directory below `directory` reached without entering a symlink or a dot directory."""
    top = _directory(root, directory)
    if top is None:
        return []
    found = []
    for dirpath, dirnames, _ in os.walk(top):
        dirnames[:] = [name for name in dirnames
                       if not name.startswith(".") and not os.path.islink(os.path.join(dirpath, name))]
        inside = directory / os.path.relpath(dirpath, top)
        found += [inside / name for name in dirnames]
    return found


def regular_files(root: Path, directory: str | os.PathLike) -> list[PurePosixPath]:
    """The regular files below `directory` inside `root`, sorted; no symlink is entered or listed."""
    top = _directory(root, directory)
    if top is None:
        return []
    found = []
    for dirpath, _, filenames in os.walk(top):
        inside = PurePosixPath("/", directory, os.path.relpath(dirpath, top))
        found += [inside / name for name in filenames if _is_regular_file(Path(dirpath, name))]
    return sorted(found)


def _directory(root: Path, path: str | os.PathLike) -> Path | None:
    """The host path of directory `path` inside `root`; None if it is no directory there (or a loop)."""
    try:
        top = resolve(root, path)
    except OperationFailed:  # too many levels of symbolic links
        return None
    return top if top.is_dir() else None


def _lexists(root: Path, path: str | os.PathLike) -> bool:
    try:
        return os.path.lexists(resolve(root, path, follow_last=False))
    except OperationFailed:  # too many levels of symbolic links
        return False


def remove(root: Path, path: str | os.PathLike) -> None:
    """Delete `path` inside `root` if it is there: a directory with its content, a symlink itself."""
    target = resolve(root, path, follow_last=False)
    if target == Path(os.path.realpath(root)):
        raise OperationFailed(f"{path!r} names the root {root} itself: not removing it")
    if target.is_dir() and not target.is_symlink():
        shutil.rmtree(target)  # removes symlinks below it, never what they name
    else:
        target.unlink(missing_ok=True)


def truncate(root: Path, path: str | os.PathLike) -> None:
    """Empty regular file `path` inside `root`, keeping its owner and mode; anything else is left alone."""
    target = resolve(root, path, follow_last=False)
    if _is_regular_file(target):
        os.truncate(target, 0)


def _is_regular_file(path: Path) -> bool:
    return path.is_file() and not path.is_symlink()
