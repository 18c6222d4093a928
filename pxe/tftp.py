"""A small TFTP server for PXE ROMs and the Secure Boot path, read-only.

It serves the iPXE binaries (Debian's ipxe package) from its root and, with a database (`TftpBoot`,
pxe/tftpboot.py), the signed shim + GRUB path: shimx64.efi, grubx64.efi, grub/grub.cfg, a per-MAC
grub/MAC.cfg rendered per request, and the installer's kernel and initramfs; first-stage loader fetches
are attributed to their deployment through the neighbour table, and a UEFI client whose deployment (or the
service's --boot-path) forces the other boot path gets that path's loader under the name it asked for.

Every request name is checked by `clean_name` before anything is opened: no NUL or backslash, no `..`,
printable ASCII only; files from the root are then resolved by `resolve()` (nothing outside the root
after resolving symlinks, regular files only). Uploads are refused. tftpy gets an empty directory as
its own root so that all reads go through here.

The server runs as a child process of `metalstream serve` (`start`), which dies with its parent and
reports on its stdout whether it listens: "ready", or why it could not (e.g. "Address already in use").
The database URL reaches it in the environment (METALSTREAM_TFTP_DB_URL), not on its command line.
"""
from __future__ import annotations

import argparse
import logging
import os
import select
import shutil
import signal
import subprocess
import sys
import tempfile
import threading
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, BinaryIO, Callable

from metalstream.errors import OperationFailed

from .bootpath import BOOT_PATH_CHOICES

if TYPE_CHECKING:
    from .tftpboot import TftpBoot

log = logging.getLogger("metalstream.pxe.tftp")

IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")
READY = "ready"
START_TIMEOUT = 30.0  # the child checks the installer's files (sha256) first
DB_URL_ENV = "METALSTREAM_TFTP_DB_URL"


def clean_name(name: str) -> str | None:
    """A requested name as `a/b/c` (no leading or doubled slashes), or None if it is unsafe."""
    if not name or "\x00" in name or "\\" in name or not name.isascii() or not name.isprintable():
        return None
    parts = [p for p in name.split("/") if p]
    if not parts or any(p in (".", "..") for p in parts):
        return None
    return "/".join(parts)


def resolve(root: Path, name: str) -> Path | None:
    """The file in `root` a TFTP client asked for, or None if the name is unsafe or names nothing servable."""
    clean = clean_name(name)
    if clean is None:
        return None
    parts = clean.split("/")
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


@dataclass(frozen=True)
class BootOptions:
    """What the TFTP child needs beyond its root to serve the Secure Boot path and attribute fetches:
    the database, the installer manifest, and where the installer's agent reaches the service."""

    db_url: str
    installer: Path | None
    public_url: str | None
    http_scheme: str
    http_host: str
    http_port: int
    neighbours: Path | None = None  # default: the kernel's (/proc/net/arp)
    boot_path: str = "auto"  # UEFI clients' boot path when their deployment forces none (pxe/bootpath.py)

    def argv(self) -> list[str]:
        argv = ["--http", f"{self.http_scheme}://{self.http_host}:{self.http_port}", "--boot-path", self.boot_path]
        if self.installer is not None:
            argv += ["--installer", str(self.installer)]
        if self.public_url is not None:
            argv += ["--public-url", self.public_url]
        if self.neighbours is not None:
            argv += ["--neighbours", str(self.neighbours)]
        return argv


def start(root: Path, host: str, port: int, *, boot: BootOptions | None = None,
          timeout: float = START_TIMEOUT) -> subprocess.Popen:
    """Run the server in a child process that dies with this one; return once it listens on host:port.

    Without `boot` it serves its root only. Raises OperationFailed if it could not listen (port in use, no
    permission) or did not say so within `timeout` seconds. Spawn from the main thread (see
    `proc.spawn(die_with_parent=True)`).
    """
    from metalstream import proc
    argv = [sys.executable, "-m", "pxe.tftp", root, host, str(port), *(boot.argv() if boot else [])]
    child = proc.spawn(argv, stdout=subprocess.PIPE, stderr=None, die_with_parent=True,
                       env={DB_URL_ENV: boot.db_url} if boot else None)
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


def run(root: Path, host: str, port: int, *, on_listening: Callable[[], None] | None = None,
        boot: TftpBoot | None = None) -> None:
    """Serve `root` (and `boot`'s names) on host:port until interrupted; `on_listening` is called (on a
    thread) once the port is bound."""
    import tftpy

    from . import metrics  # here, in the child: `serve` has set PROMETHEUS_MULTIPROC_DIR before starting it

    def open_file(name: str, raddress=None, rport=None):
        handle, outcome = _open(root, boot, name, raddress)
        metrics.tftp_request(outcome)
        log.info("tftp %s:%s %r -> %s", raddress, rport, name, outcome)
        if handle is not None and boot is not None:
            _note_served(boot, name, raddress)
        return handle

    with tempfile.TemporaryDirectory(prefix="metalstream-tftp-") as empty:
        server = tftpy.TftpServer(empty, dyn_file_func=open_file, upload_open=lambda path, context: None)
        if on_listening is not None:
            threading.Thread(target=_when_set, args=(server.is_running, on_listening), daemon=True).start()
        server.listen(host, port)


def _open(root: Path, boot: TftpBoot | None, name: str, client: str) -> tuple[BinaryIO | None, str]:
    """What to send for `name`, or None (tftpy answers "file not found"), and the outcome: sent, refused or
    error. Never raises: an exception here would end tftpy's serving loop, so it is logged and the request
    refused."""
    try:
        clean = clean_name(name)
        if clean is None:
            return None, "refused"
        if boot is not None:
            handle = boot.open(clean, client)
            if handle is not None:
                return handle, "sent"
        path = resolve(root, clean)
        return (open(path, "rb"), "sent") if path else (None, "refused")
    except Exception:
        log.exception("tftp %s %r: refused after an error", client, name)
        return None, "error"


def _note_served(boot: TftpBoot, name: str, client: str) -> None:
    """Hand a sent file to first-stage attribution. Never raises, like `_open`: the file goes out either way."""
    try:
        boot.served(clean_name(name), client, time.time())
    except Exception:
        log.exception("tftp %s %r: sent, but attributing the fetch failed", client, name)


def _when_set(event: threading.Event, callback: Callable[[], None]) -> None:
    event.wait()
    callback()


def _report(status: str) -> None:
    """Tell `start` in the parent how starting went: one line on stdout, which then joins stderr (the log)."""
    print(status, flush=True)
    os.dup2(sys.stderr.fileno(), sys.stdout.fileno())


def _interrupt(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def _arguments(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(prog="python -m pxe.tftp")
    parser.add_argument("root", type=Path)
    parser.add_argument("host")
    parser.add_argument("port", type=int)
    parser.add_argument("--http", metavar="SCHEME://HOST:PORT", help="the service's HTTP listener")
    parser.add_argument("--installer", type=Path, help="installer manifest (kernel, initramfs, signed loaders)")
    parser.add_argument("--public-url", help="the URL the installer's agent is told")
    parser.add_argument("--neighbours", type=Path, help="neighbour table in /proc/net/arp's format")
    parser.add_argument("--boot-path", choices=BOOT_PATH_CHOICES, default="auto",
                        help="UEFI clients' boot path when their deployment forces none")
    return parser.parse_args(argv)


def _boot(args: argparse.Namespace) -> TftpBoot | None:
    """The dynamic side when the parent handed over a database (METALSTREAM_TFTP_DB_URL); else None."""
    db_url = os.environ.get(DB_URL_ENV)
    if not db_url:
        return None
    from . import db, imagestore, tftpboot
    from .render import Renderer
    installer = imagestore.read_installer_manifest(args.installer) if args.installer else None
    scheme, _, hostport = (args.http or "http://0.0.0.0:80").partition("://")
    http_host, _, http_port = hostport.rpartition(":")
    # serve migrated the schema before starting this child. Short waits: tftpy serves every client from one
    # thread, and a configuration rendered while the database is locked would stall all transfers.
    engine = db.make_engine(db_url, upgrade_schema=False, short_waits=True)
    neighbours = (lambda: tftpboot.read_neighbours(args.neighbours)) if args.neighbours else tftpboot.read_neighbours
    return tftpboot.TftpBoot(engine, Renderer(), installer,
                             tftpboot.ServiceAddress(args.public_url, scheme, http_host, int(http_port)),
                             tftpboot.FirstStageRecorder(engine, neighbours), root=args.root,
                             default_path=args.boot_path)


def main(argv: list[str] | None = None) -> None:
    """`python -m pxe.tftp ROOT HOST PORT [--http URL --installer FILE --public-url URL --neighbours FILE
    --boot-path auto|ipxe|shim-grub]`:
    what `metalstream serve --tftp` runs as a child process (not a thread: gunicorn forks workers from the
    serving process, and forking with a busy thread is unsafe)."""
    args = _arguments(argv)
    logging.basicConfig(stream=sys.stderr, level=logging.WARNING, format="tftp: %(levelname)s %(message)s")
    logging.getLogger("metalstream.pxe.tftp").setLevel(logging.INFO)
    # SIGTERM (from `proc.terminate` or the parent's death) unwinds, so the temporary directory is removed.
    signal.signal(signal.SIGTERM, _interrupt)
    listening = threading.Event()

    def ready() -> None:
        listening.set()
        _report(READY)

    try:
        boot = _boot(args)
    except Exception as exc:  # a bad installer manifest, an unreachable database: say so to `start`
        _report(f"cannot serve the boot files: {str(exc).splitlines()[0] if str(exc) else type(exc).__name__}")
        sys.exit(1)
    try:
        run(args.root, args.host, args.port, on_listening=ready, boot=boot)
    except OSError as exc:
        if listening.is_set():
            raise
        _report(exc.strerror or str(exc))
        sys.exit(1)
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
