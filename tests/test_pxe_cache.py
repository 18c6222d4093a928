"""A rack-local cache: Debian's nginx with proxy_cache (and the slice module) in front of the real `metalstream serve`.

nginx runs as a child process with its configuration, pid, logs, temp and cache directories in the
test's directory; its `location /images/` holds the directives docs/service.md documents (checked
below), so the recipe is what is tested. The service's Prometheus counter of image bytes served says
what went past the cache.
"""
from __future__ import annotations

import hashlib
import os
import re
import socket
import subprocess
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from deployer.download import RetryPolicy
from deployer.stream import stream_image

from conftest import REPO, require_root, run_cli
from fixtures_images import write_image_manifest

NGINX = "/usr/sbin/nginx"
SLICE = 1 << 20  # the documented 8m, smaller here: a 5 MiB image spans six slices
IMAGE = "cached"

# `location /images/` of the documented recipe, but for the upstream and the slice size (site choices).
RECIPE = [
    "proxy_http_version 1.1;",
    "proxy_set_header Range $slice_range;",
    "proxy_cache metalstream_images;",
    "proxy_cache_key $scheme$proxy_host$request_uri$slice_range;",
    "proxy_cache_valid 200 206 60d;",
    "proxy_ignore_headers Cache-Control Expires;",
    "proxy_cache_lock on;",
    "add_header X-Cache-Status $upstream_cache_status always;",
]
CACHE_ZONE = "levels=1:2 keys_zone=metalstream_images:10m"


def _nginx_conf(work: Path, port: int, upstream: str, extra: str = "") -> str:
    temp = "\n".join(f"    {kind}_temp_path {work / 'tmp' / kind};"
                     for kind in ("client_body", "proxy", "fastcgi", "uwsgi", "scgi"))
    location = "\n".join(f"            {line}" for line in RECIPE)
    # `user root`: the test's directories are root's alone; a real cache runs its workers as www-data.
    return f"""
daemon off;
user root;
worker_processes 1;
pid {work / 'nginx.pid'};
error_log {work / 'error.log'} info;
events {{ worker_connections 64; }}
http {{
    log_format cache '"$request" $status $body_bytes_sent range="$http_range" cache=$upstream_cache_status';
    access_log {work / 'access.log'} cache;
{temp}
    proxy_cache_path {work / 'cache'} {CACHE_ZONE} max_size=1g inactive=60d use_temp_path=off;
    server {{
        listen 127.0.0.1:{port};
        location /images/ {{
            proxy_pass {upstream};
            slice {SLICE};
{location}
            {extra}
        }}
        location / {{ return 404; }}
    }}
}}
"""


@dataclass
class Nginx:
    url: str
    work: Path
    process: subprocess.Popen

    def stop(self) -> None:
        if self.process.poll() is None:
            self.process.terminate()
            try:
                self.process.wait(timeout=20)
            except subprocess.TimeoutExpired:
                self.process.kill()
                self.process.wait()

    def access_log(self) -> list[str]:
        return (self.work / "access.log").read_text().splitlines()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def start_nginx(work: Path, upstream: str, extra: str = "") -> Nginx:
    if not os.path.exists(NGINX):
        pytest.fail("nginx is missing: run `bash .ci/setup`")
    (work / "tmp").mkdir(parents=True)
    port = _free_port()
    conf = work / "nginx.conf"
    conf.write_text(_nginx_conf(work, port, upstream, extra))
    process = subprocess.Popen([NGINX, "-p", str(work), "-c", str(conf), "-e", str(work / "error.log")],
                               stdout=subprocess.DEVNULL, stderr=open(work / "stderr.log", "wb"))
    nginx = Nginx(f"http://127.0.0.1:{port}", work, process)
    deadline = time.monotonic() + 20
    while True:
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            return nginx
        except OSError:
            if process.poll() is not None or time.monotonic() > deadline:
                nginx.stop()
                pytest.fail(f"nginx did not start: {(work / 'stderr.log').read_text()}"
                            f"{(work / 'error.log').read_text() if (work / 'error.log').exists() else ''}")
            time.sleep(0.1)


@dataclass
class Image:
    data: bytes
    sha256: str

    @property
    def size(self) -> int:
        return len(self.data)


@pytest.fixture(scope="module")
def cached_image(tmp_path_factory) -> tuple[Path, Image]:
    """A real tar.zst of 5 MiB of random bytes (incompressible: six 1 MiB slices) and its manifest."""
    work = tmp_path_factory.mktemp("cache-image")
    tree = work / "tree"
    tree.mkdir()
    (tree / "blob").write_bytes(os.urandom(5 << 20))
    tarball = work / f"{IMAGE}.tar.zst"
    tar = subprocess.run(["tar", "-C", str(tree), "-c", "."], capture_output=True, check=True).stdout
    tarball.write_bytes(subprocess.run(["zstd", "-q", "-c"], input=tar, capture_output=True, check=True).stdout)
    data = tarball.read_bytes()
    return write_image_manifest(tarball, IMAGE), Image(data, hashlib.sha256(data).hexdigest())


@pytest.fixture(scope="module")
def service(cached_image, tmp_path_factory):
    from lab.service_proc import ServiceProcess

    manifest, _ = cached_image
    data_dir = tmp_path_factory.mktemp("cache-service") / "data"
    added = run_cli("image", "add", "--create", "--data-dir", str(data_dir), str(manifest))
    assert added.returncode == 0, added.stderr
    with ServiceProcess(data_dir, workers=1, options=["--sweep-interval", "0"]) as running:
        yield running


@pytest.fixture
def nginx(service, tmp_path):
    cache = start_nginx(tmp_path / "nginx", service.url)
    yield cache
    cache.stop()


def _served_image_bytes(service) -> float:
    metrics = requests.get(f"{service.url}/metrics", timeout=10).text
    found = re.search(r'^metalstream_served_bytes_total\{kind="image"\} (\S+)$', metrics, re.MULTILINE)
    return float(found.group(1)) if found else 0.0


def _image_url(base: str, image: Image) -> str:
    return f"{base}/images/{IMAGE}.tar.zst?sha256={image.sha256}"  # as the plan names a mirror's copy


def test_the_second_download_comes_from_the_cache(nginx, service, cached_image):
    _, image = cached_image
    url = _image_url(nginx.url, image)
    before = _served_image_bytes(service)
    first = requests.get(url, timeout=60)
    second = requests.get(url, timeout=60)
    assert (first.status_code, first.headers["X-Cache-Status"]) == (200, "MISS")
    assert (second.status_code, second.headers["X-Cache-Status"]) == (200, "HIT")
    assert first.content == second.content == image.data
    assert second.headers["ETag"] == f'"{image.sha256}"'  # the service's validator passes through
    assert _served_image_bytes(service) - before == image.size  # the service sent the image once


def test_a_range_request_through_the_cache_gets_exactly_its_bytes(nginx, service, cached_image):
    _, image = cached_image
    url = _image_url(nginx.url, image)
    start = 3 * SLICE + 12345
    before = _served_image_bytes(service)
    cold = requests.get(url, headers={"Range": f"bytes={start}-"}, timeout=60)
    assert cold.status_code == 206
    assert cold.headers["Content-Range"] == f"bytes {start}-{image.size - 1}/{image.size}"
    assert cold.content == image.data[start:]
    # Only the slices holding the range were fetched, not the image from byte 0.
    assert _served_image_bytes(service) - before == image.size - 3 * SLICE
    warm = requests.get(url, headers={"Range": f"bytes={start}-"}, timeout=60)
    assert (warm.status_code, warm.headers["X-Cache-Status"]) == (206, "HIT") and warm.content == image.data[start:]
    assert _served_image_bytes(service) - before == image.size - 3 * SLICE
    # With If-Range the slice module starts at the first slice (it may have to answer with the whole image).
    resumed = requests.get(url, headers={"Range": f"bytes={start}-", "If-Range": cold.headers["ETag"]}, timeout=60)
    assert resumed.status_code == 206 and resumed.content == image.data[start:]
    assert _served_image_bytes(service) - before == image.size - 2 * SLICE
    stale = requests.get(url, headers={"Range": f"bytes={start}-", "If-Range": '"another-image"'}, timeout=60)
    assert stale.status_code == 200 and stale.content == image.data  # If-Range is judged by nginx, as by the service
    assert _served_image_bytes(service) - before == image.size  # every slice once, none twice


def test_the_agent_streams_through_the_cache_and_resumes_at_the_service(service, cached_image, tmp_path):
    require_root()
    _, image = cached_image
    # Slowed down so it can be stopped mid-transfer (test only): the cache host goes away at about 1 MiB.
    cache = start_nginx(tmp_path / "nginx", service.url, extra="limit_rate 2m;")
    urls = [_image_url(cache.url, image), f"{service.url}/images/{IMAGE}.tar.zst"]
    dest = tmp_path / "dest"
    dest.mkdir()

    def stop_the_cache(done: int, total: int | None) -> None:
        if done >= SLICE and cache.process.poll() is None:
            cache.stop()

    try:
        result = stream_image(urls, dest, sha256=image.sha256, size=image.size, progress=stop_the_cache,
                              retry=RetryPolicy(attempts=3, backoff=0.05, deadline=120, read_timeout=10))
    finally:
        cache.stop()
    assert result.sha256 == image.sha256 and (dest / "blob").stat().st_size == 5 << 20
    assert result.failovers == 1
    spans = re.findall(r"\(bytes (\d+)-(\d+)\)", result.origin)
    cut = int(spans[1][0])
    assert result.origin.startswith(urls[0]) and f" + {urls[1]} (bytes {cut}-" in result.origin
    assert SLICE <= cut < image.size  # resumed at the service midway, not from byte 0


def test_the_documented_recipe_is_the_tested_one():
    doc = (REPO / "docs/service.md").read_text()
    section = doc.split("## Rack-local caches and mirrors", 1)[1].split("\n## ", 1)[0]
    for directive in [*RECIPE, CACHE_ZONE, "location /images/ {", "slice 8m;"]:
        assert directive in section, directive
