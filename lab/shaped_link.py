"""A shaped network link for benchmarks: two network namespaces (a server and a client) joined by a veth
pair whose server end is limited by `tc` (a token bucket filter) to a chosen rate, with nginx serving one
directory from the server namespace.

Both addresses (10.233.INDEX.1 and .2) exist only inside the namespaces this module creates; no address is
added to this host's own namespace. `ShapedLink.close()` stops nginx and deletes both namespaces, and with
them the veth and its qdisc. A name already present belongs to another run and is refused, never deleted.

`LinkPlan` is pure (names, addresses and the `ip`/`tc` commands); `ShapedLink` runs them.
"""
from __future__ import annotations

import json
import os
import shutil
import time
from dataclasses import dataclass
from pathlib import Path

from metalstream import proc
from metalstream.errors import BadInput, OperationFailed

from .nginx import MAIN_CONF

PORT = 8080
NGINX_HTTP = """    sendfile on;
    tcp_nopush on;
    server {{
        listen {address}:{port};
        root {root};
    }}"""


@dataclass(frozen=True)
class LinkPlan:
    """Namespaces `mslk<tag>-<index>s` (server) and `...c` (client); the link is 10.233.INDEX.0/30, the server
    at .1 and the client at .2. `rate_mbit` None leaves the link unshaped."""

    tag: str
    index: int
    rate_mbit: int | None = None

    def __post_init__(self) -> None:
        if not 0 <= self.index <= 255:
            raise BadInput("must be 0-255", location="index")
        if not (self.tag.isalnum() and len(self.tag) <= 6):
            raise BadInput("must be 1-6 letters or digits", location="tag")
        if self.rate_mbit is not None and self.rate_mbit <= 0:
            raise BadInput("must be positive", location="rate_mbit")

    @property
    def server_ns(self) -> str:
        return f"mslk{self.tag}-{self.index}s"

    @property
    def client_ns(self) -> str:
        return f"mslk{self.tag}-{self.index}c"

    @property
    def server(self) -> str:
        return f"10.233.{self.index}.1"

    @property
    def client(self) -> str:
        return f"10.233.{self.index}.2"

    veth_server = "mslks"
    veth_client = "mslkc"

    @property
    def burst_bytes(self) -> int:
        """4 ms worth of the rate (the kernel's timer granularity at HZ=250), at least four 64 KiB GSO packets."""
        return max(self.rate_mbit * 1_000_000 // 8 // 250, 256 << 10) if self.rate_mbit else 0

    def setup_commands(self) -> list[list[str]]:
        s, c = ["ip", "-n", self.server_ns], ["ip", "-n", self.client_ns]
        commands = [
            ["ip", "netns", "add", self.server_ns],
            ["ip", "netns", "add", self.client_ns],
            [*s, "link", "set", "lo", "up"],
            [*c, "link", "set", "lo", "up"],
            [*s, "link", "add", self.veth_server, "type", "veth", "peer", "name", self.veth_client,
             "netns", self.client_ns],
            [*s, "addr", "add", f"{self.server}/30", "dev", self.veth_server],
            [*c, "addr", "add", f"{self.client}/30", "dev", self.veth_client],
            [*s, "link", "set", self.veth_server, "up"],
            [*c, "link", "set", self.veth_client, "up"],
        ]
        if self.rate_mbit:  # the download direction: what the server sends
            commands.append(["tc", "-n", self.server_ns, "qdisc", "replace", "dev", self.veth_server, "root", "tbf",
                             "rate", f"{self.rate_mbit}mbit", "burst", str(self.burst_bytes), "latency", "50ms"])
        return commands

    def teardown_commands(self) -> list[list[str]]:
        return [["ip", "netns", "del", self.server_ns], ["ip", "netns", "del", self.client_ns]]

    def in_client(self, argv: list[str]) -> list[str]:
        """argv run in the client's network namespace only (mounts and loop devices stay this host's)."""
        return ["nsenter", f"--net=/run/netns/{self.client_ns}", "--", *argv]

    def in_server(self, argv: list[str]) -> list[str]:
        return ["nsenter", f"--net=/run/netns/{self.server_ns}", "--", *argv]

    def url(self, name: str) -> str:
        return f"http://{self.server}:{PORT}/{name}"


def free_plan(rate_mbit: int | None, first: int = 1, last: int = 250) -> LinkPlan:
    """A plan whose namespaces are not in use on this host."""
    tag = str(os.getpid() % 100000)
    for index in range(first, last + 1):
        plan = LinkPlan(tag, index, rate_mbit)
        if not any(Path(f"/run/netns/{name}").exists() for name in (plan.server_ns, plan.client_ns)):
            return plan
    raise OperationFailed(f"no free shaped-link index between {first} and {last}")


class ShapedLink:
    """A context manager: the link exists and nginx serves `root` from the server side inside it."""

    def __init__(self, plan: LinkPlan, root: Path, work_dir: Path):
        self.plan = plan
        self.root = root.resolve()
        self.work_dir = work_dir
        self.nginx = None
        self.created: list[str] = []

    def open(self) -> "ShapedLink":
        for name in (self.plan.server_ns, self.plan.client_ns):
            if Path(f"/run/netns/{name}").exists():
                raise OperationFailed(f"network namespace {name} already exists (another run's): not touching it")
        try:
            for argv in self.plan.setup_commands():
                proc.run(argv)
                if argv[:3] == ["ip", "netns", "add"]:
                    self.created.append(argv[3])
            self._start_nginx()
        except BaseException:
            self.close()
            raise
        return self

    @property
    def prefix(self) -> Path:
        return self.work_dir / f"nginx-{self.plan.server_ns}"

    def _start_nginx(self) -> None:
        prefix = self.prefix
        (prefix / "tmp").mkdir(parents=True, exist_ok=True)
        conf = prefix / "nginx.conf"
        http = NGINX_HTTP.format(address=self.plan.server, port=PORT, root=self.root)
        conf.write_text(MAIN_CONF.format(prefix=prefix.resolve(), http=http, main="user root;\nworker_processes auto;",
                                         access_log="off"))
        with open(prefix / "stderr.log", "ab") as log:
            self.nginx = proc.spawn(self.plan.in_server(["nginx", "-p", str(prefix.resolve()), "-c",
                                                         str(conf.resolve())]), stdout=log, stderr=log)
        deadline = time.monotonic() + 30
        while time.monotonic() < deadline:
            if self.nginx.poll() is not None:
                raise OperationFailed(f"nginx in {self.plan.server_ns} exited with status {self.nginx.returncode}: "
                                      f"{(prefix / 'error.log').read_text(errors='replace')[-2000:]}")
            probe = proc.run(self.plan.in_client(["curl", "-s", "-o", "/dev/null", "--max-time", "2",
                                                  self.plan.url("")]), check=False, timeout=10)
            if probe.returncode == 0:
                return
            time.sleep(0.1)
        raise OperationFailed(f"nginx in {self.plan.server_ns} did not answer {self.plan.url('')} within 30 s")

    def received_bytes(self) -> int:
        """Bytes the client's end of the link has received so far (headers included)."""
        argv = ["ip", "-n", self.plan.client_ns, "-s", "-j", "link", "show", "dev", self.plan.veth_client]
        out = proc.run(argv).stdout
        return int(json.loads(out)[0]["stats64"]["rx"]["bytes"])

    def download_rate(self, name: str) -> float:
        """MiB/s of one plain curl download of NAME through the link (to /dev/null)."""
        out = proc.run(self.plan.in_client(["curl", "-sS", "--fail", "-o", "/dev/null", "--write-out",
                                            "%{size_download} %{time_total}", self.plan.url(name)]),
                       timeout=600).stdout.split()
        size, seconds = int(out[0]), float(out[1])
        return size / 2**20 / seconds if seconds else 0.0

    def close(self) -> None:
        if self.nginx is not None:
            proc.terminate(self.nginx)
            self.nginx = None
            shutil.rmtree(self.prefix, ignore_errors=True)
        for argv in self.plan.teardown_commands():
            if argv[3] in self.created:
                proc.run(argv, check=False)
                self.created.remove(argv[3])

    def __enter__(self) -> "ShapedLink":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
