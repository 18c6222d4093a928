"""Lab VMs as libvirt domains, so BMC emulators (lab.bmc: sushy-tools, virtualbmc) can power them and set
their boot device the way a real BMC does.

`LibvirtDaemon` runs libvirtd and virtlogd on this host (systemd is not PID 1 here): started when none runs,
stopped by PID only if it started them. libvirtd runs in a private mount namespace whose autostart directory
for networks is empty, so it never brings up a bridge (and its private-range address) on this host.

`domain_xml` is pure: a `<domain type='qemu'>` (TCG) for a lab.vm.VmSpec — same disk, firmware variables,
serial log and MAC as a qemu-run lab VM. Its network is qemu's user networking passed through
`<qemu:commandline>`: the guest's iPXE fetches `spec.boot_url` (the service on this host's loopback is
10.0.2.2) and this host reaches its sshd on `spec.ssh_port`. That NIC always boots first (bootindex 0); the
service's boot script sends a machine with nothing to install on to its disk, as with the qemu-run lab VMs.
libvirt cannot see a pass-through NIC, so the domain also carries a second NIC of libvirt's own, link down and
without a boot ROM: it gives sushy-tools a network device to put first when a Redfish client sets the boot
source to Pxe (without one, sushy-tools answers 500). The boot order a BMC writes is real (virsh dumpxml shows
it) but cannot change what boots first.

`LibvirtVm` defines, starts, stops and undefines one domain through `virsh` (this host's .venv may not import
python3-libvirt).
"""
from __future__ import annotations

import os
import re
import signal
import time
from dataclasses import dataclass
from pathlib import Path
from xml.sax.saxutils import quoteattr

from metalstream import proc
from metalstream.errors import OperationFailed

from .vm import OVMF_CODE, OVMF_NETWORK_OFF, VmSpec, mac_for, serial_text, wait_for_serial

URI = "qemu:///system"
LIBVIRTD_PID = Path("/run/libvirtd.pid")
VIRTLOGD_PID = Path("/run/virtlogd.pid")
NETWORK_AUTOSTART = Path("/etc/libvirt/qemu/networks/autostart")
EMPTY_AUTOSTART = Path("/run/metalstream-lab/libvirt-no-autostart")
PASSTHROUGH_NETDEV = "pxenet"


def virsh(*args: str, timeout: float = 60, check: bool = True) -> proc.Result:
    return proc.run(["virsh", "-c", URI, *args], timeout=timeout, check=check)


def _read_pid(path: Path) -> int | None:
    try:
        return int(path.read_text().strip())
    except (FileNotFoundError, ValueError):
        return None


def _alive(pid: int | None, program: str) -> bool:
    if pid is None:
        return False
    try:
        return program.encode() in Path(f"/proc/{pid}/cmdline").read_bytes()
    except (FileNotFoundError, ProcessLookupError):
        return False


def _stop_pid(pid: int, program: str, *, grace: float = 15) -> None:
    if not _alive(pid, program):
        return
    os.kill(pid, signal.SIGTERM)
    deadline = time.monotonic() + grace
    while _alive(pid, program) and time.monotonic() < deadline:
        time.sleep(0.2)
    if _alive(pid, program):
        os.kill(pid, signal.SIGKILL)


class LibvirtDaemon:
    """A context manager: libvirtd (and virtlogd) answer on qemu:///system inside it. Daemons already
    running (another test session, an operator) are used and left running; those it started are stopped."""

    def __init__(self, *, timeout: float = 60):
        self.timeout = timeout
        self.started: list[tuple[int, str]] = []

    def answers(self) -> bool:
        return virsh("version", timeout=20, check=False).returncode == 0

    def start(self) -> "LibvirtDaemon":
        if not _alive(_read_pid(VIRTLOGD_PID), "virtlogd"):
            proc.run(["virtlogd", "-d", "-p", str(VIRTLOGD_PID)], timeout=30)
            self._remember(VIRTLOGD_PID, "virtlogd")
        if not _alive(_read_pid(LIBVIRTD_PID), "libvirtd"):
            EMPTY_AUTOSTART.mkdir(parents=True, exist_ok=True)
            script = (f"mount --bind {EMPTY_AUTOSTART} {NETWORK_AUTOSTART} && "
                      f"exec libvirtd -d -p {LIBVIRTD_PID}")
            proc.run(["unshare", "--mount", "--propagation", "private", "sh", "-c", script], timeout=60)
            self._remember(LIBVIRTD_PID, "libvirtd")
        deadline = time.monotonic() + self.timeout
        while not self.answers():
            if time.monotonic() > deadline:
                self.stop()
                raise OperationFailed(f"libvirtd did not answer on {URI} within {self.timeout:.0f} s "
                                      f"(pid file {LIBVIRTD_PID})")
            time.sleep(0.3)
        return self

    def _remember(self, pid_file: Path, program: str) -> None:
        deadline = time.monotonic() + 15
        while not _alive(_read_pid(pid_file), program):
            if time.monotonic() > deadline:
                raise OperationFailed(f"{program} did not write a live PID to {pid_file}")
            time.sleep(0.1)
        self.started.append((_read_pid(pid_file), program))

    def stop(self) -> None:
        """Stop the daemons started here — unless domains are still defined: another run (which found our
        libvirtd running and used it) still needs it; it is left running, as that run would leave it."""
        if self.started and self.answers() and virsh("list", "--all", "--name", timeout=20).stdout.strip():
            self.started = []
            return
        for pid, program in reversed(self.started):
            _stop_pid(pid, program)
        self.started = []

    def __enter__(self) -> "LibvirtDaemon":
        return self.start()

    def __exit__(self, *exc) -> None:
        self.stop()


def decoy_mac(spec: VmSpec) -> str:
    return mac_for(f"{spec.name}-decoy")


def _arg(value: str) -> str:
    return f"    <qemu:arg value={quoteattr(value)}/>"


def _passthrough_args(spec: VmSpec) -> list[str]:
    netdev = f"user,id={PASSTHROUGH_NETDEV}"
    if spec.boot_url:
        netdev += f",bootfile={spec.boot_url}"
    if spec.ssh_port:
        netdev += f",hostfwd=tcp:127.0.0.1:{spec.ssh_port}-:22"
    args = ["-netdev", netdev, "-device", f"virtio-net-pci,netdev={PASSTHROUGH_NETDEV},mac={spec.mac},bootindex=0,bus=pcie.0,addr=0x10",
            # libvirt passes `-boot strict=on`: with an IPMI boot device (`<os><boot dev='network'/>`) the disk is
            # then in no boot list, and after iPXE exits ("no install pending") SeaBIOS finds nothing to boot.
            # qemu merges -boot options, the later one winning: the firmware falls back to the other devices.
            "-boot", "strict=off"]
    if spec.firmware == "uefi":
        args += OVMF_NETWORK_OFF
    return args + list(spec.extra_args)


def domain_xml(spec: VmSpec) -> str:
    """The libvirt domain of a lab VM: TCG, its disk (boot order 1), UEFI (OVMF, with the VM's own variables
    file) or BIOS, serial console to `spec.serial_log`, the pass-through user-network NIC with `spec.mac` and
    libvirt's decoy NIC (see the module docstring). qemu runs as root (a static DAC label): the lab's files
    live in root-only temporary directories."""
    if spec.firmware not in ("uefi", "bios"):
        raise OperationFailed(f"libvirt lab domains are uefi or bios, not {spec.firmware}")
    loader = (f"    <loader readonly='yes' type='pflash'>{OVMF_CODE}</loader>\n"
              f"    <nvram>{spec.vars_file}</nvram>\n") if spec.firmware == "uefi" else ""
    args = "\n".join(_arg(a) for a in _passthrough_args(spec))
    return f"""<domain type='qemu' xmlns:qemu='http://libvirt.org/schemas/domain/qemu/1.0'>
  <name>{spec.name}</name>
  <memory unit='MiB'>{spec.memory_mib}</memory>
  <vcpu>{spec.cpus}</vcpu>
  <os>
    <type arch='x86_64' machine='q35'>hvm</type>
{loader}  </os>
  <features><acpi/><apic/></features>
  <on_poweroff>destroy</on_poweroff>
  <on_reboot>restart</on_reboot>
  <on_crash>destroy</on_crash>
  <devices>
    <emulator>/usr/bin/qemu-system-x86_64</emulator>
    <disk type='file' device='disk'>
      <driver name='qemu' type='raw' cache='unsafe'/>
      <source file={quoteattr(str(spec.disk))}/>
      <target dev='vda' bus='virtio'/>
      <serial>ms-{spec.name}</serial>
      <boot order='1'/>
    </disk>
    <interface type='user'>
      <mac address='{decoy_mac(spec)}'/>
      <model type='virtio'/>
      <rom enabled='no'/>
      <link state='down'/>
    </interface>
    <serial type='file'>
      <source path={quoteattr(str(spec.serial_log))}/>
      <target port='0'/>
    </serial>
    <console type='file'>
      <source path={quoteattr(str(spec.serial_log))}/>
      <target type='serial' port='0'/>
    </console>
    <video><model type='none'/></video>
    <memballoon model='none'/>
  </devices>
  <seclabel type='static' model='dac' relabel='no'><label>+0:+0</label></seclabel>
  <qemu:commandline>
{args}
  </qemu:commandline>
</domain>
"""


@dataclass
class LibvirtVm:
    """One lab VM as a persistent, powered-off libvirt domain (`define`); BMCs (or `start`) power it.
    A context manager: on exit the domain is destroyed and undefined (its disk stays for the caller)."""

    spec: VmSpec

    @property
    def name(self) -> str:
        return self.spec.name

    def define(self) -> "LibvirtVm":
        if virsh("domstate", self.name, check=False).returncode == 0:
            raise OperationFailed(f"a libvirt domain {self.name} already exists (another run, or a killed one: "
                                  f"`virsh destroy {self.name}; virsh undefine --nvram {self.name}`)")
        xml_file = self.spec.dir / "domain.xml"
        self.spec.dir.mkdir(parents=True, exist_ok=True)
        xml_file.write_text(domain_xml(self.spec))
        self.spec.serial_log.write_bytes(b"")
        virsh("define", str(xml_file))
        return self

    def state(self) -> str:
        """virsh's state of the domain: "running", "shut off", "paused", ..."""
        return virsh("domstate", self.name).stdout.strip()

    def is_running(self) -> bool:
        return self.state() == "running"

    def wait_state(self, wanted: str, *, timeout: float = 30) -> None:
        deadline = time.monotonic() + timeout
        while (state := self.state()) != wanted:
            if time.monotonic() > deadline:
                raise OperationFailed(f"domain {self.name} is {state!r}, not {wanted!r}, after {timeout:.0f} s")
            time.sleep(0.3)

    def xml(self, *, inactive: bool = True) -> str:
        return virsh("dumpxml", *(["--inactive"] if inactive else []), self.name).stdout

    def boot_order(self) -> list[str]:
        """The devices of the persistent definition in boot order: 'disk'/'interface' per `<boot order>`, else
        the `<os><boot dev>` entries (hd, network, ...)."""
        xml = self.xml()
        ordered = sorted((int(order), kind) for kind, order in
                         re.findall(r"<(disk|interface)\b(?:(?!</\1>).)*?<boot order='(\d+)'/>", xml, re.S))
        return [kind for _, kind in ordered] or re.findall(r"<boot dev='(\w+)'/>", xml)

    def start(self) -> None:
        virsh("start", self.name)

    def destroy(self) -> None:
        if self.is_running():
            virsh("destroy", self.name, check=False)

    def serial_text(self) -> str:
        return serial_text(self.spec.serial_log)

    def wait_for_serial(self, pattern: str, *, timeout: float, since: int = 0) -> re.Match:
        return wait_for_serial(self.spec.serial_log, pattern, timeout=timeout, since=since, who=f"domain {self.name}")

    def undefine(self) -> None:
        if virsh("domstate", self.name, check=False).returncode != 0:
            return
        virsh("destroy", self.name, check=False)
        virsh("undefine", "--nvram", self.name, check=False)

    def __enter__(self) -> "LibvirtVm":
        return self.define()

    def __exit__(self, *exc) -> None:
        self.undefine()
