"""Collect the problems found in a kickstart, each located at the file and line it came from."""
from __future__ import annotations

from typing import Any, Callable

from metalstream.errors import BadInput

from ..spec import Diagnostic


class Findings:
    """Errors and warnings found so far. Lines of the expanded text are mapped back to (file, line)."""

    def __init__(self, top_file: str):
        self.top_file = top_file
        self.origins: list[tuple[str, int]] = []
        self.items: list[Diagnostic] = []
        self._order: list[int] = []  # position in the expanded text, to report in reading order

    def locate(self, line: int | None) -> tuple[str, int | None]:
        """(file, line) of line `line` of the expanded text (1-based)."""
        if not line or not self.origins:
            return self.top_file, line or None
        index = min(max(line, 1), len(self.origins)) - 1
        return self.origins[index]

    def place(self, line: int | None) -> str:
        """`FILE:LINE` of line `line` of the expanded text, for messages that name a second place."""
        file, at = self.locate(line)
        return f"{file}:{at}" if at else file

    def error(self, line: int | None, message: str) -> None:
        self._add(line or 0, Diagnostic(*self.locate(line), message, "error"))

    def warn(self, line: int | None, message: str) -> None:
        self._add(line or 0, Diagnostic(*self.locate(line), message, "warning"))

    def note(self, line: int | None, message: str) -> None:
        """Not a problem of the kickstart: something the deployment must bring besides it (--strict leaves it be)."""
        self._add(line or 0, Diagnostic(*self.locate(line), message, "note"))

    def ignore(self, line: int | None, what: str, reason: str) -> None:
        """A warning that `what` (a command, "command --option" or "%section --option") is ignored, because `reason`."""
        file, at = self.locate(line)
        self._add(line or 0, Diagnostic(file, at, f"`{what}`: {reason}", "warning", ignored=what))

    def drop_warnings(self, line: int | None, containing: str) -> None:
        """Forget the warnings at `line` whose message contains `containing` (an error says it better)."""
        keep = [i for i, d in enumerate(self.items)
                if not (d.severity == "warning" and self._order[i] == (line or 0) and containing in d.message)]
        self.items = [self.items[i] for i in keep]
        self._order = [self._order[i] for i in keep]

    def check(self, line: int | None, rule: Callable[[Any, str], Any], value: Any, what: str) -> Any:
        """`rule(value, what)` from metalstream.contracts.rules (the API and the agent apply the same);
        a refusal becomes an error at `line`. Returns the checked value, or None when it was refused."""
        try:
            return rule(value, what)
        except BadInput as exc:
            self.error(line, str(exc))
            return None

    def error_at(self, file: str, line: int | None, message: str) -> None:
        position = self.origins.index((file, line)) + 1 if (file, line) in self.origins else len(self.origins) + 1
        self._add(position, Diagnostic(file, line, message, "error"))

    def _add(self, position: int, diagnostic: Diagnostic) -> None:
        self.items.append(diagnostic)
        self._order.append(position)

    def error_at_end(self, message: str) -> None:
        """A problem about something missing: located at the last line of the top-level file."""
        lines = [line for file, line in self.origins if file == self.top_file]
        self.error_at(self.top_file, max(lines, default=1), message)

    @property
    def errors(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "error"]

    @property
    def warnings(self) -> list[Diagnostic]:
        return [d for d in self.items if d.severity == "warning"]

    def sorted(self) -> list[Diagnostic]:
        """All findings in reading order of the expanded text (stable for findings on the same line)."""
        indexes = sorted(range(len(self.items)), key=lambda i: self._order[i])
        return [self.items[i] for i in indexes]
