"""Load a kickstart: render template files, expand `%include`, remember where every line came from.

metalstream expands `%include` itself (instead of letting pykickstart follow it) so that every
problem can be reported against the file and line it really is on, a missing include is reported
at its `%include` line, and the sha256 covers exactly the text that was parsed.

A file is rendered as a Jinja2 template only when its own name ends in `.j2`, or when the caller
asks for template mode (`--template`); a plain kickstart is never rendered, and neither is a plain
file it `%include`s.

A problem in one file does not stop the others: a missing or unreadable include is an error at its
`%include` line and the rest is expanded and parsed (`incomplete` then says that text is missing).
An include that only exists on the machine being installed is deferred to deploy time, not an error:
a path some `%pre` script of the kickstart mentions (the script writes it), or any path under the
runtime directories /tmp, /run and /dev/shm. With `defer_includes` (a kickstart sent to the service) every
`%include` is deferred and no included file is ever opened here.
"""
from __future__ import annotations

import hashlib
import re
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from ..templating import TemplateError, is_template, render_template
from .diagnostics import Findings

MAX_INCLUDE_DEPTH = 8
RUNTIME_DIRS = ("/tmp/", "/run/", "/dev/shm/")
_PRE_SECTIONS = ("%pre", "%pre-install")


@dataclass
class DeferredInclude:
    """A `%include` left for deploy time: `path` as written, where the `%include` is, what writes it."""

    path: str
    file: str
    line: int
    written_by: str | None = None  # "FILE:LINE" of the %pre section that mentions the path
    position: int = 0  # line number in the expanded text

    @property
    def message(self) -> str:
        if self.written_by:
            why = f"written by %pre at {self.written_by}"
        elif self.path.startswith(RUNTIME_DIRS):
            why = "a runtime path (/tmp, /run, /dev/shm) that exists only on the machine being installed"
        else:
            why = "read on the machine being installed, after its %pre scripts"
        return f"%include {self.path}: deferred to deploy time ({why})"

    def to_dict(self) -> dict:
        return {"path": self.path, "file": self.file, "line": self.line, "written_by": self.written_by}


@dataclass
class ExpandedSource:
    """The fully expanded kickstart text and, for each of its lines, (file, line) of origin."""

    text: str = ""
    origins: list[tuple[str, int]] = field(default_factory=list)
    deferred: list[DeferredInclude] = field(default_factory=list)
    incomplete: bool = False  # an included file was missing or unreadable: text is missing
    rendered: bool = False  # at least one file was rendered as a template

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text.encode()).hexdigest()

    @property
    def last_line(self) -> int:
        return len(self.origins)


@dataclass
class _Expansion:
    variables: dict[str, str] | None
    template: bool
    findings: Findings
    source: ExpandedSource
    lines: list[str] = field(default_factory=list)
    pre_scripts: list[tuple[str, int, str]] = field(default_factory=list)  # (file, header line, body)
    defer_includes: bool = False  # every %include is read on the machine, none here


def expand(path: str, variables: dict[str, str] | None, findings: Findings,
           template: bool = False, defer_includes: bool = False) -> ExpandedSource | None:
    """Render and expand the kickstart at `path`; problems go to `findings`. None only when the kickstart
    itself cannot be read or rendered (there is nothing to parse)."""
    state = _Expansion(variables, template, findings, ExpandedSource(), defer_includes=defer_includes)
    findings.origins = state.source.origins  # grows as files are read: problems found on the way sort in place
    if not _expand_file(Path(path), state, stack=[]):
        return None
    if variables and not state.source.rendered:
        findings.error_at(path, None, f"--var given, but {path} is not a template and includes none: only files "
                                      "named *.j2 are rendered (or every file with --template)")
    state.source.text = "".join(state.lines)
    return state.source


def _read(path: Path, state: _Expansion) -> str | None:
    """The text of one file (rendered when it is a template); None after recording why it cannot be had."""
    if state.template or is_template(path):
        state.source.rendered = True
        try:
            return render_template(path, state.variables)
        except TemplateError as exc:
            state.findings.error_at(exc.file, exc.line, exc.reason)
            return None
    try:
        data = path.read_bytes()
    except OSError as exc:
        reason = "no such file" if isinstance(exc, FileNotFoundError) else exc.strerror or str(exc)
        state.findings.error_at(str(path), None, f"cannot read: {reason}")
        return None
    try:
        text = data.decode()
    except UnicodeDecodeError as exc:
        state.findings.error_at(str(path), None, f"cannot read: not UTF-8 text ({exc.reason} at byte {exc.start})")
        return None
    if "\0" in text:
        state.findings.error_at(str(path), None, "cannot read: a NUL byte: not a text file")
        return None
    return text


def _expand_file(path: Path, state: _Expansion, stack: list[Path]) -> bool:
    """Append the lines of `path` (with its includes) to the expansion; False if the file itself is unusable."""
    shown = str(path)
    text = _read(path, state)
    if text is None:
        return False
    findings = state.findings
    stack = [*stack, path.resolve()]
    file_lines = text.splitlines(keepends=True)
    state.pre_scripts += _pre_scripts(shown, file_lines)
    for number, line in enumerate(file_lines, start=1):
        if line.split(maxsplit=1)[:1] == ["%ksappend"]:
            findings.error_at(shown, number, "%ksappend is not supported (it fetches text over the network): use %include")
            continue
        include = _include_target(line)
        if include is None:
            state.lines.append(line if line.endswith("\n") else line + "\n")
            state.source.origins.append((shown, number))
            continue
        if not include:
            findings.error_at(shown, number, "%include needs a file name")
            continue
        deferred = _deferred(include, shown, number, state)
        if deferred is not None:
            # Kept as a comment line, so the warning about it (see `message`) has a place in the expanded text.
            state.lines.append(f"# {line.strip()}\n")
            state.source.origins.append((shown, number))
            deferred.position = len(state.source.origins)
            state.source.deferred.append(deferred)
            continue
        target = Path(include) if Path(include).is_absolute() else path.parent / include
        if not target.is_file():
            findings.error_at(shown, number, f"%include: file not found: {include}")
            state.source.incomplete = True
        elif target.resolve() in stack:
            findings.error_at(shown, number, f"%include: {include} includes itself (include loop)")
        elif len(stack) >= MAX_INCLUDE_DEPTH:
            findings.error_at(shown, number, f"%include: nested deeper than {MAX_INCLUDE_DEPTH} levels")
            state.source.incomplete = True
        elif not _expand_file(target, state, stack):
            state.source.incomplete = True
    return True


def _deferred(include: str, file: str, line: int, state: _Expansion) -> DeferredInclude | None:
    mentioned = re.compile(rf"(?<![\w./-]){re.escape(include)}(?![\w./-])")
    for pre_file, pre_line, body in state.pre_scripts:
        if mentioned.search(body):
            return DeferredInclude(include, file, line, written_by=f"{pre_file}:{pre_line}")
    if include.startswith(RUNTIME_DIRS) or state.defer_includes:
        if not include.startswith("/"):
            state.findings.error_at(file, line, f"%include {include}: a file read on the machine at deploy time "
                                                "needs an absolute path")
        return DeferredInclude(include, file, line)
    return None


def _pre_scripts(file: str, lines: list[str]) -> list[tuple[str, int, str]]:
    """(file, header line, body) of each %pre / %pre-install section (anaconda runs them before includes)."""
    scripts, header, body = [], None, []
    for number, line in enumerate(lines, start=1):
        word = line.split(maxsplit=1)[:1]
        if header is None and word and word[0] in _PRE_SECTIONS:
            header, body = number, []
        elif header is not None and word == ["%end"]:
            scripts.append((file, header, "".join(body)))
            header = None
        elif header is not None:
            body.append(line)
    return scripts


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
