"""Run a kickstart's `%pre` sections on the machine, before the disks are chosen (as anaconda does).

Each script is written to a file of its own and run by its interpreter. Its output goes to the agent log and,
with `--log=PATH`, is appended to PATH on the machine. A failing script stops the install with `--erroronfail`;
without it the failure is only reported and the install goes on (anaconda's behaviour).
"""
from __future__ import annotations

import logging
import tempfile
from pathlib import Path
from typing import Callable

from metalstream import proc
from metalstream.contracts.deployspec import PreScript
from metalstream.errors import CommandError, OperationFailed

log = logging.getLogger("metalstream.pre")

PRE_TIMEOUT = 600.0  # seconds one %pre may take
_TAIL_LINES = 5


def where(script: PreScript) -> str:
    return f"%pre at kickstart line {script.line}" if script.line else "%pre"


def run_pre_scripts(scripts: list[PreScript], *, warn: Callable[[str], None],
                    timeout: float = PRE_TIMEOUT) -> None:
    """Run every script in order; OperationFailed for a failing `--erroronfail` one, `warn(message)` for any
    other failure."""
    with tempfile.TemporaryDirectory(prefix="metalstream-pre-") as tmp:
        for number, script in enumerate(scripts, start=1):
            failure = _run_one(script, Path(tmp) / f"pre-{number}", timeout)
            if failure is None:
                continue
            message = f"{where(script)}: {failure}"
            if script.erroronfail:
                raise OperationFailed(message)
            warn(f"{message} (no --erroronfail: the install goes on)")


def _run_one(script: PreScript, path: Path, timeout: float) -> str | None:
    """Run one script; why it failed, or None."""
    path.write_text(script.script)
    path.chmod(0o700)
    log.info("%s: running with %s", where(script), script.interpreter)
    try:
        result = proc.run([script.interpreter, path], timeout=timeout, check=False, cwd=path.parent)
        output, failure = result.stdout + result.stderr, None
        if result.returncode != 0:
            failure = f"exit status {result.returncode}" + _tail(result.stderr or result.stdout)
    except CommandError as exc:  # timed out
        output, failure = exc.stderr, f"timed out after {timeout:g} s" + _tail(exc.stderr)
    except OperationFailed as exc:  # the interpreter is not there
        output, failure = "", str(exc)
    for line in output.splitlines():
        log.info("%s: %s", where(script), line)
    if script.log:
        _append_log(script, output)
    return failure


def _tail(text: str) -> str:
    lines = text.strip().splitlines()[-_TAIL_LINES:]
    return ": " + " | ".join(lines) if lines else ""


def _append_log(script: PreScript, output: str) -> None:
    try:
        Path(script.log).parent.mkdir(parents=True, exist_ok=True)
        with open(script.log, "a") as stream:
            stream.write(output)
    except OSError as exc:
        log.warning("%s: cannot write --log=%s: %s", where(script), script.log, exc.strerror or exc)
