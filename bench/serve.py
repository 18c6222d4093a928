"""Serving the image: N concurrent full downloads from `metalstream serve` (gunicorn, its defaults) versus nginx
serving the same file on loopback. The clients are curl processes, the same for both servers."""
from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from lab.service_proc import ServiceProcess, free_port
from metalstream import proc
from metalstream.errors import OperationFailed

# `user root`: the workers must read the image wherever it is (pytest's and the build's directories are 0700).
NGINX_CONF = """daemon off;
user root;
worker_processes auto;
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 1024; }}
http {{
    access_log off;
    sendfile on;
    tcp_nopush on;
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
    types {{ application/zstd zst; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}
}}
"""


@contextmanager
def metalstream_server(manifest: Path, work: Path) -> Iterator[str]:
    """`metalstream serve` with the image registered; yields the image's URL."""
    data_dir = work / "serve-data"
    proc.run(["rm", "-rf", data_dir])
    proc.run([sys.executable, "-m", "metalstream", "image", "add", "--data-dir", data_dir, manifest], timeout=600)
    name = manifest.stem
    with ServiceProcess(data_dir) as service:
        yield f"{service.url}/images/{name}.tar.zst"


@contextmanager
def nginx_server(file: Path, work: Path) -> Iterator[str]:
    """nginx (its Debian build, a config of our own, foreground) serving FILE's directory; yields FILE's URL."""
    prefix = work / "nginx"
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    port = free_port()
    conf = prefix / "nginx.conf"
    file = file.resolve()
    conf.write_text(NGINX_CONF.format(prefix=prefix.resolve(), port=port, root=file.parent))
    with open(prefix / "stderr.log", "ab") as log:
        server = proc.spawn(["nginx", "-p", prefix, "-c", conf], stdout=log, stderr=log)
    url = f"http://127.0.0.1:{port}/{file.name}"
    try:
        _wait_ready(url, server, prefix / "error.log")
        yield url
    finally:
        proc.terminate(server)


def _wait_ready(url: str, server: subprocess.Popen, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    status = "no answer"
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise OperationFailed(f"nginx exited with status {server.returncode}: "
                                  f"{log.read_text(errors='replace') if log.exists() else ''}")
        try:
            status = requests.head(url, timeout=2).status_code
            if status == 200:
                return
        except requests.ConnectionError:
            pass
        time.sleep(0.2)
    raise OperationFailed(f"nginx did not serve {url} within {timeout:.0f} s (last answer: {status}); see {log}")


def download_round(url: str, clients: int, expected_size: int, total_files: int = 16) -> float:
    """CLIENTS curl processes start at once; together they fetch the whole file TOTAL_FILES times (each one
    TOTAL_FILES / CLIENTS times in a row, on one connection), so every round moves the same bytes and lasts
    long enough to measure. Returns the aggregate throughput in MiB/s. Every transfer must be complete."""
    repeat = max(1, -(-total_files // clients))
    argv = ["curl", "--silent", "--show-error", "--fail", "--write-out", "%{size_download}\n"]
    for _ in range(repeat):
        argv += ["--output", "/dev/null", url]
    started = time.monotonic()
    children = [proc.spawn(argv, stdout=subprocess.PIPE) for _ in range(clients)]
    sizes: list[int] = []
    try:
        for child in children:
            out, err = child.communicate(timeout=1800)
            if child.returncode != 0:
                raise OperationFailed(f"curl {url} failed with status {child.returncode}: {err.decode(errors='replace')}")
            sizes += [int(line) for line in out.decode().split()]
    finally:
        for child in children:
            proc.terminate(child)
    seconds = time.monotonic() - started
    if len(sizes) != clients * repeat or any(size != expected_size for size in sizes):
        raise OperationFailed(f"{url}: transfers of {sizes} bytes, expected {clients * repeat} of {expected_size}")
    return sum(sizes) / 2**20 / seconds
