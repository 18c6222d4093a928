"""A small TFTP server for legacy PXE ROMs: serves iPXE binaries (Debian's ipxe package) read-only.

Every request is resolved by `resolve()` before a file is opened: no NUL or backslash, no `..`,
nothing outside the root after resolving symlinks, regular files only. Uploads are refused.
tftpy gets an empty directory as its own root so that all reads go through `resolve()`.

The server runs as a child process of `metalstream serve` (`start`), which dies with its parent and
reports on its stdout whether it listens: "ready", or why it could not (e.g. "Address already in use").
"""
from __future__ import annotations

import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
from pathlib import Path
from typing import Callable

from metalstream.errors import OperationFailed

log = logging.getLogger("metalstream.pxe.tftp")

IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")
READY = "ready"
START_TIMEOUT = 10.0


def resolve(root: Path, name: str) -> Path | None:
    """The file a TFTP client asked for, or None if the name is unsafe or names nothing servable."""
    if not name or "\x00" in name or "\\" in name or not name.isascii() or not name.isprintable():
        return None
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    root = root.resolve()
    path = root.joinpath(*parts).resolve()
    if root not in path.parents or not path.is_file():
        return None
    return path


def populate(root: Path, source: Path = IPXE_DIR) -> list[str]:
    """Copy the iPXE binaries into `root` (Debian ships ipxe.efi as a symlink; the copy is a plain file)."""
    root.mkdir(parents=True, exist_ok=True)
    copied = []
    for name in IPXE_BINARIES:
        if (source / name).is_file():
            shutil.copyfile(source / name, root / name)
            copied.append(name)
    return copied


def start(root: Path, host: str, port: int, *, timeout: float = START_TIMEOUT) -> subprocess.Popen:
    """Run the server in a child process that dies with this one; return once it listens on host:port.

    Raises OperationFailed if it could not listen (port in use, no permission) or did not say so within
    `timeout` seconds. Spawn from the main thread (see `proc.spawn(die_with_parent=True)`).
    """
    from metalstream import proc
    child = proc.spawn([sys.executable, "-m", "pxe.tftp", root, host, str(port)], stdout=subprocess.PIPE,
                       stderr=None, die_with_parent=True)
    status = _status_line(child, timeout)
    child.stdout.close()
    if status == READY:
        return child
    reason = status or _silent_failure(child, timeout)
    proc.terminate(child, grace=2)
    raise OperationFailed(f"TFTP on udp/{port} ({host}) could not start: {reason}",
                          details={"argv": list(child.args), "returncode": child.returncode})


def _status_line(child: subprocess.Popen, timeout: float) -> str:
    readable, _, _ = select.select([child.stdout], [], [], timeout)
    return child.stdout.readline().decode(errors="replace").strip() if readable else ""


def _silent_failure(child: subprocess.Popen, timeout: float) -> str:
    try:
        returncode = child.wait(1)
    except subprocess.TimeoutExpired:
        return f"no answer within {timeout:.0f} s"
    return f"it exited with status {returncode} (its error is in the log above)"


def run(root: Path, host: str, port: int, *, on_listening: Callable[[], None] | None = None) -> None:
    """Serve `root` on host:port until interrupted; `on_listening` is called (on a thread) once the port is bound."""
    import tftpy

    def open_file(name: str, raddress=None, rport=None):
        path = resolve(root, name)
        log.info("tftp %s:%s %s -> %s", raddress, rport, name, path or "refused")
        return open(path, "rb") if path else None

    with tempfile.TemporaryDirectory(prefix="metalstream-tftp-") as empty:
        server = tftpy.TftpServer(empty, dyn_file_func=open_file, upload_open=lambda path, context: None)
        if on_listening is not None:
            threading.Thread(target=_when_set, args=(server.is_running, on_listening), daemon=True).start()
        server.listen(host, port)


def _when_set(event: threading.Event, callback: Callable[[], None]) -> None:
    event.wait()
    callback()


def _report(status: str) -> None:
    """Tell `start` in the parent how starting went: one line on stdout, which then joins stderr (the log)."""
    print(status, flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> None:
    """`python -m pxe.tftp ROOT HOST PORT`: what `metalstream serve --tftp` runs as a child process
    (not a thread: gunicorn forks workers from the serving process, and forking with a busy thread is unsafe)."""
    root, host, port = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="tftp: %(levelname)s %(message)s")
    logging.getLogger("metalstream.pxe.tftp").setLevel(logging.INFO)
    # SIGTERM (from `proc.terminate` or the parent's death) unwinds, so the temporary directory is removed.
    signal.signal(signal.SIGTERM, _interrupt)
    listening = threading.Event()

    def ready() -> None:
        listening.set()
        _report(READY)

    try:
        run(Path(root), host, int(port), on_listening=ready)
    except OSError as exc:
        if listening.is_set():
            raise
        _report(exc.strerror or str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
