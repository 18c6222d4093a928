"""An isolated provisioning network for lab VMs: a network namespace holding a bridge, one tap per VM and
dnsmasq as the network's DHCP server, plus a veth pair so this host reaches the namespace.

User networking (qemu's slirp) answers TFTP itself and cannot reach a TFTP server of our own, so the paths
that need the service's TFTP (the Secure Boot path: shim and GRUB read everything over TFTP) run here.
Every address is inside the namespace this module creates; `ProvisioningNet.close()` deletes it, and with
it the bridge, the taps and both ends of the veth.

`NetPlan` is pure (names, addresses and the `ip` commands that build it); `ProvisioningNet` runs them.
"""
from __future__ import annotations

import ipaddress
import os
import re
import signal
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

from metalstream import proc
from metalstream.errors import BadInput, OperationFailed

NAME_RE = re.compile(r"^ms[a-z0-9-]{1,12}$")


def netns_exec(name: str) -> list[str]:
    """The argv prefix that runs a command inside network namespace `name`."""
    return ["ip", "netns", "exec", name]
BRIDGE = "msbr0"
VETH_INSIDE = "msvn0"


@dataclass(frozen=True)
class NetPlan:
    """Namespace `name`; the provisioning LAN is 10.231.INDEX.0/24 with the namespace at .1, the host reaches
    the namespace through 10.230.INDEX.0/30 (host .1, namespace .2)."""

    name: str
    index: int

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise BadInput("namespace name must be 'ms' and 1-12 lowercase letters, digits or dashes",
                           location="name")
        if not 0 <= self.index <= 255:
            raise BadInput("must be 0-255", location="index")

    @property
    def lan(self) -> ipaddress.IPv4Network:
        return ipaddress.IPv4Network(f"10.231.{self.index}.0/24")

    @property
    def server(self) -> str:
        """The namespace's address on the provisioning LAN: where VMs find DHCP, TFTP and the service."""
        return str(self.lan.network_address + 1)

    @property
    def inside(self) -> str:
        """The namespace's end of the veth: where this host reaches services running in the namespace."""
        return f"10.230.{self.index}.2"

    @property
    def outside(self) -> str:
        return f"10.230.{self.index}.1"

    @property
    def veth_outside(self) -> str:
        return f"msvh{self.index}"

    def guest_address(self, n: int) -> str:
        """The fixed address dnsmasq gives the n-th VM (0-based)."""
        return str(self.lan.network_address + 50 + n)

    def dhcp_range(self) -> tuple[str, str]:
        return str(self.lan.network_address + 50), str(self.lan.network_address + 99)

    def tap(self, n: int) -> str:
        return f"mstap{n}"

    @property
    def vlan_lan(self) -> ipaddress.IPv4Network:
        """The subnet of a VLAN the namespace joins (`ProvisioningNet.add_vlan`): 10.232.INDEX.0/24, namespace .1."""
        return ipaddress.IPv4Network(f"10.232.{self.index}.0/24")

    def vlan_guest_address(self, n: int) -> str:
        return str(self.vlan_lan.network_address + 50 + n)

    def vlan_commands(self, vid: int) -> tuple[list[list[str]], list[list[str]]]:
        """(before, after) starting the relay of VLAN `vid` (lab.vlan): its trunk tap joins the bridge, its
        access tap gets the namespace's VLAN address once the relay holds both."""
        ns, trunk, access = netns_exec(self.name), f"mstrunk{vid}", f"msvlan{vid}"
        before = [[*ns, "ip", "tuntap", "add", "dev", name, "mode", "tap"] for name in (trunk, access)]
        before += [[*ns, "ip", "link", "set", trunk, "master", BRIDGE], [*ns, "ip", "link", "set", trunk, "up"]]
        after = [[*ns, "ip", "addr", "add", f"{self.vlan_lan.network_address + 1}/24", "dev", access],
                 [*ns, "ip", "link", "set", access, "up"]]
        return before, after

    def setup_commands(self, taps: int) -> list[list[str]]:
        ns = netns_exec(self.name)
        commands = [
            ["ip", "netns", "add", self.name],
            [*ns, "ip", "link", "set", "lo", "up"],
            [*ns, "ip", "link", "add", BRIDGE, "type", "bridge"],
            [*ns, "ip", "addr", "add", f"{self.server}/24", "dev", BRIDGE],
            [*ns, "ip", "link", "set", BRIDGE, "up"],
            ["ip", "link", "add", self.veth_outside, "type", "veth", "peer", "name", VETH_INSIDE,
             "netns", self.name],
            ["ip", "addr", "add", f"{self.outside}/30", "dev", self.veth_outside],
            ["ip", "link", "set", self.veth_outside, "up"],
            [*ns, "ip", "addr", "add", f"{self.inside}/30", "dev", VETH_INSIDE],
            [*ns, "ip", "link", "set", VETH_INSIDE, "up"],
        ]
        for n in range(taps):
            commands += [[*ns, "ip", "tuntap", "add", "dev", self.tap(n), "mode", "tap"],
                         [*ns, "ip", "link", "set", self.tap(n), "master", BRIDGE],
                         [*ns, "ip", "link", "set", self.tap(n), "up"]]
        return commands

    def exec_prefix(self) -> list[str]:
        return netns_exec(self.name)


def free_plan(prefix: str = "ms", first: int = 20, last: int = 250) -> NetPlan:
    """A plan whose namespace name and veth are not in use on this host."""
    for index in range(first, last + 1):
        plan = NetPlan(f"{prefix}{os.getpid() % 10000}-{index}", index)
        if not Path(f"/run/netns/{plan.name}").exists() and not Path(f"/sys/class/net/{plan.veth_outside}").exists():
            return plan
    raise OperationFailed(f"no free lab network index between {first} and {last}")


class ProvisioningNet:
    """A context manager: the namespace exists inside it, with dnsmasq running once `start_dhcp` was called."""

    def __init__(self, plan: NetPlan, work_dir: Path, *, taps: int = 1):
        self.plan = plan
        self.work_dir = work_dir
        self.taps = taps
        self.dnsmasq: subprocess.Popen | None = None
        self.relays: list[subprocess.Popen] = []
        self.created = False

    def open(self) -> "ProvisioningNet":
        """Create the namespace. A name or veth already present belongs to another run (or to one that was
        killed): refused, never deleted, so two runs cannot tear down each other's network."""
        for leftover, what in ((Path(f"/run/netns/{self.plan.name}"), "namespace"),
                               (Path(f"/sys/class/net/{self.plan.veth_outside}"), "veth")):
            if leftover.exists():
                raise OperationFailed(f"{what} {leftover.name} already exists (another run, or one that was killed: "
                                      f"`ip netns del {self.plan.name}; ip link del {self.plan.veth_outside}`)")
        self.work_dir.mkdir(parents=True, exist_ok=True)
        self.created = True
        try:
            for argv in self.plan.setup_commands(self.taps):
                proc.run(argv, timeout=30)
        except BaseException:
            self._delete()
            raise
        return self

    def start_dhcp(self, config_text: str, *, extra_lines: list[str] = ()) -> Path:
        """(Re)start dnsmasq in the namespace with `config_text` (from `metalstream dnsmasq-config`) plus
        `extra_lines`; returns its log file. Waits until it listens on udp/67."""
        self.stop_dhcp()
        config = self.work_dir / "dnsmasq.conf"
        log_file = self.work_dir / "dnsmasq.log"
        config.write_text(config_text.rstrip("\n") + "\n" + "".join(f"{line}\n" for line in extra_lines))
        argv = [*self.plan.exec_prefix(), "dnsmasq", "--keep-in-foreground", f"--conf-file={config}",
                f"--log-facility={log_file}", f"--dhcp-leasefile={self.work_dir / 'dnsmasq.leases'}",
                "--pid-file="]
        stderr_file = self.work_dir / "dnsmasq.stderr"
        with open(stderr_file, "wb") as stderr:
            self.dnsmasq = proc.spawn(argv, stdout=subprocess.DEVNULL, stderr=stderr, die_with_parent=True)
        deadline = time.monotonic() + 15
        while time.monotonic() < deadline:
            if self.dnsmasq.poll() is not None:
                raise OperationFailed(f"dnsmasq exited with status {self.dnsmasq.returncode}: "
                                      f"{stderr_file.read_text(errors='replace')[-2000:]}")
            listening = proc.run([*self.plan.exec_prefix(), "ss", "-H", "-uln", "sport = :67"], timeout=10).stdout
            if listening.strip():
                return log_file
            time.sleep(0.2)
        raise OperationFailed("dnsmasq did not listen on udp/67 within 15 s")

    def add_vlan(self, vid: int) -> str:
        """Join VLAN `vid` on the bridge with address .1 of `plan.vlan_lan` (tags handled in user space by
        lab.vlan: lab hosts' kernels may lack 802.1Q). Returns the namespace's address on the VLAN."""
        before, after = self.plan.vlan_commands(vid)
        for argv in before:
            proc.run(argv, timeout=30)
        argv = [*self.plan.exec_prefix(), sys.executable, "-m", "lab.vlan", f"mstrunk{vid}", f"msvlan{vid}", str(vid)]
        relay = proc.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, die_with_parent=True,
                           cwd=Path(__file__).resolve().parent.parent)
        self.relays.append(relay)
        if relay.stdout.readline().strip() != b"relaying":
            raise OperationFailed(f"the VLAN {vid} relay did not start: {relay.stdout.read()[-2000:]!r}")
        for argv in after:
            proc.run(argv, timeout=30)
        return str(self.plan.vlan_lan.network_address + 1)

    def stop_dhcp(self) -> None:
        if self.dnsmasq is not None:
            proc.terminate(self.dnsmasq, grace=5)
            self.dnsmasq = None

    def close(self) -> None:
        self.stop_dhcp()
        for relay in self.relays:
            proc.terminate(relay, grace=5)
        self.relays = []
        if self.created:
            self._delete()

    def _delete(self) -> None:
        """Kill what still runs in the namespace, then delete it (its links go with it)."""
        name = self.plan.name
        listed = proc.run(["ip", "netns", "pids", name], timeout=30, check=False)
        for pid in listed.stdout.split():
            try:
                os.kill(int(pid), signal.SIGKILL)
            except ProcessLookupError:
                pass
        if Path(f"/run/netns/{name}").exists():
            proc.run(["ip", "netns", "del", name], timeout=30)
        proc.run(["ip", "link", "del", self.plan.veth_outside], timeout=30, check=False)
        self.created = False

    def __enter__(self) -> "ProvisioningNet":
        return self.open()

    def __exit__(self, *exc) -> None:
        self.close()
