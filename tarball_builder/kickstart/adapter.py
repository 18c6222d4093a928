"""The one place that talks to pykickstart: parse expanded kickstart text with a pinned syntax version.

pykickstart stops at the first error by default, prints some problems and reports others through
the `warnings` module without a line number. This adapter keeps going after each bad command,
turns every exception and warning into a finding located at the line being parsed, and records
which commands and sections appeared where, for the split and the support policy.
"""
from __future__ import annotations

import re
import warnings
from dataclasses import dataclass, field

from pykickstart import constants
from pykickstart.errors import KickstartError as PykickstartError, KickstartWarning
from pykickstart.parser import KickstartParser, PutBackIterator
from pykickstart.sections import Section
from pykickstart.version import F40, makeVersion, versionToString

from .diagnostics import Findings

SYNTAX_VERSION = F40
SYNTAX_NAME = versionToString(SYNTAX_VERSION)

CLEARPART_MODES = {
    constants.CLEARPART_TYPE_NONE: "none",
    constants.CLEARPART_TYPE_ALL: "all",
    constants.CLEARPART_TYPE_LINUX: "linux",
    constants.CLEARPART_TYPE_LIST: "list",
}
SELINUX_MODES = {
    constants.SELINUX_DISABLED: "disabled",
    constants.SELINUX_ENFORCING: "enforcing",
    constants.SELINUX_PERMISSIVE: "permissive",
}
AUTOPART_SCHEMES = {
    constants.AUTOPART_TYPE_PLAIN: "plain",
    constants.AUTOPART_TYPE_LVM: "lvm",
    constants.AUTOPART_TYPE_LVM_THINP: "thinp",
    constants.AUTOPART_TYPE_BTRFS: "btrfs",
}
GROUP_DEFAULT = constants.GROUP_DEFAULT
SCRIPT_POST = constants.KS_SCRIPT_POST
SCRIPT_PRE = constants.KS_SCRIPT_PRE
PACKAGES_IGNORE_MISSING = constants.KS_MISSING_IGNORE
PACKAGES_IGNORE_BROKEN = constants.KS_BROKEN_IGNORE


_OVERRIDES_REPORTED = ("A partition with the mountpoint", "A user with the name", "A group with the name",
                       "A repo with the name", "An ssh user with the name",
                       "A network device with the name")  # the network split: a VLAN on it, or configured twice


@dataclass
class SectionSeen:
    name: str  # "%post", "%packages", "%addon", ...
    args: list[str]
    line: int
    body: list[tuple[int, str]] = field(default_factory=list)  # (line, text) for %addon bodies
    closed: bool = False


@dataclass
class Parsed:
    """What pykickstart made of the text, plus where each command and section was seen."""

    handler: object
    commands: list[tuple[str, int, list[str]]] = field(default_factory=list)  # (name as written, line, args)
    sections: list[SectionSeen] = field(default_factory=list)
    complete: bool = True  # False when a fatal error stopped parsing early
    refused: set[int] = field(default_factory=set)  # lines pykickstart reported an error on (one message a line)

    def lines_of(self, *names: str) -> list[int]:
        return [line for name, line, _args in self.commands if name in names]

    def line_of(self, *names: str) -> int | None:
        lines = self.lines_of(*names)
        return lines[-1] if lines else None

    def args_of(self, line: int) -> list[str]:
        return next((args for _name, at, args in self.commands if at == line), [])


class _CountingIterator(PutBackIterator):
    """PutBackIterator that knows the number of the line it handed out last."""

    def __init__(self, iterable):
        super().__init__(iterable)
        self.lineno = 0

    def put(self, s):
        super().put(s)
        self.lineno -= 1

    def next(self):
        value = super().next()
        self.lineno += 1
        return value


class _AddonSection(Section):
    """%addon NAME ... %end: keep header and body lines (with their line numbers) for the split."""

    allLines = True
    sectionOpen = "%addon"

    def __init__(self, handler, parser: "_Parser"):
        super().__init__(handler)
        self._parser = parser

    def handleLine(self, line):
        self._parser.current_section.body.append((self._parser.lineno, line.rstrip("\n")))


class _Parser(KickstartParser):
    def __init__(self, handler, findings: Findings, parsed: Parsed):
        self.findings = findings
        self.parsed = parsed
        self._iter: _CountingIterator | None = None
        self.current_section: SectionSeen | None = None
        super().__init__(handler, followIncludes=False, unknownSectionIsFatal=False)

    @property
    def lineno(self) -> int:
        return self._iter.lineno if self._iter else 0

    def setupSections(self):
        super().setupSections()
        self.registerSection(_AddonSection(self.handler, self))

    def readKickstartFromString(self, s, reset=True):
        if reset:
            self._reset()
        self._iter = _CountingIterator(s.splitlines(True) + [""])
        self._stateMachine(self._iter)

    def handleCommand(self, lineno, args):
        self.parsed.commands.append((args[0], lineno, list(args[1:])))
        return super().handleCommand(lineno, args)

    def _tryFunc(self, fn):
        if self._state != "commands":  # a section header is being handled
            self.current_section = SectionSeen(self._state, self._line.split()[1:], self.lineno)
            self.parsed.sections.append(self.current_section)
        try:
            fn()
        except (PykickstartError, ValueError) as exc:
            message = _message(exc) if isinstance(exc, PykickstartError) else f"invalid value: {exc}"
            word = self._line.split()[0] if self._line.split() else ""
            if message.startswith("Unknown command: "):
                message = f"unknown command '{message.split(': ', 1)[1]}'"
            elif message.endswith(" has been removed"):
                message += f" from the kickstart syntax ({SYNTAX_NAME}): delete the line"
            elif word and not message.startswith(word):
                message = f"{word}: {message}"
            self.findings.error(exc.lineno or self.lineno, message)
            self.parsed.refused.add(exc.lineno or self.lineno)

    def _finalize(self, obj):
        super()._finalize(obj)
        if self.current_section:
            self.current_section.closed = True


def parse(text: str, findings: Findings) -> Parsed:
    """Parse expanded kickstart text; every problem goes to `findings`. Never raises for bad input."""
    handler = makeVersion(SYNTAX_VERSION)
    parsed = Parsed(handler)
    parser = _Parser(handler, findings, parsed)

    def record(message, category, filename, lineno, file=None, line=None):
        text = str(message)
        if not issubclass(category, KickstartWarning):
            return  # a library's own warning, not a kickstart problem
        if text.startswith(_OVERRIDES_REPORTED):
            return  # the split reports a later definition overriding an earlier one, naming both places
        if "unknown section" in text.lower():
            name = parser._state if parser._state != "commands" else text.rsplit(":", 1)[-1].strip()
            findings.error(parser.lineno, f"unknown section {name}")
        else:  # pykickstart may name its own (expanded-text) line number: the finding carries the real one
            findings.warn(parser.lineno, re.sub(r" (on|at) line \d+", "", text).strip())

    with warnings.catch_warnings():
        warnings.simplefilter("always")
        warnings.showwarning = record
        try:
            parser.readKickstartFromString(text)
        except PykickstartError as exc:
            parsed.complete = False
            section = parser.current_section
            if section and not section.closed and "%end" in _message(exc):
                findings.error(section.line, f"{section.name} section is not closed with %end "
                                             f"(it runs on to line {findings.locate(exc.lineno)[1]})")
            else:
                findings.error(exc.lineno or parser.lineno, _message(exc))
        except ValueError as exc:  # shlex: unbalanced quotes; pykickstart cannot go on after it
            parsed.complete = False
            findings.error(parser.lineno, f"cannot split the line into words: {exc} (unbalanced quotes?)")
    return parsed


def _message(exc: PykickstartError) -> str:
    message = exc.message if isinstance(exc.message, str) and exc.message else str(exc)
    return message.strip().rstrip(".") if message else "invalid kickstart syntax"
