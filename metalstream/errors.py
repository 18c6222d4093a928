"""Typed errors shared by every metalstream component.

Each carries a one-line message, optional details and the process exit code, so callers never
have to parse text to decide what went wrong. How the service answers each over HTTP is the
service's business (pxe.errors), not this module's.
"""
from __future__ import annotations

EXIT_OK = 0
EXIT_FAILED = 1
EXIT_BAD_INPUT = 2
EXIT_INTERRUPTED = 130


class MetalstreamError(Exception):
    """Base class: an operation could not be completed."""

    exit_code = EXIT_FAILED

    def __init__(self, message: str, *, details: dict | None = None):
        super().__init__(message)
        self.message = message
        self.details = details or {}

    def __str__(self) -> str:
        return self.message


class OperationFailed(MetalstreamError):
    """The input was fine but the work failed (a tool failed, a network dropped, a disk filled)."""


class BadInput(MetalstreamError):
    """The user's input is wrong; nothing was changed. `location` says where (FILE:LINE, JSON field)."""

    exit_code = EXIT_BAD_INPUT

    def __init__(self, message: str, *, location: str | None = None, details: dict | None = None):
        super().__init__(f"{location}: {message}" if location else message, details=details)
        self.location = location
        self.reason = message

    def relocated(self, location: str) -> "BadInput":
        """The same complaint placed under another location (a document's path, an option's name)."""
        return BadInput(self.reason, location=location, details=self.details)


class CommandError(OperationFailed):
    """An external tool exited non-zero or timed out."""

    def __init__(self, argv: list[str], returncode: int | None, stderr: str, *, timed_out: bool = False):
        tail = stderr.strip().splitlines()[-5:]
        what = "timed out" if timed_out else f"exited with status {returncode}"
        message = f"{argv[0]} {what}"
        if tail:
            message += ": " + " | ".join(tail)
        super().__init__(message, details={"argv": argv, "returncode": returncode, "stderr": stderr})
        self.argv = argv
        self.returncode = returncode
        self.stderr = stderr
        self.timed_out = timed_out
