"""Secrets given to a command: read from a file (its first line) or stdin (`-`), never from an option's value,
which `ps` and shell history would show."""
from __future__ import annotations

import sys
from pathlib import Path

from .errors import BadInput


def read_secret_line(source: str, location: str) -> str:
    """The first line of file `source` (`-`: stdin) without its line break; BadInput at `location` when it cannot
    be read or is empty (the refusal never quotes the file's content)."""
    try:
        text = sys.stdin.read() if source == "-" else Path(source).read_text()
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read {source}: {getattr(exc, 'strerror', None) or type(exc).__name__}",
                       location=location) from None
    line = text.splitlines()[0] if text else ""
    if not line:
        raise BadInput(f"{'stdin' if source == '-' else source} starts with an empty line: no secret in it",
                       location=location)
    return line
