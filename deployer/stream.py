"""Stream an image into a directory: HTTP (or file) → zstd → GNU tar, hashing the compressed bytes on the fly.

The image may have several sources (a plan's `image.urls`): deployer.download fails over between them and
resumes with Range where the last one stopped; the running sha256 spans them all.

Nothing is staged: each chunk is hashed, then written into `zstd -dc`, whose output goes straight into
`tar -x`. Memory stays flat whatever the image size. The exit status of both stages is checked, the
first stage first, so a failing `zstd` is never hidden behind the `tar` error it causes (a zstd that
merely died of a broken pipe because tar failed is reported as tar's failure). Whatever the pipeline
says, the whole source is read and hashed: a size or sha256 that differs from the plan raises
ImageVerificationError, which outranks a pipeline error (a corrupt image is the root cause then).
"""
from __future__ import annotations

import fcntl
import functools
import hashlib
import logging
import signal
import subprocess
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import IO, Callable, Sequence

from metalstream import proc
from metalstream.errors import CommandError, MetalstreamError, OperationFailed

from .download import CHUNK_SIZE, RetryPolicy, open_chunks
from .tls import Verify

log = logging.getLogger("metalstream.stream")

STDERR_KEEP = 64 * 1024  # bytes of each stage's stderr kept for the error message
PIPE_BYTES = 1 << 20  # pipe buffers between the stages (Linux default 64 KiB): each stage runs ahead


class ImageVerificationError(OperationFailed):
    """The image's sha256 or size did not match the plan: nothing bootable may be written."""


@dataclass(frozen=True)
class StreamResult:
    bytes_read: int  # compressed bytes hashed
    sha256: str
    etag: str | None
    resumes: int  # how many times a dropped connection was resumed (at the same source or another)
    failovers: int = 0  # how many times the download moved to another source
    origin: str = ""  # the source, or each source with the bytes it delivered


ProgressCallback = Callable[[int, int | None], None]  # (bytes_done, bytes_total)


@functools.cache
def tar_extract_options() -> tuple[str, ...]:
    """GNU tar options that keep everything the image holds; --selinux only where this tar has it."""
    options = ["--numeric-owner", "--same-permissions", "--same-owner", "--xattrs", "--xattrs-include=*",
               "--acls"]
    probe = proc.run(["tar", "--selinux", "-cf", "/dev/null", "--files-from", "/dev/null"], check=False,
                     timeout=30)
    if probe.returncode == 0:
        options.append("--selinux")
    else:
        log.info("this tar has no --selinux support; SELinux labels are restored as plain xattrs")
    return tuple(options)


class _StderrTail(threading.Thread):
    """Reads a stage's stderr while it runs (a full pipe would stall the stage) and keeps the tail."""

    def __init__(self, pipe: IO[bytes]):
        super().__init__(daemon=True)
        self._pipe = pipe
        self.data = bytearray()

    def run(self) -> None:
        while block := self._pipe.read1(65536):
            self.data += block
            del self.data[:-STDERR_KEEP]

    def text(self) -> str:
        return self.data.decode(errors="replace")


class ExtractPipeline:
    """`zstd -dc | tar -x -C dest` as two checked stages; use as a context manager."""

    def __init__(self, dest: Path):
        self.dest = dest
        self.broken = False
        self._stages: list[tuple[subprocess.Popen, _StderrTail]] = []

    def __enter__(self) -> ExtractPipeline:
        zstd = proc.spawn(["zstd", "-dcq"], stdin=subprocess.PIPE, stdout=subprocess.PIPE)
        self._add(zstd)
        for pipe in (zstd.stdin, zstd.stdout):
            _widen(pipe)
        try:
            tar = proc.spawn(["tar", "-x", *tar_extract_options(), "-f", "-", "-C", str(self.dest)],
                             stdin=zstd.stdout)
        except BaseException:
            self._kill()
            raise
        zstd.stdout.close()  # tar holds the read end now; zstd must see EPIPE if tar dies
        self._add(tar)
        return self

    def _add(self, stage: subprocess.Popen) -> None:
        tail = _StderrTail(stage.stderr)
        tail.start()
        self._stages.append((stage, tail))

    def feed(self, chunk: bytes) -> None:
        """Write into zstd; after a stage died, further data is dropped (finish() says why)."""
        if self.broken:
            return
        try:
            self._stages[0][0].stdin.write(chunk)
        except (BrokenPipeError, ValueError):
            self.broken = True

    def finish(self) -> MetalstreamError | None:
        """Close the input, wait for both stages and return the error that explains a failure."""
        zstd = self._stages[0][0]
        try:
            zstd.stdin.close()
        except BrokenPipeError:
            self.broken = True
        zstd.stdin = None  # closed here so zstd sees EOF; communicate() must not flush it again
        errors: list[CommandError | None] = []
        for stage, tail in self._stages:
            tail.join(timeout=proc.DEFAULT_TIMEOUT)
            try:
                proc.wait_checked(stage)
                errors.append(None)
            except CommandError as exc:
                # wait_checked saw an already drained stderr; rebuild the error with what we kept.
                errors.append(CommandError(exc.argv, exc.returncode, tail.text() or exc.stderr,
                                           timed_out=exc.timed_out))
        zstd_error, tar_error = errors
        if zstd_error and tar_error and _died_of_broken_pipe(zstd_error):
            return tar_error
        return zstd_error or tar_error

    def _kill(self) -> None:
        for stage, tail in self._stages:
            if stage.poll() is None:
                stage.kill()
            stage.wait()
            tail.join()
            for pipe in (stage.stdin, stage.stdout, stage.stderr):
                if pipe:
                    try:
                        pipe.close()
                    except OSError:
                        pass

    def __exit__(self, exc_type, exc, tb) -> None:
        # On success finish() has reaped both stages; this only matters on errors and Ctrl-C.
        self._kill()


def _widen(pipe: IO[bytes]) -> None:
    try:
        fcntl.fcntl(pipe.fileno(), fcntl.F_SETPIPE_SZ, PIPE_BYTES)
    except OSError as exc:  # above /proc/sys/fs/pipe-max-size or the user's pipe quota: keep the default
        log.debug("pipe buffer stays at its default size: %s", exc)


def _died_of_broken_pipe(error: CommandError) -> bool:
    return error.returncode == -signal.SIGPIPE or "Broken pipe" in error.stderr


def stream_image(
    source: str | Sequence[str],
    dest: Path,
    *,
    sha256: str,
    size: int | None = None,
    progress: ProgressCallback | None = None,
    retry: RetryPolicy | None = None,
    chunk_size: int = CHUNK_SIZE,
    verify: Verify = True,
) -> StreamResult:
    """Extract the tar.zst at `source` (http(s):// URL, file:// URL or path, or several of them serving the same
    image, preferred first) into `dest`; an https certificate is checked with `verify` (deployer.tls.trust).

    Raises ImageVerificationError when the hash/size differs from the plan, OperationFailed (or
    CommandError) when the download or a pipeline stage fails. Memory use does not grow with the image.
    """
    dest = Path(dest)
    if not dest.is_dir():
        raise OperationFailed(f"extraction target {dest} is not a directory")
    expected = sha256.strip().lower()
    chunks = open_chunks(source, size=size, retry=retry, chunk_size=chunk_size, verify=verify)
    hasher = hashlib.sha256()
    done = 0
    log.info("streaming %s into %s", " or ".join(s.url for s in chunks.sources), dest)
    with ExtractPipeline(dest) as pipeline:
        for chunk in chunks:
            hasher.update(chunk)
            done += len(chunk)
            if size is not None and done > size:
                raise ImageVerificationError(
                    f"image {chunks.origin()} is larger than the plan's size {size} (read {done} bytes so far)",
                    details={"expected_size": size, "bytes_read": done})
            pipeline.feed(chunk)
            if progress:
                progress(done, size if size is not None else chunks.total)
        pipeline_error = pipeline.finish()
    actual = hasher.hexdigest()
    if size is not None and done != size:
        raise ImageVerificationError(
            f"image {chunks.origin()} is {done} bytes, the plan says {size}: truncated or wrong image",
            details={"expected_size": size, "bytes_read": done, "sha256": actual}) from pipeline_error
    if actual != expected:
        raise ImageVerificationError(
            f"image {chunks.origin()} has sha256 {actual}, the plan says {expected}: corrupt or wrong image",
            details={"expected_sha256": expected, "sha256": actual, "bytes_read": done,
                     "origin": chunks.origin()}) from pipeline_error
    if pipeline_error:
        raise pipeline_error
    log.info("streamed %d bytes from %s (sha256 %s, %d resume(s), %d failover(s))", done, chunks.origin(), actual,
             chunks.resumes, chunks.failovers)
    return StreamResult(bytes_read=done, sha256=actual, etag=chunks.etag, resumes=chunks.resumes,
                        failovers=chunks.failovers, origin=chunks.origin())
