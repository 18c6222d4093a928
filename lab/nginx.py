"""nginx in front of metalstream for tests and benchmarks: Debian's build, a config of our own, in the
foreground as a child process, everything (pid, logs, temp and cache files) under one prefix directory.
"""
from __future__ import annotations

import time
from contextlib import contextmanager
from pathlib import Path
from typing import Iterator

import requests

from metalstream import proc
from metalstream.errors import OperationFailed

from .service_proc import free_port

MAIN_CONF = """daemon off;
{main}
pid {prefix}/nginx.pid;
error_log {prefix}/error.log warn;
events {{ worker_connections 4096; }}
http {{
    access_log {access_log};
    client_body_temp_path {prefix}/tmp;
    proxy_temp_path {prefix}/tmp;
    fastcgi_temp_path {prefix}/tmp;
    uwsgi_temp_path {prefix}/tmp;
    scgi_temp_path {prefix}/tmp;
{http}
}}
"""


def load_balancer(upstreams: list[str], port: int) -> str:
    """An http block: round robin over `upstreams` (host:port); a dead one is skipped, and an idempotent
    request it failed is retried on the next (POSTs are not: the client retries those)."""
    servers = "\n".join(f"        server {upstream} max_fails=1 fail_timeout=2s;" for upstream in upstreams)
    return f"""    upstream metalstream {{
{servers}
        keepalive 64;
    }}
    server {{
        listen 127.0.0.1:{port};
        client_max_body_size 16m;
        location / {{
            proxy_pass http://metalstream;
            proxy_http_version 1.1;
            proxy_set_header Connection "";
            proxy_set_header Host $http_host;
            proxy_set_header X-Forwarded-For $remote_addr;
            proxy_next_upstream error timeout http_502 http_503;
            proxy_connect_timeout 2s;
            proxy_read_timeout 60s;
        }}
    }}"""


@contextmanager
def nginx(prefix: Path, http_block: str, *, probe_path: str = "/", main: str = "worker_processes 2;",
          access_log: bool = True) -> Iterator[None]:
    """Run nginx with `http_block` (and `main`-context directives) until the block ends; waits until
    `probe_path` answers on the first listen port found in the block (any HTTP answer counts)."""
    (prefix / "tmp").mkdir(parents=True, exist_ok=True)
    conf = prefix / "nginx.conf"
    conf.write_text(MAIN_CONF.format(prefix=prefix.resolve(), http=http_block, main=main,
                                     access_log=f"{prefix.resolve()}/access.log" if access_log else "off"))
    port = int(http_block.split("listen 127.0.0.1:", 1)[1].split(";", 1)[0])
    with open(prefix / "stderr.log", "ab") as log:
        server = proc.spawn(["nginx", "-p", prefix.resolve(), "-c", conf.resolve()], stdout=log, stderr=log)
    try:
        _wait_ready(f"http://127.0.0.1:{port}{probe_path}", server, prefix / "error.log")
        yield
    finally:
        proc.terminate(server)


def _wait_ready(url: str, server, log: Path, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if server.poll() is not None:
            raise OperationFailed(f"nginx exited with status {server.returncode}: "
                                  f"{log.read_text(errors='replace') if log.exists() else ''}")
        try:
            requests.get(url, timeout=2)
            return
        except requests.RequestException:
            time.sleep(0.1)
    raise OperationFailed(f"nginx did not answer {url} within {timeout:g} s")


__all__ = ["free_port", "load_balancer", "nginx"]
