"""The one place metalstream runs other programs.

Every call logs its argv, has a timeout and, on failure, raises CommandError carrying argv,
exit status and stderr. `spawn` starts a pipeline stage (zstd | tar) whose exit status the caller
must check with `wait_checked`; nothing here hides a failing stage behind a later one.
"""
from __future__ import annotations

import ctypes
import logging
import os
import shlex
import signal
import subprocess
from dataclasses import dataclass
from typing import IO, Mapping, Sequence

from .errors import CommandError, OperationFailed

log = logging.getLogger("metalstream.proc")

DEFAULT_TIMEOUT = 600.0

PR_SET_PDEATHSIG = 1  # <linux/prctl.h>


@dataclass(frozen=True)
class Result:
    argv: list[str]
    returncode: int
    stdout: str
    stderr: str


def _argv(argv: Sequence[str | os.PathLike]) -> list[str]:
    return [os.fspath(a) for a in argv]


def run(
    argv: Sequence[str | os.PathLike],
    *,
    timeout: float | None = DEFAULT_TIMEOUT,
    input: str | bytes | None = None,
    check: bool = True,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    binary: bool = False,
    user: str | None = None,
) -> Result:
    """Run argv to completion and return its output; raise CommandError if it fails or times out.
    `user`: run as that user (this process must be root)."""
    args = _argv(argv)
    log.debug("run: %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    try:
        completed = subprocess.run(
            args,
            input=input,
            capture_output=True,
            timeout=timeout,
            env=full_env,
            cwd=cwd,
            text=not binary,
            user=user,
        )
    except FileNotFoundError as exc:
        raise OperationFailed(f"{args[0]}: command not found (install it with `bash .ci/setup`)") from exc
    except subprocess.TimeoutExpired as exc:
        stderr = exc.stderr.decode(errors="replace") if isinstance(exc.stderr, bytes) else (exc.stderr or "")
        raise CommandError(args, None, stderr, timed_out=True) from exc
    stderr = completed.stderr if isinstance(completed.stderr, str) else completed.stderr.decode(errors="replace")
    if check and completed.returncode != 0:
        raise CommandError(args, completed.returncode, stderr)
    return Result(args, completed.returncode, completed.stdout, stderr)


def spawn(
    argv: Sequence[str | os.PathLike],
    *,
    stdin: int | IO | None = None,
    stdout: int | IO | None = None,
    stderr: int | IO | None = subprocess.PIPE,
    env: Mapping[str, str] | None = None,
    cwd: str | os.PathLike | None = None,
    die_with_parent: bool = False,
    death_signal: int = signal.SIGTERM,
    user: str | None = None,
    new_session: bool = False,
) -> subprocess.Popen:
    """Start argv as one stage of a pipeline; stderr is captured for `wait_checked` unless redirected.

    A long-running process (a server) must get `stderr` pointed at a log file: an unread pipe fills up.
    `die_with_parent` (Linux): the child gets `death_signal` when this process dies, even by SIGKILL. The
    kernel sends it when the *thread* that spawned the child exits, so spawn such a child from the main
    thread. `user`: run as that user (the death signal is set after the switch, which would clear it).
    `new_session`: the child does not get the terminal's Ctrl-C (its owner stops it).
    """
    args = _argv(argv)
    log.debug("spawn: %s", shlex.join(args))
    full_env = None if env is None else {**os.environ, **env}
    preexec_fn = _parent_death_signal(death_signal) if die_with_parent else None
    try:
        return subprocess.Popen(args, stdin=stdin, stdout=stdout, stderr=stderr, env=full_env, cwd=cwd,
                                preexec_fn=preexec_fn, user=user, start_new_session=new_session)
    except FileNotFoundError as exc:
        raise OperationFailed(f"{args[0]}: command not found (install it with `bash .ci/setup`)") from exc


def _parent_death_signal(signum: int):
    """A preexec_fn that makes the kernel send `signum` to the child when its parent dies."""
    prctl = ctypes.CDLL(None, use_errno=True).prctl  # looked up before the fork, not in the forked child
    parent = os.getpid()

    def preexec() -> None:
        if prctl(PR_SET_PDEATHSIG, int(signum)) != 0:
            raise OSError(ctypes.get_errno(), "prctl(PR_SET_PDEATHSIG) failed")
        if os.getppid() != parent:  # the parent died before prctl took effect: nobody will send the signal
            os.kill(os.getpid(), signum)

    return preexec


def wait_checked(proc: subprocess.Popen, *, timeout: float | None = DEFAULT_TIMEOUT) -> None:
    """Wait for a spawned stage and raise CommandError if it failed or did not finish in time."""
    try:
        _, stderr = proc.communicate(timeout=timeout)
    except subprocess.TimeoutExpired as exc:
        proc.kill()
        _, stderr = proc.communicate()
        raise CommandError(list(proc.args), None, (stderr or b"").decode(errors="replace"), timed_out=True) from exc
    if proc.returncode != 0:
        raise CommandError(list(proc.args), proc.returncode, (stderr or b"").decode(errors="replace"))


def terminate(process: subprocess.Popen, *, grace: float = 10) -> None:
    """Stop a spawned process: SIGTERM, then SIGKILL if it is still running after `grace` seconds."""
    if process.poll() is not None:
        return
    log.debug("terminate: pid %s (%s)", process.pid, process.args[0] if process.args else "?")
    process.terminate()
    try:
        process.wait(grace)
    except subprocess.TimeoutExpired:
        process.kill()
        process.wait()
