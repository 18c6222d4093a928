"""Serving the image: N concurrent full downloads from `metalstream serve` (gunicorn, its defaults) versus nginx
serving the same file on loopback. The clients are curl processes, the same for both servers."""
from __future__ import annotations

import subprocess
import sys
import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

from lab.nginx import nginx
from lab.service_proc import ServiceProcess, free_port
from metalstream import proc
from metalstream.errors import OperationFailed

# The workers run as root: they must read the image wherever it is (pytest's and the build's
# directories are 0700).
NGINX_MAIN = "user root;\nworker_processes auto;"
NGINX_HTTP = """    sendfile on;
    tcp_nopush on;
    types {{ application/zstd zst; }}
    server {{
        listen 127.0.0.1:{port};
        root {root};
    }}"""


@contextmanager
def metalstream_server(manifest: Path, work: Path) -> Iterator[str]:
    """`metalstream serve` with the image registered; yields the image's URL."""
    data_dir = work / "serve-data"
    proc.run(["rm", "-rf", data_dir])
    proc.run([sys.executable, "-m", "metalstream", "image", "add", "--create", "--data-dir", data_dir, manifest], timeout=600)
    name = manifest.stem
    with ServiceProcess(data_dir) as service:
        yield f"{service.url}/images/{name}.tar.zst"


@contextmanager
def nginx_server(file: Path, work: Path) -> Iterator[str]:
    """nginx (its Debian build, a config of our own, foreground) serving FILE's directory; yields FILE's URL."""
    port = free_port()
    file = file.resolve()
    with nginx(work / "nginx", NGINX_HTTP.format(port=port, root=file.parent), probe_path=f"/{file.name}",
               main=NGINX_MAIN, access_log=False):
        yield f"http://127.0.0.1:{port}/{file.name}"


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
