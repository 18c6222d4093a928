"""Load a kickstart: render each file as a template, expand `%include`, remember where every line came from.

metalstream expands `%include` itself (instead of letting pykickstart follow it) so that every
problem can be reported against the file and line it really is on, a missing include is reported
at its `%include` line, and the sha256 covers exactly the text that was parsed.
"""
from __future__ import annotations

import hashlib
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..templating import TemplateError, render_template
from .diagnostics import Findings

MAX_INCLUDE_DEPTH = 8


@dataclass
class ExpandedSource:
    """The fully expanded kickstart text and, for each of its lines, (file, line) of origin."""

    text: str = ""
    origins: list[tuple[str, int]] = field(default_factory=list)

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def last_line(self) -> int:
        return len(self.origins)


def expand(path: str, variables: dict[str, str] | None, findings: Findings) -> ExpandedSource | None:
    """Render and expand the kickstart at `path`; on a problem record it in `findings` and return None."""
    source = ExpandedSource()
    lines: list[str] = []
    ok = _expand_file(Path(path), variables, findings, lines, source.origins, stack=[])
    if not ok:
        return None
    source.text = "".join(lines)
    return source


def _expand_file(path: Path, variables, findings: Findings, lines: list[str], origins: list, stack: list[Path]) -> bool:
    shown = str(path)
    try:
        text = render_template(path, variables)
    except TemplateError as exc:
        findings.error_at(exc.file, exc.line, exc.reason)
        return False
    ok = True
    stack = [*stack, path.resolve()]
    for number, line in enumerate(text.splitlines(keepends=True), start=1):
        if line.split(maxsplit=1)[:1] == ["%ksappend"]:
            findings.error_at(shown, number, "%ksappend is not supported (it fetches text over the network): use %include")
            ok = False
            continue
        include = _include_target(line)
        if include is None:
            lines.append(line if line.endswith("\n") else line + "\n")
            origins.append((shown, number))
            continue
        if not include:
            findings.error_at(shown, number, "%include needs a file name")
            ok = False
            continue
        target = Path(include) if Path(include).is_absolute() else path.parent / include
        if not target.is_file():
            findings.error_at(shown, number, f"%include: file not found: {include}")
            ok = False
        elif target.resolve() in stack:
            findings.error_at(shown, number, f"%include: {include} includes itself (include loop)")
            ok = False
        elif len(stack) >= MAX_INCLUDE_DEPTH:
            findings.error_at(shown, number, f"%include: nested deeper than {MAX_INCLUDE_DEPTH} levels")
            ok = False
        else:
            ok = _expand_file(target, variables, findings, lines, origins, stack) and ok
    return ok


def _include_target(line: str) -> str | None:
    """The file named by a `%include FILE` line ("" when it names none), or None for any other line."""
    stripped = line.strip()
    if stripped.split(maxsplit=1)[:1] != ["%include"]:
        return None
    try:
        words = shlex.split(stripped, comments=True)
    except ValueError:
        words = stripped.split()
    return words[1] if len(words) > 1 else ""
