"""Read an image as a sequence of chunks: from a local file, or over HTTP with resume.

A dropped HTTP transfer (connection reset, timeout, a body shorter than announced) is resumed with
`Range: bytes=N-` and `If-Range: <validator>`, so the bytes after N come from the *same* object.
If the server answers the resume with a whole new object (200 instead of 206: the image was
replaced), the download fails with ImageChanged: bytes of two objects are never spliced, and since
the first part has already gone into the extraction, the install must restart from scratch.
Retries are bounded (consecutive failures without progress) and an overall deadline applies.
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import stat
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, Iterator
from urllib.parse import unquote, urlparse

import requests
import urllib3

from metalstream.errors import OperationFailed

from .tls import Verify, refusal, untrusted_certificate

log = logging.getLogger("metalstream.download")

CHUNK_SIZE = 1 << 20
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ImageChanged(OperationFailed):
    """The image on the server changed while it was being streamed; the install must start over."""


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # consecutive failed attempts without a single new byte
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_backoff: float = 15.0
    deadline: float = 3600.0  # seconds for the whole download, retries included
    connect_timeout: float = 15.0
    read_timeout: float = 60.0  # silence on an open connection that counts as a drop


class FileChunks:
    """Chunks of a local file (`/path` or `file:///path`)."""

    def __init__(self, path: Path, chunk_size: int = CHUNK_SIZE):
        self.path = path
        self.chunk_size = chunk_size
        self.etag: str | None = None
        self.resumes = 0
        try:
            st = path.stat()
        except OSError as exc:
            raise OperationFailed(f"cannot read image {path}: {exc.strerror}") from exc
        if not stat.S_ISREG(st.st_mode):
            raise OperationFailed(f"cannot read image {path}: not a regular file")
        self.total: int | None = st.st_size

    def __iter__(self) -> Iterator[bytes]:
        try:
            with open(self.path, "rb") as f:
                while chunk := f.read(self.chunk_size):
                    yield chunk
        except OSError as exc:
            raise OperationFailed(f"cannot read image {self.path}: {exc.strerror or exc}") from exc


class HttpChunks:
    """Chunks of an http(s) URL; resumes dropped transfers from the byte where they stopped.
    `verify` is requests' certificate check (deployer.tls.trust); a certificate that fails it is final."""

    def __init__(self, url: str, *, retry: RetryPolicy | None = None, chunk_size: int = CHUNK_SIZE,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep,
                 verify: Verify = True):
        self.url = url
        self.verify = verify
        self.retry = retry or RetryPolicy()
        self.chunk_size = chunk_size
        self.session = session or requests.Session()
        self._sleep = sleep
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.total: int | None = None
        self.resumes = 0

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._resuming_chunks()
        finally:
            self.session.close()

    def _resuming_chunks(self) -> Iterator[bytes]:
        offset = 0
        failures = 0
        started = time.monotonic()
        while True:
            try:
                for chunk in self._attempt(offset):
                    offset += len(chunk)
                    failures = 0
                    if time.monotonic() - started > self.retry.deadline:
                        raise OperationFailed(f"downloading {self.url} took longer than the "
                                              f"{self.retry.deadline:.0f} s deadline (at byte {offset})")
                    yield chunk
                return
            except _Retry as exc:
                failures += 1
                elapsed = time.monotonic() - started
                wait = min(self.retry.backoff * 2 ** (failures - 1), self.retry.max_backoff)
                if failures > self.retry.attempts or elapsed + wait > self.retry.deadline:
                    raise OperationFailed(
                        f"downloading {self.url} failed at byte {offset} after {failures} attempt(s) "
                        f"in {elapsed:.0f} s: {exc}") from exc
                log.warning("download of %s interrupted at byte %d (%s); retrying in %.1f s",
                            self.url, offset, exc, wait)
                self._sleep(wait)
                if offset:
                    self.resumes += 1

    def _validator(self) -> str:
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        if self.last_modified:
            return self.last_modified
        raise OperationFailed(
            f"the download of {self.url} was interrupted and the server sent neither a strong ETag nor "
            "Last-Modified, so it cannot be resumed without risking mixed content; retry the install")

    def _attempt(self, offset: int) -> Iterator[bytes]:
        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            headers["If-Range"] = self._validator()
        timeout = (self.retry.connect_timeout, self.retry.read_timeout)
        try:
            response = self.session.get(self.url, headers=headers, stream=True, timeout=timeout, verify=self.verify)
        except requests.RequestException as exc:
            if (cause := untrusted_certificate(exc)) is not None:
                raise refusal(self.url, cause, self.verify) from None
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc
        with response:
            end = self._check_response(response, offset)
            received = offset
            # read1 hands over whatever arrived, so a drop loses no received byte and the resume starts
            # exactly where the connection broke (older urllib3 lacks read1; read() then returns short).
            raw = response.raw
            read = getattr(raw, "read1", None) or raw.read
            try:
                while chunk := read(self.chunk_size):
                    received += len(chunk)
                    yield chunk
            except (requests.RequestException, urllib3.exceptions.HTTPError, http.client.HTTPException,
                    OSError) as exc:
                raise _Retry(f"{type(exc).__name__}: {exc}") from exc
            if end is not None and received < end:
                raise _Retry(f"connection closed after {received} of {end} bytes")

    def _check_response(self, response: requests.Response, offset: int) -> int | None:
        """Validate status and headers; return the byte offset where this response's body ends."""
        status = response.status_code
        if status in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {status} {response.reason}")
        if offset == 0:
            if status != 200:
                raise OperationFailed(f"GET {self.url}: HTTP {status} {response.reason}")
            self.etag = response.headers.get("ETag")
            self.last_modified = response.headers.get("Last-Modified")
            length = response.headers.get("Content-Length")
            self.total = int(length) if length and length.isdigit() else None
            return self.total
        if status == 200:
            raise ImageChanged(
                f"{self.url} changed on the server while it was being streamed (resume at byte {offset} "
                f"got a whole new object, ETag {self.etag} -> {response.headers.get('ETag')}); "
                "the partial extraction is discarded: restart the install")
        if status != 206:
            raise OperationFailed(f"resuming {self.url} at byte {offset}: HTTP {status} {response.reason}")
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            raise OperationFailed(f"resuming {self.url} at byte {offset}: server sent Content-Range "
                                  f"{response.headers.get('Content-Range')!r}")
        etag = response.headers.get("ETag")
        if self.etag and etag and etag != self.etag:
            raise ImageChanged(f"{self.url} changed on the server while it was being streamed "
                               f"(ETag {self.etag} -> {etag}); restart the install")
        return int(match.group(2)) + 1


def open_chunks(source: str, *, retry: RetryPolicy | None = None, chunk_size: int = CHUNK_SIZE,
                verify: Verify = True) -> FileChunks | HttpChunks:
    """The chunk reader for an http(s):// URL (certificates checked with `verify`), a file:// URL or a plain path."""
    parsed = urlparse(source)
    if parsed.scheme in ("http", "https"):
        return HttpChunks(source, retry=retry, chunk_size=chunk_size, verify=verify)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise OperationFailed(f"file URL with a remote host is not supported: {source}")
        return FileChunks(Path(unquote(parsed.path)), chunk_size)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive, not a scheme
        raise OperationFailed(f"unsupported image source {source!r}: use http(s)://, file:// or a path")
    return FileChunks(Path(os.path.expanduser(source)), chunk_size)
