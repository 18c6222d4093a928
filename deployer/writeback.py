"""Write the target's data back while the image is still streaming, not all of it at the end.

The kernel starts writing dirty pages back only after 30 s or when they pass a share of memory, so
an install that unpacks under a gigabyte leaves all of it dirty until the final sync: the CPU-bound
part (decompress, unpack) and the disk-bound part (write-back) then run one after the other. A thread
calling syncfs(2) on the target every `interval` seconds while the stream runs makes them overlap.
"""
from __future__ import annotations

import ctypes
import logging
import os
import threading
import time
from pathlib import Path

log = logging.getLogger("metalstream.writeback")

# Seconds between two syncfs calls: shorter leaves less to write once the stream ends, but each call also
# commits the journal (bench/README.md, "Where the time goes").
INTERVAL = 0.2

_libc = ctypes.CDLL(None, use_errno=True)


def syncfs(fd: int) -> None:
    """syncfs(2) (Python's os module has no binding): write back the whole filesystem holding `fd`."""
    if _libc.syncfs(fd) != 0:
        errno = ctypes.get_errno()
        raise OSError(errno, os.strerror(errno))


class EarlyWriteback:
    """`with EarlyWriteback(mounted_dir):` syncs that filesystem in the background until the block ends."""

    def __init__(self, mountpoint: Path, interval: float = INTERVAL):
        self.mountpoint = Path(mountpoint)
        self.interval = interval
        self.rounds = 0
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._fd: int | None = None

    def __enter__(self) -> EarlyWriteback:
        self._fd = os.open(self.mountpoint, os.O_RDONLY | os.O_DIRECTORY)
        self._thread = threading.Thread(target=self._run, name="early-writeback", daemon=True)
        self._thread.start()
        return self

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            began = time.monotonic()
            try:
                syncfs(self._fd)
            except OSError as exc:  # only an optimisation: the final sync still writes everything
                log.warning("background write-back of %s stopped: %s", self.mountpoint, exc)
                return
            self.rounds += 1
            log.debug("syncfs %s took %.3f s", self.mountpoint, time.monotonic() - began)

    def __exit__(self, exc_type, exc, tb) -> None:
        self._stop.set()
        if self._thread:
            self._thread.join()
        if self._fd is not None:
            os.close(self._fd)
            self._fd = None
