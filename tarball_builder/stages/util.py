"""Small helpers shared by the stages: located messages and warnings.

Paths inside the root are resolved and written through metalstream.rootfs, never by joining paths.
"""
from __future__ import annotations

from ..context import BuildContext


def where(ctx: BuildContext, line: int | None) -> str:
    """`FILE:LINE` of the kickstart (just FILE when the line is unknown)."""
    source = ctx.kickstart.source or "kickstart"
    return f"{source}:{line}" if line else source


def warn(ctx: BuildContext, message: str) -> None:
    ctx.log.warning(message)
    ctx.facts.setdefault("warnings", []).append(message)
