"""BMC emulators in front of lab libvirt domains (lab.libvirt): Redfish with sushy-tools' sushy-emulator and
IPMI with virtualbmc's vbmcd, each a managed child process on this host's loopback.

Both run from .venv-bmc (made by .ci/setup with Debian's python3 and its site packages, which hold
python3-libvirt). Each is a context manager: it waits (bounded) until the emulator answers, logs to a file
in its work directory and stops its process by PID on exit. Credentials never go on a command line: sushy-tools
reads a bcrypt htpasswd file, vbmcd a per-domain config file (mode 0600), ipmitool the IPMI_PASSWORD variable.
"""
from __future__ import annotations

import os
import re
import subprocess
import time
from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path

import requests

from metalstream import proc
from metalstream.errors import OperationFailed

from .libvirt import URI
from .service_proc import free_port

REPO = Path(__file__).resolve().parents[1]
BMC_VENV = REPO / ".venv-bmc"


def bmc_tool(name: str) -> Path:
    tool = BMC_VENV / "bin" / name
    if not tool.exists():
        raise OperationFailed(f"{tool} is missing: run `bash .ci/setup`, which creates .venv-bmc with "
                              f"sushy-tools and virtualbmc")
    return tool


def _private_file(path: Path, text: str) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    fd = os.open(path, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as handle:
        handle.write(text)


def _log_tail(path: Path, lines: int = 20) -> str:
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except FileNotFoundError:
        return "(no log)"


@dataclass
class BmcAccess:
    """What a machine record's `bmc` needs (POST /api/v1/machines), and this host's view of it."""

    driver: str  # redfish | ipmi
    address: str  # redfish: http://127.0.0.1:PORT; ipmi: 127.0.0.1:PORT
    username: str
    password: str
    system_id: str | None = None  # redfish: the Systems/<id> member (the domain's UUID)

    def machine_bmc(self) -> dict:
        bmc = {"driver": self.driver, "address": self.address, "username": self.username, "password": self.password}
        if self.driver == "redfish":
            bmc.update(verify_tls=False, system_id=self.system_id)
        return bmc


class _Emulator(ABC):
    """A child process with a log file, stopped by PID; each emulator says how it knows it answers."""

    def __init__(self, work_dir: Path, *, timeout: float):
        self.work_dir = work_dir
        self.timeout = timeout
        self.process: subprocess.Popen | None = None

    @property
    def log_path(self) -> Path:
        return self.work_dir / f"{type(self).__name__.lower()}.log"

    def _spawn(self, argv: list, env: dict | None = None) -> None:
        self.work_dir.mkdir(parents=True, exist_ok=True)
        with open(self.log_path, "ab") as log:
            self.process = proc.spawn(argv, stdout=log, stderr=log, env=env, die_with_parent=True)

    def _wait_ready(self, what: str) -> None:
        deadline = time.monotonic() + self.timeout
        while not self.ready():
            if self.process.poll() is not None:
                raise OperationFailed(f"{what} exited with status {self.process.returncode}: {self.log_tail()}")
            if time.monotonic() > deadline:
                self.stop()
                raise OperationFailed(f"{what} did not answer within {self.timeout:.0f} s: {self.log_tail()}")
            time.sleep(0.3)

    @abstractmethod
    def ready(self) -> bool:
        """Whether the emulator answers its protocol yet."""

    @property
    def pid(self) -> int | None:
        return self.process.pid if self.process else None

    def running(self) -> bool:
        return self.process is not None and self.process.poll() is None

    def log_tail(self) -> str:
        return _log_tail(self.log_path)

    def stop(self) -> None:
        if self.process is not None:
            proc.terminate(self.process, grace=10)
            self.process = None

    def __enter__(self):
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


class SushyEmulator(_Emulator):
    """sushy-emulator (Redfish) on 127.0.0.1:PORT, libvirt driver, HTTP basic auth from an htpasswd file;
    only `domains` are exposed (another run's domains stay invisible)."""

    def __init__(self, work_dir: Path, domains: list[str], *, username: str = "admin", password: str,
                 port: int | None = None, timeout: float = 60):
        super().__init__(work_dir, timeout=timeout)
        self.domains = list(domains)
        self.username = username
        self.password = password
        self.port = port or free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}"

    def _write_config(self) -> Path:
        htpasswd = self.work_dir / "htpasswd"
        hashed = proc.run([bmc_tool("python"), "-c",
                           "import bcrypt, sys; sys.stdout.write(bcrypt.hashpw(sys.stdin.read().encode(), "
                           "bcrypt.gensalt(rounds=4)).decode())"], input=self.password, timeout=60).stdout
        _private_file(htpasswd, f"{self.username}:{hashed}\n")
        config = self.work_dir / "emulator.conf"
        _private_file(config, "\n".join([
            "SUSHY_EMULATOR_LISTEN_IP = '127.0.0.1'",
            f"SUSHY_EMULATOR_LISTEN_PORT = {self.port}",
            f"SUSHY_EMULATOR_LIBVIRT_URI = {URI!r}",
            f"SUSHY_EMULATOR_AUTH_FILE = {str(htpasswd)!r}",
            # Matched against the Systems/<id> of each request: a domain's name and its UUID both name it.
            f"SUSHY_EMULATOR_ALLOWED_INSTANCES = {[i for d in self.domains for i in (d, domain_uuid(d))]!r}",
            "SUSHY_EMULATOR_SSL_CERT = None",
            "SUSHY_EMULATOR_SSL_KEY = None",
            "",
        ]))
        return config

    def start(self) -> "SushyEmulator":
        config = self._write_config()
        self._spawn([bmc_tool("sushy-emulator"), "--config", config])
        self._wait_ready("sushy-emulator")
        return self

    def ready(self) -> bool:
        try:
            return requests.get(f"{self.url}/redfish/v1/", timeout=2).status_code == 200
        except requests.ConnectionError:
            return False

    def get(self, path: str, *, auth: tuple[str, str] | None = None) -> requests.Response:
        return requests.get(self.url + path, auth=auth or (self.username, self.password), timeout=30)

    def system_path(self, system_id: str) -> str:
        return f"/redfish/v1/Systems/{system_id}"

    def power_requests(self) -> list[str]:
        """The emulator's access-log lines of power actions (ComputerSystem.Reset), whoever sent them."""
        return [line for line in self.log_path.read_text(errors="replace").splitlines()
                if "ComputerSystem.Reset" in line and '"POST ' in line]

    def boot_requests(self) -> list[str]:
        """Access-log lines of PATCHes of a system (how Redfish sets the boot source)."""
        return [line for line in self.log_path.read_text(errors="replace").splitlines()
                if '"PATCH /redfish/v1/Systems/' in line]

    def access(self, system_id: str) -> BmcAccess:
        return BmcAccess("redfish", self.url, self.username, self.password, system_id=system_id)


class VirtualBmc(_Emulator):
    """vbmcd with its own config directory and ZeroMQ control port, serving IPMI (lanplus) for `domain` on
    127.0.0.1:PORT."""

    def __init__(self, work_dir: Path, domain: str, *, username: str = "admin", password: str,
                 port: int | None = None, timeout: float = 60):
        super().__init__(work_dir, timeout=timeout)
        self.domain = domain
        self.username = username
        self.password = password
        self.port = port or _free_udp_port()
        self.control_port = free_port()

    @property
    def config_file(self) -> Path:
        return self.work_dir / "virtualbmc.conf"

    @property
    def env(self) -> dict:
        return {"VIRTUALBMC_CONFIG": str(self.config_file)}

    @property
    def address(self) -> str:
        return f"127.0.0.1:{self.port}"

    def _write_config(self) -> None:
        domains = self.work_dir / "domains"
        (domains / self.domain).mkdir(parents=True, exist_ok=True)
        _private_file(self.config_file, "\n".join([
            "[default]", f"config_dir = {domains}", f"pid_file = {self.work_dir / 'vbmcd.pid'}",
            f"server_port = {self.control_port}", "show_passwords = false",
            "[log]", f"logfile = {self.work_dir / 'vbmcd-internal.log'}", "debug = true", ""]))
        # What `vbmc add` writes, written here so the password never is a command-line argument.
        _private_file(domains / self.domain / "config", "\n".join([
            "[VirtualBMC]", f"username = {self.username}", f"password = {self.password}", "address = 127.0.0.1",
            f"port = {self.port}", f"domain_name = {self.domain}", f"libvirt_uri = {URI}", "active = True", ""]))

    def start(self) -> "VirtualBmc":
        self._write_config()
        self._spawn([bmc_tool("vbmcd"), "--foreground"], env=self.env)
        self._wait_ready("vbmcd")
        return self

    def vbmc(self, *args: str) -> str:
        return proc.run([bmc_tool("vbmc"), *args], env=self.env, timeout=60).stdout

    def ready(self) -> bool:
        result = proc.run([bmc_tool("vbmc"), "show", self.domain, "-f", "value", "-c", "Property", "-c", "Value"],
                          env=self.env, timeout=30, check=False)
        if result.returncode != 0 or "status running" not in result.stdout:
            return False
        return self.ipmitool("power", "status", check=False).returncode == 0

    def ipmitool(self, *args: str, password: str | None = None, check: bool = True,
                 answer_within: float = 2) -> proc.Result:
        """ipmitool -I lanplus against this BMC, one try (the password goes through IPMI_PASSWORD).
        `answer_within`: seconds ipmitool waits for the answer. vbmcd answers a power change only once libvirt
        has made it, and a destroy takes 1.6-2 s here."""
        return proc.run(["ipmitool", "-I", "lanplus", "-H", "127.0.0.1", "-p", str(self.port), "-U", self.username,
                         "-E", "-R", "1", "-N", str(round(answer_within)), *args],
                        env={"IPMI_PASSWORD": self.password if password is None else password},
                        timeout=60, check=check)

    def power_requests(self) -> list[str]:
        """vbmcd's log lines of power actions on the domain (on, off, reset), whoever sent them."""
        return self._log_lines(r"Power (on|off|reset) called|Soft power off called")

    def boot_requests(self) -> list[str]:
        """vbmcd's log lines of boot device changes (they name the device)."""
        return self._log_lines(r"Set boot device called")

    def _log_lines(self, pattern: str) -> list[str]:
        try:
            text = (self.work_dir / "vbmcd-internal.log").read_text(errors="replace")
        except FileNotFoundError:
            return []
        return [line for line in text.splitlines() if re.search(pattern, line)]

    def access(self) -> BmcAccess:
        return BmcAccess("ipmi", self.address, self.username, self.password)


def _free_udp_port() -> int:
    import socket

    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def domain_uuid(name: str) -> str:
    from .libvirt import virsh

    return virsh("domuuid", name).stdout.strip()


def emulator_for(driver: str, work_dir: Path, domain: str, *, password: str, username: str = "admin",
                 port: int | None = None):
    """The (not yet started) emulator of `driver` (redfish | ipmi) for libvirt domain `domain`; its
    `machine_bmc()` (after start) is what POST /api/v1/machines takes as `bmc`."""
    if driver == "redfish":
        return SushyEmulator(work_dir, [domain], username=username, password=password, port=port)
    if driver == "ipmi":
        return VirtualBmc(work_dir, domain, username=username, password=password, port=port)
    raise OperationFailed(f"no lab BMC emulator for driver {driver!r} (redfish or ipmi)")


def machine_bmc(emulator) -> dict:
    """The `bmc` object of a machine registered behind a running `emulator`."""
    if isinstance(emulator, SushyEmulator):
        return emulator.access(domain_uuid(emulator.domains[0])).machine_bmc()
    return emulator.access().machine_bmc()
