"""An image with several sources: the agent fails over between real HTTP servers on loopback and resumes with Range.

The mirrors are small threaded HTTP servers in this module that can be told to die, stall, lie about
ranges or serve other bytes; the service is the real `metalstream serve`. The plan's sha256 judges the
result, whichever servers delivered which bytes.
"""
from __future__ import annotations

import http.server
import json
import logging
import re
import shutil
import socket
import threading
import time
from dataclasses import dataclass, field

import pytest

from deployer.download import RetryPolicy
from deployer.plan import local_plan
from deployer.stream import ImageVerificationError, stream_image
from metalstream.errors import OperationFailed

from conftest import require_root, require_tools, run_cli
from fixtures_images import write_image_manifest
from fixtures_stream import tree_snapshot

pytestmark = pytest.mark.root

FAST_RETRY = RetryPolicy(attempts=3, backoff=0.01, max_backoff=0.05, deadline=60, read_timeout=5)
CHUNK = 64 * 1024


@dataclass
class Behaviour:
    """What a mirror does; by default it serves `data` faithfully, Range included."""
    data: bytes
    die_at: int | None = None  # send this many bytes of the image, drop the connection, stop listening
    stall_at: int | None = None  # send up to this byte, then nothing until the test ends
    honour_range: bool = True
    status: int | None = None  # answer every GET with this status and no body


@dataclass
class Served:
    range: str | None
    if_range: str | None
    status: int
    sent: int = 0  # body bytes written to the socket


@dataclass
class MirrorState:
    behaviour: Behaviour
    served: list[Served] = field(default_factory=list)
    released: threading.Event = field(default_factory=threading.Event)


class _MirrorHandler(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    server: "_MirrorServer"

    def log_message(self, format, *args):
        pass

    def do_GET(self):
        state = self.server.state
        behaviour = state.behaviour
        start, status = self._plan_answer(behaviour)
        record = Served(self.headers.get("Range"), self.headers.get("If-Range"), status)
        state.served.append(record)
        self.send_response(status)
        if status not in (200, 206):
            self.send_header("Content-Length", "0")
            self.end_headers()
            return
        size = len(behaviour.data)
        self.send_header("Content-Length", str(size - start))
        self.send_header("ETag", f'"mirror-{self.server.server_address[1]}"')
        self.send_header("Last-Modified", "Wed, 25 Nov 2026 10:00:00 GMT")
        if status == 206:
            self.send_header("Content-Range", f"bytes {start}-{size - 1}/{size}")
        self.end_headers()
        stop = min(x for x in (behaviour.die_at, behaviour.stall_at, size) if x is not None and x > start)
        try:
            self.wfile.write(behaviour.data[start:stop])
            record.sent = stop - start
        except OSError:
            return
        if stop == behaviour.stall_at:
            state.released.wait(120)
        elif stop == behaviour.die_at:
            self.server.die()
        if stop < size:
            self._drop_connection()

    def _plan_answer(self, behaviour: Behaviour) -> tuple[int, int]:
        if behaviour.status is not None:
            return 0, behaviour.status
        match = re.fullmatch(r"bytes=(\d+)-", self.headers.get("Range", ""))
        if match and behaviour.honour_range:
            return int(match.group(1)), 206
        return 0, 200

    def _drop_connection(self):
        self.close_connection = True
        try:
            self.connection.shutdown(socket.SHUT_RDWR)
        except OSError:
            pass


class _MirrorServer(http.server.ThreadingHTTPServer):
    daemon_threads = True
    state: MirrorState

    def die(self) -> None:
        """Stop listening (from a handler thread: shutdown() waits for serve_forever in another one)."""
        threading.Thread(target=self.stop, daemon=True).start()

    def stop(self) -> None:
        self.state.released.set()
        self.shutdown()
        self.server_close()


class Mirror:
    """One mirror on a loopback port, serving the image at /img.tar.zst."""

    def __init__(self, behaviour: Behaviour):
        self.state = MirrorState(behaviour)
        self._server = _MirrorServer(("127.0.0.1", 0), _MirrorHandler)
        self._server.state = self.state
        port = self._server.server_address[1]
        self.url = f"http://127.0.0.1:{port}/img.tar.zst"
        self.etag = f'"mirror-{port}"'
        threading.Thread(target=self._server.serve_forever, daemon=True).start()

    @property
    def served(self) -> list[Served]:
        return self.state.served

    def stop(self) -> None:
        self._server.stop()


@pytest.fixture
def mirrors():
    """Factory: mirrors(Behaviour, ...) -> [Mirror, ...], all stopped after the test."""
    started: list[Mirror] = []

    def start(*behaviours: Behaviour) -> list[Mirror]:
        made = [Mirror(b) for b in behaviours]
        started.extend(made)
        return made

    yield start
    for mirror in started:
        mirror.stop()


def _dead_url() -> str:
    with socket.socket() as s:  # a port with nobody listening
        s.bind(("127.0.0.1", 0))
        return f"http://127.0.0.1:{s.getsockname()[1]}/img.tar.zst"


def _stream(urls, dest, image, **kwargs):
    kwargs.setdefault("retry", FAST_RETRY)
    return stream_image(urls, dest, sha256=image.sha256, size=image.size, chunk_size=CHUNK, **kwargs)


@pytest.fixture(scope="module")
def image_bytes(stream_test_image) -> bytes:
    return stream_test_image.path.read_bytes()


@pytest.fixture(scope="module")
def reference_tree(stream_test_image, tmp_path_factory):
    out = tmp_path_factory.mktemp("failover-reference")
    _stream([str(stream_test_image.path)], out, stream_test_image)
    return tree_snapshot(out)


def test_first_source_dies_midway_and_the_second_resumes_where_it_stopped(
        stream_test_image, image_bytes, reference_tree, mirrors, tmp_path, caplog):
    require_root()
    cut = stream_test_image.size * 2 // 5
    first, second = mirrors(Behaviour(image_bytes, die_at=cut), Behaviour(image_bytes))
    with caplog.at_level(logging.WARNING, logger="metalstream.download"):
        result = _stream([first.url, second.url], tmp_path, stream_test_image)
    assert result.sha256 == stream_test_image.sha256 and result.bytes_read == stream_test_image.size
    assert tree_snapshot(tmp_path) == reference_tree
    assert [(s.range, s.status, s.sent) for s in first.served] == [(None, 200, cut)]
    # The second server was asked for the rest only, without the first server's validator.
    assert [(s.range, s.if_range, s.status) for s in second.served] == [(f"bytes={cut}-", None, 206)]
    assert sum(s.sent for m in (first, second) for s in m.served) == stream_test_image.size  # not refetched
    assert (result.failovers, result.resumes) == (1, 1)
    assert result.origin == (f"{first.url} (bytes 0-{cut - 1}) + "
                             f"{second.url} (bytes {cut}-{stream_test_image.size - 1})")
    assert f"failing over to {second.url} with Range: bytes={cut}-" in caplog.text


def test_a_stalled_source_is_left_after_the_read_timeout(stream_test_image, image_bytes, reference_tree, mirrors,
                                                         tmp_path):
    require_root()
    stall = 1_000_000
    first, second = mirrors(Behaviour(image_bytes, stall_at=stall), Behaviour(image_bytes))
    started = time.monotonic()
    result = _stream([first.url, second.url], tmp_path, stream_test_image,
                     retry=RetryPolicy(attempts=2, backoff=0.01, deadline=60, read_timeout=1))
    assert time.monotonic() - started < 30  # the stalled server would hold the transfer for 120 s
    assert tree_snapshot(tmp_path) == reference_tree
    assert second.served[0].range == f"bytes={stall}-"
    assert result.failovers == 1


def test_the_preferred_source_down_from_the_start_costs_one_connection_attempt(
        stream_test_image, image_bytes, reference_tree, mirrors, tmp_path):
    require_root()
    (second,) = mirrors(Behaviour(image_bytes))
    result = _stream([_dead_url(), second.url], tmp_path, stream_test_image)
    assert [(s.range, s.status) for s in second.served] == [(None, 200)]
    assert result.failovers == 1 and result.resumes == 0 and result.origin == second.url
    assert tree_snapshot(tmp_path) == reference_tree


def test_sources_that_cannot_take_over_are_left_out(stream_test_image, image_bytes, reference_tree, mirrors,
                                                    tmp_path):
    require_root()
    cut = 700_000
    other_size = image_bytes + b"\0" * 4096
    dying, ignores_range, wrong_size, missing, good = mirrors(
        Behaviour(image_bytes, die_at=cut), Behaviour(image_bytes, honour_range=False), Behaviour(other_size),
        Behaviour(image_bytes, status=404), Behaviour(image_bytes))
    urls = [m.url for m in (dying, ignores_range, wrong_size, missing, good)]
    result = _stream(urls, tmp_path, stream_test_image)
    assert tree_snapshot(tmp_path) == reference_tree
    # 200 to a Range request: its body would restart at byte 0 after `cut` bytes were extracted; not spliced.
    assert [(s.range, s.status) for s in ignores_range.served] == [(f"bytes={cut}-", 200)]
    assert [(s.range, s.status) for s in wrong_size.served] == [(f"bytes={cut}-", 206)]  # Content-Range total
    assert [s.status for s in missing.served] == [404]
    assert [(s.range, s.status) for s in good.served] == [(f"bytes={cut}-", 206)]
    assert result.failovers == 4


def test_a_whole_image_of_another_size_is_refused_before_its_first_byte(stream_test_image, image_bytes, mirrors,
                                                                        tmp_path):
    require_root()
    wrong, good = mirrors(Behaviour(image_bytes[:-1000]), Behaviour(image_bytes))
    result = _stream([wrong.url, good.url], tmp_path, stream_test_image)
    assert result.origin == good.url and [s.range for s in good.served] == [None]


def test_all_sources_dead_is_a_clear_error_after_bounded_retries(stream_test_image, image_bytes, mirrors,
                                                                 tmp_path):
    require_root()
    dead = _dead_url()
    (busy,) = mirrors(Behaviour(image_bytes, status=503))
    retry = RetryPolicy(attempts=2, backoff=0.2, max_backoff=5, deadline=60, connect_timeout=2)
    started = time.monotonic()
    with pytest.raises(OperationFailed) as info:
        _stream([dead, busy.url], tmp_path, stream_test_image, retry=retry)
    message = str(info.value)
    assert message.startswith("downloading the image failed at byte 0 from all 2 sources after 3 pass(es)")
    assert f"{dead}: ConnectionError" in message and f"{busy.url}: HTTP 503" in message
    assert len(busy.served) == 3  # one request per pass: the first and attempts=2 more
    assert time.monotonic() - started >= 0.2 + 0.4  # backed off between the passes, doubling


def test_all_sources_dead_midway_keeps_what_was_received_and_says_where(stream_test_image, image_bytes, mirrors,
                                                                        tmp_path):
    require_root()
    cut = 900_000
    first, second = mirrors(Behaviour(image_bytes, die_at=cut), Behaviour(image_bytes, die_at=cut + 100_000))
    with pytest.raises(OperationFailed, match=f"failed at byte {cut + 100_000} from all 2 sources") as info:
        _stream([first.url, second.url], tmp_path, stream_test_image)
    assert info.value.details["bytes_read"] == cut + 100_000


def test_a_mirror_serving_other_bytes_fails_the_sha256_naming_it(stream_test_image, image_bytes, mirrors, tmp_path):
    require_root()
    flipped = bytearray(image_bytes)
    flipped[len(flipped) // 3] ^= 0x01
    bad, good = mirrors(Behaviour(bytes(flipped)), Behaviour(image_bytes))
    with pytest.raises(ImageVerificationError, match="sha256") as info:
        _stream([bad.url, good.url], tmp_path, stream_test_image)
    assert str(info.value).startswith(f"image {bad.url} has sha256 ")
    assert good.served == []  # a mismatch is found at the end: the extraction is spoilt, nothing to fail over to


def test_bytes_spliced_from_a_lying_mirror_fail_the_sha256_naming_each_source(stream_test_image, image_bytes,
                                                                             mirrors, tmp_path):
    require_root()
    cut = stream_test_image.size // 2
    flipped = bytearray(image_bytes)
    flipped[cut + 10] ^= 0x01
    good, lying = mirrors(Behaviour(image_bytes, die_at=cut), Behaviour(bytes(flipped)))
    with pytest.raises(ImageVerificationError) as info:
        _stream([good.url, lying.url], tmp_path, stream_test_image)
    assert info.value.details["origin"] == (f"{good.url} (bytes 0-{cut - 1}) + "
                                            f"{lying.url} (bytes {cut}-{stream_test_image.size - 1})")
    assert info.value.details["sha256"] != stream_test_image.sha256


def test_one_url_still_retries_the_same_server_with_if_range(stream_test_image, image_bytes, reference_tree,
                                                             mirrors, tmp_path):
    require_root()
    (only,) = mirrors(Behaviour(image_bytes))
    only.state.behaviour.stall_at = 300_000
    retry = RetryPolicy(attempts=3, backoff=0.01, deadline=60, read_timeout=1)
    result = _stream(only.url, tmp_path, stream_test_image, retry=retry)
    assert tree_snapshot(tmp_path) == reference_tree
    resumed = only.served[1]
    assert (resumed.range, resumed.if_range, resumed.status) == ("bytes=300000-", only.etag, 206)
    assert result.failovers == 0 and result.resumes >= 1


# ---------------------------------------------------------------- the real service as the second source


@pytest.fixture(scope="module")
def real_service(stream_test_image, tmp_path_factory):
    """`metalstream serve` with the streaming test image registered as `stream-test`."""
    from lab.service_proc import ServiceProcess

    work = tmp_path_factory.mktemp("failover-service")
    tarball = work / "stream-test.tar.zst"
    shutil.copyfile(stream_test_image.path, tarball)  # a copy: the store links the file it is given
    manifest = write_image_manifest(tarball, "stream-test")
    data_dir = work / "data"
    added = run_cli("image", "add", "--create", "--data-dir", str(data_dir), str(manifest))
    assert added.returncode == 0, added.stderr
    with ServiceProcess(data_dir, workers=1, options=["--sweep-interval", "0"]) as service:
        yield service


def _image_requests(log_text: str) -> list[tuple[str, int]]:
    """(status, body bytes) of every GET of the image in the service's access log."""
    found = re.findall(r'"GET /images/stream-test\.tar\.zst HTTP/1\.1" (\d{3}) (\d+)', log_text)
    return [(status, int(size)) for status, size in found]


def test_the_service_takes_over_from_a_dead_rack_cache_with_range(stream_test_image, image_bytes, reference_tree,
                                                                  mirrors, real_service, tmp_path):
    require_root()
    cut = stream_test_image.size // 3
    (cache,) = mirrors(Behaviour(image_bytes, die_at=cut))
    service_url = f"{real_service.url}/images/stream-test.tar.zst"
    before = _image_requests(real_service.log_path.read_text())
    result = _stream([cache.url, service_url], tmp_path, stream_test_image)
    assert result.sha256 == stream_test_image.sha256 and tree_snapshot(tmp_path) == reference_tree
    deadline = time.monotonic() + 10  # gunicorn writes the access log line after the response
    while len(_image_requests(real_service.log_path.read_text())) == len(before) and time.monotonic() < deadline:
        time.sleep(0.1)
    served = _image_requests(real_service.log_path.read_text())[len(before):]
    assert served == [("206", stream_test_image.size - cut)]


def test_install_with_a_plan_of_two_urls_completes_from_the_second(synthetic_image, mirrors, sparse_disk,
                                                                   tmp_path):
    require_root()
    require_tools("sfdisk", "mkfs.ext4", "mkfs.vfat", "mcopy", "grub-mkimage", "zstd", "tar")
    tarball = synthetic_image.parent / "synthetic.tar.zst"
    data = tarball.read_bytes()
    cut = len(data) // 2
    cache, service = mirrors(Behaviour(data, die_at=cut), Behaviour(data))
    plan = local_plan(str(synthetic_image)).to_json()
    plan["image"] = {**plan["image"], "url": cache.url, "urls": [cache.url, service.url]}
    plan_path = tmp_path / "plan.json"
    plan_path.write_text(json.dumps({**plan, "deployment_id": "failover", "boot_mode": "uefi"}))
    result = run_cli("install", "--plan", str(plan_path), "--to", str(sparse_disk(2 << 30)))
    assert result.returncode == 0, result.stdout + result.stderr
    assert f"[stream] streaming {cache.url} or {service.url}" in result.stdout
    assert f"bytes from {cache.url} (bytes 0-{cut - 1}) + {service.url} (bytes {cut}-{len(data) - 1})" in result.stdout
    assert "1 resume(s), 1 failover(s)" in result.stdout
    assert [s.range for s in service.served] == [f"bytes={cut}-"]
