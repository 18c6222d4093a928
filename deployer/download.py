"""Read an image as a sequence of chunks from its sources (local files, http(s) URLs), with resume and failover.

A plan may list several sources of the same image, preferred first (a rack-local cache, mirrors, the
service). `ImageSources` reads from the first; when a transfer fails (connection refused or reset, a
retryable HTTP status, no byte for `read_timeout` seconds, a body shorter than announced) it goes on
from the next source at the byte where the transfer stopped, with `Range: bytes=N-`. The caller
hashes every byte: the plan's sha256 judges the result, whichever sources it came from.

A resume at the *same* server sends `If-Range: <that server's validator>`, so the bytes after N come
from the same object; a 200 instead of 206 means the image was replaced there (ImageChanged). Another
server's validators mean nothing, so a resume at a server that has not answered yet is checked by its
`Content-Range` instead: it must start at N and give the image's size. A source that answers a range
with the whole object (200), serves an image of another size, or answers with a client error (404...)
is left out for the rest of the download: bytes of another object are never spliced knowingly, and
the first part has already gone into the extraction. Once every source left has failed since the last
byte arrived, the download waits (backoff doubling) and starts over at the preferred one. Retries are
bounded (passes over the sources without a new byte) and an overall deadline applies.
"""
from __future__ import annotations

import http.client
import logging
import os
import re
import stat
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Callable, Iterator, Sequence
from urllib.parse import unquote, urlparse

from metalstream.errors import OperationFailed

from .tls import TlsVerificationFailed, Verify, refusal, untrusted_certificate

if TYPE_CHECKING:
    import requests

log = logging.getLogger("metalstream.download")

CHUNK_SIZE = 1 << 20
RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}
_CONTENT_RANGE = re.compile(r"bytes (\d+)-(\d+)/(\d+|\*)")


class ImageChanged(OperationFailed):
    """The image on the server changed while it was being streamed; the install must start over."""


class _Retry(Exception):
    """Internal: this attempt failed in a way worth retrying (at this source or another)."""


class _DeadlinePassed(OperationFailed):
    """The overall deadline passed mid-transfer: final, whichever source is serving."""


@dataclass(frozen=True)
class RetryPolicy:
    attempts: int = 8  # consecutive failed passes over the sources (one source: attempts) without a new byte
    backoff: float = 0.5  # seconds before the first retry; doubles each time
    max_backoff: float = 15.0
    deadline: float = 3600.0  # seconds for the whole download, retries included
    connect_timeout: float = 15.0
    read_timeout: float = 60.0  # silence on an open connection that counts as a drop (a stall)


@dataclass
class Span:
    """Bytes [start, end) of the image came from `url`."""
    url: str
    start: int
    end: int


class FileSource:
    """A local file (`/path` or `file:///path`), read from any offset."""

    def __init__(self, url: str, path: Path, chunk_size: int = CHUNK_SIZE):
        self.url = url
        self.path = path
        self.chunk_size = chunk_size
        self.etag: str | None = None

    def read(self, offset: int, size: int | None) -> Iterator[bytes]:
        try:
            st = self.path.stat()
            if not stat.S_ISREG(st.st_mode):
                raise OperationFailed(f"cannot read image {self.path}: not a regular file")
            with open(self.path, "rb") as f:
                f.seek(offset)
                while chunk := f.read(self.chunk_size):
                    yield chunk
        except OSError as exc:
            raise OperationFailed(f"cannot read image {self.path}: {exc.strerror or exc}") from exc

    def total(self) -> int | None:
        try:
            return self.path.stat().st_size
        except OSError:
            return None


class HttpSource:
    """An http(s) URL, read from any offset with one GET per call. `verify` is requests' certificate check
    (deployer.tls.trust); a certificate that fails it is final for the whole download."""

    def __init__(self, url: str, session: requests.Session, *, retry: RetryPolicy, chunk_size: int = CHUNK_SIZE,
                 verify: Verify = True):
        self.url = url
        self.session = session
        self.retry = retry
        self.chunk_size = chunk_size
        self.verify = verify
        self.answered = False  # this server has sent us (part of) the image: its validators apply
        self.etag: str | None = None
        self.last_modified: str | None = None
        self.length: int | None = None  # the whole image's size as this server announced it

    def total(self) -> int | None:
        return self.length

    def read(self, offset: int, size: int | None) -> Iterator[bytes]:
        """The image from byte `offset`; `size` (when known) is what every answer must agree with."""
        import requests
        import urllib3

        response = self._get(offset)
        with response:
            end = self._check_response(response, offset, size)
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

    def _get(self, offset: int) -> requests.Response:
        import requests

        headers = {"Accept-Encoding": "identity"}
        if offset:
            headers["Range"] = f"bytes={offset}-"
            if self.answered:
                headers["If-Range"] = self._validator()
        timeout = (self.retry.connect_timeout, self.retry.read_timeout)
        try:
            return self.session.get(self.url, headers=headers, stream=True, timeout=timeout, verify=self.verify)
        except requests.RequestException as exc:
            if (cause := untrusted_certificate(exc)) is not None:
                raise refusal(self.url, cause, self.verify) from None
            raise _Retry(f"{type(exc).__name__}: {exc}") from exc

    def _validator(self) -> str:
        if self.etag and not self.etag.startswith("W/"):
            return self.etag
        if self.last_modified:
            return self.last_modified
        raise OperationFailed(
            f"the download of {self.url} was interrupted and the server sent neither a strong ETag nor "
            "Last-Modified, so it cannot be resumed without risking mixed content; retry the install")

    def _check_response(self, response: requests.Response, offset: int, size: int | None) -> int | None:
        """Validate status and headers; return the byte offset where this response's body ends."""
        status = response.status_code
        if status in RETRYABLE_STATUS:
            raise _Retry(f"HTTP {status} {response.reason}")
        end = self._check_whole(response, size) if offset == 0 else self._check_range(response, offset, size)
        self.answered = True
        return end

    def _check_whole(self, response: requests.Response, size: int | None) -> int | None:
        if response.status_code != 200:
            raise OperationFailed(f"GET {self.url}: HTTP {response.status_code} {response.reason}")
        length = response.headers.get("Content-Length")
        self.length = int(length) if length and length.isdigit() else None
        _check_size(self.url, self.length, size)
        self.etag = response.headers.get("ETag")
        self.last_modified = response.headers.get("Last-Modified")
        return self.length

    def _check_range(self, response: requests.Response, offset: int, size: int | None) -> int:
        status = response.status_code
        if status == 200 and self.answered:
            raise ImageChanged(
                f"{self.url} changed on the server while it was being streamed (resume at byte {offset} "
                f"got a whole new object, ETag {self.etag} -> {response.headers.get('ETag')}); "
                "the partial extraction is discarded: restart the install")
        if status == 200:
            raise OperationFailed(f"{self.url} answered Range: bytes={offset}- with the whole image (HTTP 200): "
                                  "it cannot take over a transfer midway")
        if status != 206:
            raise OperationFailed(f"resuming {self.url} at byte {offset}: HTTP {status} {response.reason}")
        match = _CONTENT_RANGE.fullmatch(response.headers.get("Content-Range", "").strip())
        if not match or int(match.group(1)) != offset:
            raise OperationFailed(f"resuming {self.url} at byte {offset}: server sent Content-Range "
                                  f"{response.headers.get('Content-Range')!r}")
        if match.group(3) != "*":
            self.length = int(match.group(3))
            _check_size(self.url, self.length, size)
        etag = response.headers.get("ETag")
        if self.answered and self.etag and etag and etag != self.etag:
            raise ImageChanged(f"{self.url} changed on the server while it was being streamed "
                               f"(ETag {self.etag} -> {etag}); restart the install")
        if not self.answered:
            self.etag, self.last_modified = etag, response.headers.get("Last-Modified")
        return int(match.group(2)) + 1


def _check_size(url: str, announced: int | None, size: int | None) -> None:
    if announced is not None and size is not None and announced != size:
        raise OperationFailed(f"{url} serves {announced} bytes, but the image is {size} bytes: another image")


Source = FileSource | HttpSource


class ImageSources:
    """The image's chunks from its sources, preferred first, failing over between them (module docstring).

    `size` is the image's size when the plan says it; otherwise the first answer's size is what later
    answers must agree with. `spans` says which source delivered which bytes."""

    def __init__(self, sources: Sequence[Source], *, size: int | None = None, retry: RetryPolicy | None = None,
                 session: requests.Session | None = None, sleep: Callable[[float], None] = time.sleep):
        self.sources = list(sources)
        self.size = size
        self.retry = retry or RetryPolicy()
        self.session = session
        self._sleep = sleep
        self.resumes = 0  # transfers started at a byte other than 0 (at the same source or another)
        self.failovers = 0  # moves from one source to another after a failure
        self.spans: list[Span] = []
        self.etag: str | None = None  # the validator of the source that delivered the last byte

    @property
    def total(self) -> int | None:
        return self.size

    def origin(self) -> str:
        """Where the bytes came from: one URL, or each URL with its byte range."""
        urls = {span.url for span in self.spans} or {self.sources[0].url}
        if len(urls) == 1:
            return urls.pop()
        return " + ".join(f"{span.url} (bytes {span.start}-{span.end - 1})" for span in self.spans)

    def __iter__(self) -> Iterator[bytes]:
        try:
            yield from self._chunks()
        finally:
            if self.session is not None:
                self.session.close()

    def _chunks(self) -> Iterator[bytes]:
        failures = _Failures(live=list(range(len(self.sources))))
        offset, current = 0, 0
        while not (offset and offset == self.size):  # (the last byte may arrive just before the connection breaks)
            source = self.sources[current]
            if offset:
                self.resumes += 1
            try:
                for chunk in source.read(offset, self.size):
                    offset = self._received(source, offset, chunk, failures.started)
                    failures.progressed()
                    yield chunk
                self.etag = source.etag
                return
            except (TlsVerificationFailed, _DeadlinePassed):
                raise
            except _Retry as exc:
                failures.transient(current, source.url, exc)
            except OperationFailed as exc:
                failures.left_out(current, source.url, exc)
            current = self._next_source(current, offset, failures)

    def _next_source(self, current: int, offset: int, failures: _Failures) -> int:
        """Where the download goes on after `current` failed: the next source left, or, once every one of them
        has failed since the last byte, the preferred one after a backoff. Raises when retries run out."""
        if not failures.live:
            raise self._exhausted(failures, offset)
        url, following = self.sources[current].url, _next_after(current, failures.live)
        resume = f" with Range: bytes={offset}-" if offset else ""
        if following in failures.failed:
            failures.passes += 1
            wait = min(self.retry.backoff * 2 ** (failures.passes - 1), self.retry.max_backoff)
            if failures.passes > self.retry.attempts or failures.elapsed() + wait > self.retry.deadline:
                raise self._exhausted(failures, offset)
            following = failures.live[0]
            if len(self.sources) == 1:
                log.warning("download of %s interrupted at byte %d (%s); retrying in %.1f s", url, offset,
                            failures.problem, wait)
            else:
                log.warning("every image source failed since byte %d (last %s: %s); retrying %s%s in %.1f s",
                            offset, url, failures.problem, self.sources[following].url, resume, wait)
            self._sleep(wait)
            failures.failed.clear()
        elif following != current:
            what = "is left out" if current not in failures.live else "failed"
            log.warning("image source %s %s at byte %d (%s); failing over to %s%s", url, what, offset,
                        failures.problem, self.sources[following].url, resume)
        if following != current:
            self.failovers += 1
        return following

    def _received(self, source: Source, offset: int, chunk: bytes, started: float) -> int:
        if self.size is None:
            self.size = source.total()
        if self.spans and self.spans[-1].url == source.url and self.spans[-1].end == offset:
            self.spans[-1].end += len(chunk)
        else:
            self.spans.append(Span(source.url, offset, offset + len(chunk)))
        offset += len(chunk)
        if time.monotonic() - started > self.retry.deadline:
            raise _DeadlinePassed(f"downloading {source.url} took longer than the {self.retry.deadline:.0f} s "
                                  f"deadline (at byte {offset})")
        return offset

    def _exhausted(self, failures: _Failures, offset: int) -> OperationFailed:
        """The error that ends the download: the one source's own, or every source's last reason."""
        details = {"bytes_read": offset, "reasons": dict(failures.reasons)}
        elapsed = failures.elapsed()
        if len(self.sources) == 1:
            if isinstance(failures.problem, OperationFailed):
                return failures.problem
            return OperationFailed(f"downloading {self.sources[0].url} failed at byte {offset} after "
                                   f"{failures.passes} attempt(s) in {elapsed:.0f} s: {failures.problem}",
                                   details=details)
        listed = "; ".join(f"{url}: {reason}" for url, reason in failures.reasons.items())
        passes = f" after {failures.passes} pass(es)" if failures.passes else ""
        return OperationFailed(f"downloading the image failed at byte {offset} from all {len(self.sources)} "
                               f"sources{passes} in {elapsed:.0f} s: {listed}", details=details)


@dataclass
class _Failures:
    """What went wrong since the download started, for ImageSources."""
    live: list[int]  # indexes of the sources not left out
    failed: set[int] = field(default_factory=set)  # live sources that failed since the last byte arrived
    passes: int = 0  # passes over the live sources without a new byte
    reasons: dict[str, str] = field(default_factory=dict)  # each source's last failure
    problem: Exception | None = None  # the last failure
    started: float = field(default_factory=time.monotonic)

    def progressed(self) -> None:
        self.failed.clear()
        self.passes = 0

    def transient(self, index: int, url: str, problem: Exception) -> None:
        self.failed.add(index)
        self._note(url, problem)

    def left_out(self, index: int, url: str, problem: Exception) -> None:
        self.live.remove(index)
        self.failed.discard(index)
        self._note(url, problem)

    def elapsed(self) -> float:
        return time.monotonic() - self.started

    def _note(self, url: str, problem: Exception) -> None:
        self.reasons[url] = str(problem)
        self.problem = problem


def _next_after(current: int, live: list[int]) -> int:
    """The source after `current` in plan order among those left, wrapping around."""
    return next((i for i in live if i > current), live[0])


def _is_http(url: str) -> bool:
    return urlparse(url).scheme in ("http", "https")


def _http_session() -> requests.Session:
    import requests  # here, not at the top: an install from a local image file does not pay its import (0.1 s)

    return requests.Session()


def open_source(url: str, *, session: requests.Session | None, retry: RetryPolicy, chunk_size: int = CHUNK_SIZE,
                verify: Verify = True) -> Source:
    """The source for an http(s):// URL (certificates checked with `verify`), a file:// URL or a plain path."""
    parsed = urlparse(url)
    if _is_http(url):
        return HttpSource(url, session, retry=retry, chunk_size=chunk_size, verify=verify)
    if parsed.scheme == "file":
        if parsed.netloc not in ("", "localhost"):
            raise OperationFailed(f"file URL with a remote host is not supported: {url}")
        return FileSource(url, Path(unquote(parsed.path)), chunk_size)
    if parsed.scheme and len(parsed.scheme) > 1:  # one letter would be a Windows drive, not a scheme
        raise OperationFailed(f"unsupported image source {url!r}: use http(s)://, file:// or a path")
    return FileSource(url, Path(os.path.expanduser(url)), chunk_size)


def open_chunks(sources: str | Sequence[str], *, size: int | None = None, retry: RetryPolicy | None = None,
                chunk_size: int = CHUNK_SIZE, verify: Verify = True) -> ImageSources:
    """The chunks of the image at `sources` (one URL or path, or several of the same image, preferred first)."""
    urls = [sources] if isinstance(sources, str) else list(sources)
    if not urls:
        raise OperationFailed("no image source given")
    retry = retry or RetryPolicy()
    session = _http_session() if any(_is_http(url) for url in urls) else None
    opened = [open_source(url, session=session, retry=retry, chunk_size=chunk_size, verify=verify) for url in urls]
    return ImageSources(opened, size=size, retry=retry, session=session)
