"""Run `metalstream serve` as a child process for the demo and the end-to-end tests, and always stop it."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import requests

from deployer.tls import untrusted_certificate
from metalstream import proc
from metalstream.errors import OperationFailed

from .netns import netns_exec
from .tls import KeyPair


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class ServiceProcess:
    """`metalstream serve` on a loopback port; guests reach it as 10.0.2.2:PORT under qemu user networking.

    `public_url` defaults to that guest URL; `options` are further `metalstream serve` options
    (e.g. ["--tftp", "6969", "--sweep-interval", "1"]). With `tls` (a lab.tls.KeyPair) it serves HTTPS on
    PORT and boot files over plain HTTP on `boot_port`; clients verify it with `ca` (`verify`).
    """

    def __init__(self, data_dir: Path, *, port: int | None = None, installer: Path | None = None,
                 agent_timeout: float = 600, activation_timeout: float = 900, workers: int = 2,
                 public_url: str | None = None, options: list[str] = (), tls: KeyPair | None = None,
                 ca: Path | None = None, boot_port: int | None = None, netns: str | None = None,
                 bind_host: str = "127.0.0.1", reach_host: str | None = None):
        self.data_dir = data_dir
        self.port = port or free_port()
        self.installer = installer
        self.agent_timeout = agent_timeout
        self.activation_timeout = activation_timeout
        self.workers = workers
        self.public_url = public_url
        self.options = list(options)
        self.tls = tls
        self.ca = ca
        self.boot_port = (boot_port or free_port()) if tls else None
        self.netns = netns  # run inside this network namespace (lab.netns), listening on `bind_host`
        self.bind_host = bind_host
        self.reach_host = reach_host or bind_host  # where this host's clients find it
        self.log_path = data_dir / "serve.log"
        self.process: subprocess.Popen | None = None

    @property
    def scheme(self) -> str:
        return "https" if self.tls else "http"

    @property
    def url(self) -> str:
        return f"{self.scheme}://{self.reach_host}:{self.port}"

    @property
    def guest_url(self) -> str:
        return f"{self.scheme}://10.0.2.2:{self.port}"

    @property
    def boot_url(self) -> str:
        """Where firmware on this host fetches boot files: the plain boot listener with TLS."""
        return f"http://127.0.0.1:{self.boot_port}" if self.tls else self.url

    @property
    def guest_boot_url(self) -> str:
        return f"http://10.0.2.2:{self.boot_port}" if self.tls else self.guest_url

    @property
    def verify(self) -> str | bool:
        """requests' `verify=` for this service: its CA, else the default trust store."""
        return str(self.ca) if self.ca else True

    def _argv(self) -> list[str]:
        argv = [*(netns_exec(self.netns) if self.netns else []),
                sys.executable, "-m", "metalstream", "serve", "--data-dir", str(self.data_dir),
                "--bind", f"{self.bind_host}:{self.port}", "--public-url", self.public_url or self.guest_url,
                "--workers", str(self.workers), "--agent-timeout", str(self.agent_timeout),
                "--activation-timeout", str(self.activation_timeout), *self.options]
        if self.installer:
            argv += ["--installer", str(self.installer)]
        if self.tls:
            argv += ["--tls-cert", str(self.tls.cert), "--tls-key", str(self.tls.key),
                     "--boot-bind", f"127.0.0.1:{self.boot_port}"]
        return argv

    def _answers(self) -> bool:
        try:
            return all(requests.get(f"{base}/boot.ipxe", timeout=2, verify=self.verify).status_code == 200
                       for base in dict.fromkeys([self.url, self.boot_url]))
        except requests.ConnectionError as exc:
            if untrusted_certificate(exc) is not None:
                raise OperationFailed(f"metalstream serve answers, but its certificate does not verify: {exc}") from exc
            return False
        except requests.Timeout:  # listening, but the workers are still starting (a loaded machine)
            return False

    def start(self, *, timeout: float = 60) -> "ServiceProcess":
        self.data_dir.mkdir(parents=True, exist_ok=True)
        log = open(self.log_path, "ab")
        try:
            self.process = proc.spawn(self._argv(), stdout=log, stderr=log)
        finally:
            log.close()
        try:
            self._wait_until_it_answers(timeout)
        except BaseException:  # never leave a serve behind that its caller will not stop
            self.stop()
            raise
        return self

    def _wait_until_it_answers(self, timeout: float) -> None:
        deadline = time.monotonic() + timeout
        while time.monotonic() < deadline:
            if self.process.poll() is not None:
                raise OperationFailed(f"metalstream serve exited with status {self.process.returncode}: "
                                      f"{self.log_tail()}")
            if self._answers():
                return
            time.sleep(0.3)
        raise OperationFailed(f"metalstream serve did not answer within {timeout:.0f} s: {self.log_tail()}")

    def pids(self) -> list[int]:
        """The gunicorn master and its direct children (workers, the TFTP server)."""
        if self.process is None:
            return []
        pids = [self.process.pid]
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            pids += [int(p) for p in (task / "children").read_text().split()]
        return pids

    def log_tail(self, lines: int = 15) -> str:
        try:
            return "\n".join(self.log_path.read_text(errors="replace").splitlines()[-lines:])
        except FileNotFoundError:
            return "(no log)"

    def stop(self, *, grace: float = 10) -> None:
        if self.process is None:
            return
        proc.terminate(self.process, grace=grace)
        self.process = None

    def __enter__(self) -> "ServiceProcess":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()
