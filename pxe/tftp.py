"""A small TFTP server for legacy PXE ROMs: serves iPXE binaries (Debian's ipxe package) read-only.

Every request is resolved by `resolve()` before a file is opened: no NUL or backslash, no `..`,
nothing outside the root after resolving symlinks, regular files only. Uploads are refused.
tftpy gets an empty directory as its own root so that all reads go through `resolve()`.
"""
from __future__ import annotations

import logging
import shutil
import sys
import tempfile
from pathlib import Path

log = logging.getLogger("metalstream.pxe.tftp")

IPXE_DIR = Path("/usr/lib/ipxe")
IPXE_BINARIES = ("undionly.kpxe", "ipxe.efi", "snponly.efi")


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


def run(root: Path, host: str, port: int) -> None:
    import tftpy

    def open_file(name: str, raddress=None, rport=None):
        path = resolve(root, name)
        log.info("tftp %s:%s %s -> %s", raddress, rport, name, path or "refused")
        return open(path, "rb") if path else None

    with tempfile.TemporaryDirectory(prefix="metalstream-tftp-") as empty:
        server = tftpy.TftpServer(empty, dyn_file_func=open_file, upload_open=lambda path, context: None)
        server.listen(host, port)


def main(argv: list[str] | None = None) -> None:
    """`python -m pxe.tftp ROOT HOST PORT`: what `metalstream serve --tftp` runs as a child process
    (not a thread: gunicorn forks workers from the serving process, and forking with a busy thread is unsafe)."""
    root, host, port = argv if argv is not None else sys.argv[1:]
    logging.basicConfig(stream=sys.stdout, level=logging.WARNING, format="tftp: %(levelname)s %(message)s")
    logging.getLogger("metalstream.pxe.tftp").setLevel(logging.INFO)
    try:
        run(Path(root), host, int(port))
    except KeyboardInterrupt:
        pass


if __name__ == "__main__":
    main()
