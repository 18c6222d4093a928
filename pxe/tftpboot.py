"""What the TFTP server answers beyond files in its root: the Secure Boot path and first-stage attribution.

The signed shim loads the signed network GRUB, which reads everything over TFTP (it has no http module):

    shimx64.efi          the installer's signed shim        (first stage, fetched by the firmware)
    grubx64.efi          the installer's signed network GRUB (fetched by shim from the same directory)
    grub/grub.cfg        chain config: configfile $prefix/${net_default_mac}.cfg
    grub/MAC.cfg         rendered per request from the deployment store, like /boot/grub/MAC.cfg over HTTP:
                         a pending/booting deployment gets the installer (a fresh agent token; boot_path
                         "shim-grub"), every other MAC its local disk (the installed grub.cfg)
    installer/vmlinuz    the installer's kernel and initramfs, which that config loads over TFTP
    installer/initrd.img

When a first-stage loader (firststage.LOADERS) is sent, the client's MAC is looked up in the kernel's
neighbour table and the fetch is stored on that MAC's open deployment (firststage_store.record_first_stage),
on a worker thread: the lookup may wait a moment for the kernel to learn the address — only for a client on a
directly connected network (/proc/net/route); one behind a router never appears in the table.

A UEFI first-stage name (bootpath.UEFI_FIRST_STAGE: snponly.efi, ipxe.efi, shimx64.efi) may be answered with
the other path's loader (bootpath.choose): the boot path forced by the open deployment of the client's MAC,
else the service's default. That lookup is immediate (the neighbour table as it is when the request arrives:
the kernel has usually learnt the client from its ARP request for this host); a client not found there, or
with no open deployment, gets the service's default. The choice is recorded with the fetch (`path_choice`).

Names reach this module already checked by pxe.tftp.clean_name; a MAC is checked again by rules.mac.
Nothing here imports Flask: this runs in the TFTP child process.
"""
from __future__ import annotations

import ipaddress
import logging
import queue
import re
import socket
import tempfile
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import BinaryIO, Callable

from sqlalchemy.engine import Engine

from metalstream.contracts import rules
from metalstream.errors import BadInput

from . import bootpath, deployments, firststage, firststage_store
from .boot import InstallerBoot, InstallerMissing, select_boot
from .plan import secure_boot_requested
from .render import Renderer

log = logging.getLogger("metalstream.pxe.tftp")

NEIGHBOUR_TABLE = Path("/proc/net/arp")
ROUTE_TABLE = Path("/proc/net/route")
SIGNED_LOADER_NAMES = {"shimx64.efi": "shim_path", "grubx64.efi": "grub_path"}
INSTALLER_FILES = {"installer/vmlinuz": "kernel_path", "installer/initrd.img": "initramfs_path"}
CHAIN_CONFIG = "grub/grub.cfg"
_HOST_CONFIG = re.compile(r"^grub/([^/]+)\.cfg\Z")
# Seconds after a first-stage fetch at which the neighbour table is read: the kernel learns the client's
# address from its ARP request for ours (before the read request), else as it answers.
LOOKUP_DELAYS = (0.0, 0.5, 2.0)


def installer_files(installer: dict | None) -> dict[str, Path]:
    """TFTP name → file, for the installer's kernel and initramfs and, when it carries them, its signed loaders."""
    if installer is None:
        return {}
    wanted = {**INSTALLER_FILES, **SIGNED_LOADER_NAMES}
    return {name: Path(installer[key]) for name, key in wanted.items() if installer.get(key)}


def read_neighbours(path: Path = NEIGHBOUR_TABLE) -> dict[str, str]:
    try:
        return firststage.parse_neighbours(path.read_text())
    except OSError as exc:
        log.warning("cannot read the neighbour table %s: %s", path, exc)
        return {}


def on_connected_network(client: str, path: Path = ROUTE_TABLE) -> bool:
    """Whether `client` is on a network this host reaches without a router (so it can be in the neighbour table)."""
    try:
        networks = firststage.parse_connected_networks(path.read_text())
    except OSError as exc:
        log.warning("cannot read the route table %s: %s", path, exc)
        return True
    try:
        address = ipaddress.IPv4Address(client)
    except ValueError:
        return False
    return any(address in network for network in networks)


def local_address_toward(client: str) -> str:
    """This host's address on the route to `client` (a connected UDP socket sends nothing)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        probe.connect((client, 9))
        return probe.getsockname()[0]


@dataclass(frozen=True)
class ServiceAddress:
    """Where an installer booted over TFTP reaches the service (its agent's metalstream.server=): the public
    URL, else the HTTP listener's address; a wildcard bind host becomes this host's address toward the client."""

    public_url: str | None
    scheme: str
    host: str
    port: int

    def for_client(self, client: str) -> str:
        if self.public_url:
            return self.public_url.rstrip("/")
        host = self.host.strip("[]")
        if host in ("", "0.0.0.0", "::"):
            host = local_address_toward(client)
        return f"{self.scheme}://{host}:{self.port}"


@dataclass
class FirstStageRecorder:
    """Attributes first-stage fetches to deployments on a worker thread (`note` never blocks the server)."""

    engine: Engine
    neighbours: Callable[[], dict[str, str]] = read_neighbours
    delays: tuple[float, ...] = LOOKUP_DELAYS
    on_link: Callable[[str], bool] = on_connected_network
    _queue: queue.Queue = field(default_factory=lambda: queue.Queue(maxsize=256), init=False)
    _thread: threading.Thread | None = field(default=None, init=False)

    def note(self, loader: str, client: str, at: float, mac: str | None = None,
             choice: bootpath.Choice | None = None) -> None:
        """`mac`: already known (looked up when the boot path was chosen); `choice`: that boot path."""
        if self._thread is None:
            self._thread = threading.Thread(target=self._work, name="first-stage", daemon=True)
            self._thread.start()
        try:
            self._queue.put_nowait((loader, client, at, mac, choice))
        except queue.Full:
            log.warning("%s fetched %s: not attributed (too many fetches waiting)", client, loader)

    def _work(self) -> None:
        while True:
            loader, client, at, mac, choice = self._queue.get()
            try:
                self.record(loader, client, at, mac=mac, choice=choice)
            except Exception:  # keep attributing later fetches (e.g. the database was busy)
                log.exception("%s fetched %s: storing it on its deployment failed", client, loader)

    def lookup(self, client: str, at: float) -> str | None:
        delays = self.delays if self.on_link(client) else self.delays[:1]  # behind a router: no entry to wait for
        for delay in delays:
            time.sleep(max(0.0, at + delay - time.time()))
            mac = self.neighbours().get(client)
            if mac is not None:
                return mac
        return None

    def record(self, loader: str, client: str, at: float, *, mac: str | None = None,
               choice: bootpath.Choice | None = None) -> str | None:
        """Store the fetch on the client's open deployment; the deployment's id, or None."""
        mac = mac or self.lookup(client, at)
        if mac is None:
            log.info("%s fetched %s: no MAC for it in the neighbour table, not attributed", client, loader)
            return None
        dep_id = firststage_store.record_first_stage(self.engine, mac,
                                                     firststage.record(loader, client, mac, at, choice))
        if dep_id is None:
            log.info("%s (%s) fetched %s: no open deployment for that MAC", client, mac, loader)
        else:
            log.info("%s (%s) fetched %s: recorded on deployment %s", client, mac, loader, dep_id)
        return dep_id


@dataclass
class TftpBoot:
    """The TFTP server's dynamic names (see the module's docstring); `open` answers one read request."""

    engine: Engine
    renderer: Renderer
    installer: dict | None
    address: ServiceAddress
    recorder: FirstStageRecorder | None = None
    root: Path | None = None  # the TFTP root, where the iPXE loaders are
    default_path: str = "auto"  # bootpath.BOOT_PATH_CHOICES: the service's --boot-path

    def __post_init__(self) -> None:
        self.files = installer_files(self.installer)
        # The last UEFI first-stage request's boot path and MAC, for `served`: tftpy opens and then sends each
        # file on its one serving thread, so `served` always follows the `open` it belongs to.
        self._chosen: tuple[str, str, str | None, bootpath.Choice, str] | None = None

    def open(self, name: str, client: str) -> BinaryIO | None:
        """The content for `name` (already checked by clean_name), or None when this module does not serve it."""
        self._chosen = None
        if name in bootpath.UEFI_FIRST_STAGE:
            handle = self._first_stage(name, client)
            if handle is not None:
                return handle
        if name in self.files:
            return open(self.files[name], "rb")
        if name in SIGNED_LOADER_NAMES:
            log.warning("%s asked for %s, but the installer carries no signed shim and grub (the Secure Boot "
                        "path is off)", client, name)
            return None
        if name == CHAIN_CONFIG:
            return _text(self.renderer.chain_tftp_grub())
        match = _HOST_CONFIG.match(name)
        if match is None:
            return None
        try:
            mac = rules.mac(match.group(1), "MAC")
        except BadInput:
            return None
        return _text(self._host_config(mac, client))

    def _host_config(self, mac: str, client: str) -> str:
        try:
            boot = select_boot(self.engine, mac, base_url=self.address.for_client(client),
                               installer_available=self.installer is not None, boot_path="shim-grub")
        except InstallerMissing:
            return self.renderer.no_installer_grub(mac)
        if isinstance(boot, InstallerBoot):
            return self.renderer.installer_tftp_grub(boot)
        return self.renderer.local_grub(mac, boot.root_uuid)

    def _first_stage(self, asked: str, client: str) -> BinaryIO | None:
        """The other path's loader when the client's boot path (bootpath.choose) is not the one `asked` starts;
        else None (the asked file is served as usual). Remembers the choice for `served`."""
        try:
            mac, row = self._open_deployment(client)
        except Exception:  # the loader goes out either way: on the service's default path
            log.exception("tftp %s asked for %s: looking up its deployment failed", client, asked)
            mac, row = None, None
        request = row["request"] if row is not None else {}
        choice = bootpath.choose(asked, request.get("boot_path") if row is not None else None, self.default_path,
                                 row is not None and secure_boot_requested(request, row["storage"]))
        loader, path = self._loader_for(choice.path) if choice.redirected else (asked, None)
        if choice.redirected and path is None:
            why = ("the installer carries no signed shim and grub" if choice.path == "shim-grub"
                   else "the TFTP root has no snponly.efi or ipxe.efi")
            choice = bootpath.Choice(asked, bootpath.UEFI_FIRST_STAGE[asked], "asked",
                                     note=f"boot path {choice.path} ({bootpath.CHOSEN_BY[choice.chosen_by]}) "
                                          f"cannot be served: {why}")
            loader = asked
        log.info("tftp %s (%s): %s", client, mac or "MAC unknown", bootpath.describe(choice, loader))
        self._chosen = (client, asked, mac, choice, loader)
        return open(path, "rb") if choice.redirected else None

    def _open_deployment(self, client: str) -> tuple[str | None, dict | None]:
        """The client's MAC from the neighbour table as it is now, and that MAC's open deployment (or None)."""
        mac = self.recorder.neighbours().get(client) if self.recorder is not None else None
        return mac, (deployments.open_for_mac(self.engine, mac) if mac is not None else None)

    def _loader_for(self, path: str) -> tuple[str, Path | None]:
        """The first-stage loader that starts boot `path` and its file, or (name, None) when there is none."""
        for name in bootpath.LOADERS_FOR[path]:
            if name in self.files:
                return name, self.files[name]
            if self.root is not None and (self.root / name).is_file():
                return name, self.root / name
        return bootpath.LOADERS_FOR[path][0], None

    def served(self, name: str, client: str, at: float) -> None:
        """A file (from here or the TFTP root) is being sent: attribute first-stage loaders to their deployment,
        under the name of the loader actually sent."""
        loader = name.rsplit("/", 1)[-1]
        chosen, self._chosen = self._chosen, None
        if loader not in firststage.LOADERS or self.recorder is None:
            return
        if chosen is not None and chosen[:2] == (client, name):
            _, _, mac, choice, sent = chosen
            self.recorder.note(sent, client, at, mac=mac, choice=choice)
        else:
            self.recorder.note(loader, client, at)


def _text(body: str) -> BinaryIO:
    """A rendered config as an open file: tftpy flock()s every file it sent when the transfer ends (its server
    ignores flock=False), which an in-memory buffer cannot take."""
    handle = tempfile.TemporaryFile()
    handle.write(body.encode("ascii"))
    handle.seek(0)
    return handle
