"""Lab VMs: a qemu machine with an empty disk that network-boots from the metalstream service.

`VmSpec` + `qemu_argv` are pure (tested by comparing argv); `LabVm` runs qemu through metalstream.proc
and always stops it on exit. qemu's user networking gives the guest the host as 10.0.2.2 and lets
its built-in iPXE fetch `bootfile` over HTTP, so no DHCP/TFTP server is needed.
"""
from __future__ import annotations

import hashlib
import os
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

from metalstream import proc
from metalstream.errors import BadInput, OperationFailed

from .netns import netns_exec

OVMF_CODE = Path("/usr/share/OVMF/OVMF_CODE.fd")
OVMF_VARS = Path("/usr/share/OVMF/OVMF_VARS.fd")
# Secure Boot: OVMF's SMM build (it refuses to run without SMM) and variables with Microsoft's keys enrolled and
# Secure Boot enforced, as servers ship: Debian's shim is signed by Microsoft's UEFI CA.
OVMF_CODE_SECBOOT = Path("/usr/share/OVMF/OVMF_CODE_4M.secboot.fd")
OVMF_VARS_MS = Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd")
FIRMWARES = ("uefi", "bios", "uefi-secureboot")
DEFAULT_LAB_DIR = Path("/var/lib/metalstream/lab")
NAME_RE = re.compile(r"^[a-z0-9][a-z0-9-]{0,30}$")


def mac_for(name: str) -> str:
    """A stable, locally administered MAC for a VM name (qemu's 52:54:00 prefix)."""
    digest = hashlib.sha256(name.encode()).digest()
    return "52:54:00:" + ":".join(f"{b:02x}" for b in digest[:3])


@dataclass
class VmSpec:
    name: str
    firmware: str = "uefi"  # uefi (OVMF) | bios (SeaBIOS) | uefi-secureboot (OVMF, Secure Boot enforced)
    boot_url: str | None = None  # iPXE script URL as the guest sees it, e.g. http://10.0.2.2:8080/boot.ipxe
    disk_size_gib: int = 8
    memory_mib: int = 2048
    cpus: int = 2
    ssh_port: int | None = None  # host loopback port forwarded to the guest's :22
    accel: str = "tcg"  # tcg | kvm: KVM is unreliable on these hosts, so it is opt-in
    lab_dir: Path = DEFAULT_LAB_DIR
    extra_args: list[str] = field(default_factory=list)
    tap: str | None = None  # a tap device (lab.netns) instead of qemu's user networking
    netns: str | None = None  # run qemu inside this network namespace (where `tap` lives)
    boot_first: str = "network"  # network | disk: which device the firmware tries first
    extra_taps: list[str] = field(default_factory=list)  # more NICs, on these taps (netdev ids n1, n2, ...)
    monitor: bool = False  # a qemu monitor on `monitor_socket` (for `LabVm.monitor`: set_link ...)
    extra_disks: list[Path] = field(default_factory=list)  # more raw disks after `disk` (virtio, serials ms-NAME-dN)
    serial_input: bool = False  # the console also on `serial_socket`, so a test can type (`LabVm.type_serial`)

    def __post_init__(self) -> None:
        if not NAME_RE.match(self.name):
            raise BadInput("VM name must be 1-31 lowercase letters, digits or dashes", location="name")
        if self.firmware not in FIRMWARES:
            raise BadInput(f"firmware must be one of {', '.join(FIRMWARES)}, not {self.firmware!r}",
                           location="firmware")
        if self.boot_first not in ("network", "disk"):
            raise BadInput(f"boot_first must be network or disk, not {self.boot_first!r}", location="boot_first")
        if self.extra_taps and not self.tap:
            raise BadInput("extra NICs go on taps: give the first NIC's tap too", location="extra_taps")
        if self.tap and (self.boot_url or self.ssh_port):
            raise BadInput("boot_url and ssh_port belong to user networking, not to a tap", location="tap")
        if self.accel not in ("tcg", "kvm"):
            raise BadInput(f"accel must be tcg or kvm, not {self.accel!r}", location="accel")

    @property
    def mac(self) -> str:
        return mac_for(self.name)

    @property
    def macs(self) -> list[str]:
        """The MAC of each NIC: netdev n0 first, then one per extra tap."""
        return [self.mac, *(mac_for(f"{self.name}-nic{k}") for k in range(1, len(self.extra_taps) + 1))]

    @property
    def monitor_socket(self) -> Path:
        return self.dir / "monitor.sock"

    @property
    def dir(self) -> Path:
        return self.lab_dir / self.name

    @property
    def disk(self) -> Path:
        return self.dir / "disk.img"

    @property
    def vars_file(self) -> Path:
        return self.dir / "OVMF_VARS.fd"

    @property
    def serial_log(self) -> Path:
        return self.dir / "serial.log"

    @property
    def serial_socket(self) -> Path:
        return self.dir / "serial.sock"

    @property
    def pid_file(self) -> Path:
        return self.dir / "qemu.pid"


# The network boot is qemu's iPXE option ROM (like a NIC's own PXE ROM). OVMF's built-in PXE and HTTP boot
# would follow it once iPXE exits to the disk ("no install pending") and wait out DHCP timeouts: 2+ minutes
# under TCG before the disk boots. Turning them off keeps the firmware's order: iPXE, then the disk.
OVMF_NETWORK_OFF = tuple(arg for knob in ("IPv4PXESupport", "IPv6PXESupport", "IPv4Support", "IPv6Support")
                         for arg in ("-fw_cfg", f"name=opt/org.tianocore/{knob},string=no"))


# With Secure Boot the NIC's iPXE option ROM is unsigned and refused, so the firmware's own PXE client boots
# (IPv4 only: the IPv6 attempts would time out before the disk gets its turn).
OVMF_IPV6_OFF = tuple(arg for knob in ("IPv6PXESupport", "IPv6Support")
                      for arg in ("-fw_cfg", f"name=opt/org.tianocore/{knob},string=no"))


def _netdev(spec: VmSpec) -> str:
    if spec.tap:
        return f"tap,id=n0,ifname={spec.tap},script=no,downscript=no"
    netdev = "user,id=n0"
    if spec.boot_url:
        netdev += f",bootfile={spec.boot_url}"
    if spec.ssh_port:
        netdev += f",hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"
    return netdev


def _extra_nics(spec: VmSpec) -> list[str]:
    """Netdev n1, n2, ... on the extra taps; no boot ROM (the first NIC boots)."""
    argv = []
    for k, (tap, mac) in enumerate(zip(spec.extra_taps, spec.macs[1:]), start=1):
        argv += ["-netdev", f"tap,id=n{k},ifname={tap},script=no,downscript=no",
                 "-device", f"virtio-net-pci,netdev=n{k},mac={mac},romfile="]
    return argv


def _serial(spec: VmSpec) -> list[str]:
    if not spec.serial_input:
        return ["-serial", f"file:{spec.serial_log}"]
    return ["-chardev", f"socket,id=console,path={spec.serial_socket},server=on,wait=off,logfile={spec.serial_log}",
            "-serial", "chardev:console"]


def _extra_disks(spec: VmSpec, first_index: int) -> list[str]:
    argv = []
    for k, disk in enumerate(spec.extra_disks, start=1):
        argv += ["-drive", f"file={disk},format=raw,if=none,id=disk{k},cache=unsafe",
                 "-device", f"virtio-blk-pci,drive=disk{k},serial=ms-{spec.name}-d{k},bootindex={first_index + k}"]
    return argv


def qemu_argv(spec: VmSpec) -> list[str]:
    """The qemu command line for a lab VM: network first (bootindex 1), then its disk (bootindex 2), or the
    other way round with `boot_first="disk"`."""
    secure = spec.firmware == "uefi-secureboot"
    nic_index, disk_index = (1, 2) if spec.boot_first == "network" else (2, 1)
    nic = f"virtio-net-pci,netdev=n0,mac={spec.mac},bootindex={nic_index}" + (",romfile=" if secure else "")
    argv = [
        *(netns_exec(spec.netns) if spec.netns else []),
        "qemu-system-x86_64",
        "-name", spec.name,
        "-machine", "q35,smm=on" if secure else "q35",
        "-accel", spec.accel,
        "-m", str(spec.memory_mib),
        "-smp", str(spec.cpus),
        "-display", "none",
        "-monitor", f"unix:{spec.monitor_socket},server=on,wait=off" if spec.monitor else "none",
        *_serial(spec),
        "-pidfile", str(spec.pid_file),
        "-netdev", _netdev(spec),
        "-device", nic,
        *_extra_nics(spec),
        "-drive", f"file={spec.disk},format=raw,if=none,id=disk0,cache=unsafe",
        "-device", f"virtio-blk-pci,drive=disk0,serial=ms-{spec.name},bootindex={disk_index}",
        *_extra_disks(spec, disk_index),
    ]
    if spec.firmware == "uefi":
        argv += [
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE}",
            "-drive", f"if=pflash,format=raw,file={spec.vars_file}",
            *OVMF_NETWORK_OFF,
        ]
    elif secure:
        argv += [
            "-global", "driver=cfi.pflash01,property=secure,value=on",
            "-drive", f"if=pflash,format=raw,readonly=on,file={OVMF_CODE_SECBOOT}",
            "-drive", f"if=pflash,format=raw,file={spec.vars_file}",
            *OVMF_IPV6_OFF,
        ]
    return argv + list(spec.extra_args)


def create_disk(spec: VmSpec, *, fresh: bool = True) -> None:
    """Create the VM's directory, an empty sparse disk and (UEFI) its own copy of the firmware variables."""
    spec.dir.mkdir(parents=True, exist_ok=True)
    if fresh or not spec.disk.exists():
        spec.disk.unlink(missing_ok=True)
        with open(spec.disk, "wb") as disk:
            disk.truncate(spec.disk_size_gib * 1024**3)
    if spec.firmware != "bios" and (fresh or not spec.vars_file.exists()):
        shutil.copyfile(OVMF_VARS_MS if spec.firmware == "uefi-secureboot" else OVMF_VARS, spec.vars_file)

def serial_text(serial_log: Path) -> str:
    """What a VM wrote to its serial console so far ("" before it started)."""
    try:
        return serial_log.read_text(errors="replace")
    except FileNotFoundError:
        return ""


def wait_for_serial(serial_log: Path, pattern: str, *, timeout: float, since: int, who: str,
                    gone: Callable[[], str | None] = lambda: None) -> re.Match:
    """Poll the console log (from offset `since`) until `pattern` matches; fail when `gone()` says why the VM
    stopped, or after `timeout` seconds."""
    regex = re.compile(pattern)
    deadline = time.monotonic() + timeout
    while not (match := regex.search(serial_text(serial_log), since)):
        if (why := gone()) is not None:
            raise OperationFailed(f"{who} {why} before its console showed {pattern!r}")
        if time.monotonic() > deadline:
            raise OperationFailed(f"{who}: no {pattern!r} on the console after {timeout:.0f} s "
                                  f"(serial log: {serial_log})")
        time.sleep(1)
    return match


class LabVm:
    """A running lab VM; a context manager that always stops qemu."""

    def __init__(self, spec: VmSpec):
        self.spec = spec
        self.process: subprocess.Popen | None = None

    def start(self) -> "LabVm":
        if self.is_running():
            raise OperationFailed(f"VM {self.spec.name} is already running (pid file {self.spec.pid_file})")
        self.spec.serial_log.write_bytes(b"")
        self.process = proc.spawn(qemu_argv(self.spec), stdout=subprocess.DEVNULL)
        return self

    def is_running(self) -> bool:
        if self.process is not None:
            return self.process.poll() is None
        pid = read_pid(self.spec.pid_file)
        return pid is not None and _alive(pid)

    def serial_text(self) -> str:
        return serial_text(self.spec.serial_log)

    def wait_for_serial(self, pattern: str, *, timeout: float, since: int = 0) -> re.Match:
        """Wait until the serial console (from offset `since`) matches `pattern`; fail if qemu exits first."""
        return wait_for_serial(self.spec.serial_log, pattern, timeout=timeout, since=since,
                               who=f"VM {self.spec.name}", gone=self._exit_status)

    def type_serial(self, text: str, *, timeout: float = 10) -> None:
        """Type `text` on the serial console (a VM started with `serial_input`), e.g. a passphrase and "\\n"."""
        if not self.spec.serial_input:
            raise OperationFailed(f"VM {self.spec.name} has no console input (VmSpec.serial_input)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.spec.serial_socket))
            for char in text.encode():  # one byte at a time: a slow guest's UART would drop a burst
                conn.sendall(bytes([char]))
                time.sleep(0.02)

    def _exit_status(self) -> str | None:
        if self.process is not None and self.process.poll() is not None:
            return f"exited (status {self.process.returncode})"
        return None

    def monitor(self, command: str, *, timeout: float = 10) -> str:
        """Run one human-monitor command (e.g. `set_link n1 off`) on a VM started with `monitor=True`; returns
        what the monitor answered."""
        if not self.spec.monitor:
            raise OperationFailed(f"VM {self.spec.name} has no monitor (VmSpec.monitor)")
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as conn:
            conn.settimeout(timeout)
            conn.connect(str(self.spec.monitor_socket))
            _read_prompt(conn)
            conn.sendall(command.encode() + b"\n")
            answer = _read_prompt(conn)
        lines = answer.replace("\r", "").splitlines()
        return "\n".join(line for line in lines[1:] if not line.startswith("(qemu)"))  # without the echo

    def stop(self, *, grace: float = 5) -> None:
        if self.process is not None:
            proc.terminate(self.process, grace=grace)
            self.process = None
        else:
            stop_by_pid_file(self.spec.pid_file, grace=grace)
        self.spec.pid_file.unlink(missing_ok=True)

    def __enter__(self) -> "LabVm":
        return self.start() if self.process is None else self

    def __exit__(self, *exc) -> None:
        self.stop()


def _read_prompt(conn: socket.socket) -> str:
    received = b""
    while not received.rstrip().endswith(b"(qemu)"):
        chunk = conn.recv(4096)
        if not chunk:
            raise OperationFailed("the qemu monitor closed the connection")
        received += chunk
    return received.decode(errors="replace")


def qemu_processes_using(disk: Path) -> list[str]:
    """`PID ARGS` of every qemu process on this host that has `disk` on its command line."""
    listing = proc.run(["ps", "-eo", "pid=,args="], timeout=30).stdout
    return [line.strip() for line in listing.splitlines() if "qemu-system" in line and str(disk) in line]


def read_pid(pid_file: Path) -> int | None:
    try:
        return int(pid_file.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    cmdline = Path(f"/proc/{pid}/cmdline")
    return cmdline.exists() and b"qemu-system" in cmdline.read_bytes()


def stop_by_pid_file(pid_file: Path, *, grace: float = 5) -> bool:
    """Stop a qemu started in the background (`vm start --background`); True if one was running."""
    pid = read_pid(pid_file)
    if pid is None or not _alive(pid):
        return False
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid):
        os.kill(pid, signal.SIGKILL)
    return True
