"""Small helpers shared by the stages: located messages and paths inside the root."""
from __future__ import annotations

import os
from pathlib import Path

from ..context import BuildContext


def where(ctx: BuildContext, line: int | None) -> str:
    """`FILE:LINE` of the kickstart (just FILE when the line is unknown)."""
    source = ctx.kickstart.source or "kickstart"
    return f"{source}:{line}" if line else source


def in_root(ctx: BuildContext, path: str) -> Path:
    """Host path of an absolute path inside the root (never escapes it through a leading /)."""
    return ctx.root / path.lstrip("/")


def exists_in_root(ctx: BuildContext, path: str) -> bool:
    """True if `path` exists inside the root, following symlinks the way the root itself would."""
    candidate = in_root(ctx, path)
    for _ in range(40):
        if not os.path.islink(candidate):
            return candidate.exists()
        target = os.readlink(candidate)
        candidate = in_root(ctx, target) if target.startswith("/") else candidate.parent / target
    return False


def warn(ctx: BuildContext, message: str) -> None:
    ctx.log.warning(message)
    ctx.facts.setdefault("warnings", []).append(message)


def write_file(path: Path, text: str, mode: int = 0o644) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    path.chmod(mode)
