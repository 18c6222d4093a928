"""The main job, end to end: build the images, serve them, PXE-deploy a lab VM, verify it, report phase times.

Every step that costs time is recorded in a PhaseClock; the summary table and its JSON come from it.
The VM and the service are context managers: they stop on success, failure and Ctrl-C alike.
"""
from __future__ import annotations

import json
import re
import time
from contextlib import ExitStack
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import requests

from metalstream.errors import OperationFailed

from .service_proc import ServiceProcess, free_port
from .tls import KeyPair, issue_server_cert, lab_ca
from .vm import LabVm, VmSpec, create_disk

REPO = Path(__file__).resolve().parents[1]
Echo = Callable[[str], None]
TERMINAL_STATES = ("active", "failed", "cancelled")
# Agent phases grouped the way the summary reports them, in order.
SUMMARY_PHASES = (
    ("pxe_to_agent", "PXE boot → agent start"),
    ("partition", "disk + partition + mkfs"),
    ("stream", "stream + verify image"),
    ("configure", "configure target"),
    ("bootloader", "bootloader"),
    ("reboot_to_ssh", "reboot → SSH check (active)"),
)
PHASE_GROUP = {"start": "partition", "disk": "partition", "partition": "partition", "mkfs": "partition",
               "stream": "stream", "verify": "stream", "configure": "configure", "bootloader": "bootloader",
               "finish": "bootloader"}
# The addresses the demo's clients reach the service at: the guest (qemu user networking) and this host.
SERVICE_ADDRESSES = ("10.0.2.2", "127.0.0.1")
# An access log line of `metalstream serve` (pxe.server.ACCESS_LOG_FORMAT): request line, status, ..., scheme.
_ACCESS_LINE = re.compile(r'"(?P<method>[A-Z]+) (?P<path>\S+) HTTP/[0-9.]+" (?P<status>\d{3}) .* (?P<scheme>https?)$')
TRAFFIC_KINDS = (("agent", "/api/v1/agent/"), ("image", "/images/"), ("boot", "/boot"), ("boot", "/installer/"))


@dataclass
class DemoOptions:
    firmware: str = "uefi"
    vm_name: str = "demo-node"
    out_dir: Path = REPO / "out"
    data_dir: Path = Path("/var/lib/metalstream/demo")
    lab_dir: Path = Path("/var/lib/metalstream/lab")
    image_kickstart: Path = REPO / "kickstarts" / "debian-minimal.ks"
    installer_kickstart: Path = REPO / "kickstarts" / "installer.ks"
    image_name: str = "debian-minimal"
    installer_name: str = "installer"
    deploy_timeout: float = 1800
    summary_path: Path | None = None
    rebuild: bool = False
    tls: bool = False  # HTTPS for the agent (installer with the lab CA), plain HTTP only for the boot files
    reboot_method: str = "firmware"  # firmware | kexec: how the installer boots the installed system
    power: str = "none"  # none: the demo powers a qemu VM on itself; redfish | ipmi: a libvirt domain behind a lab
    # BMC emulator, registered as a machine: only the service powers it (lab.bmc)
    bmc_password: str = "demo-bmc-password"


@dataclass
class PhaseClock:
    """First-seen times of each stage, on this host's monotonic clock."""

    started: float = field(default_factory=time.monotonic)
    marks: dict[str, float] = field(default_factory=dict)

    def mark(self, name: str) -> None:
        self.marks.setdefault(name, time.monotonic())

    def since(self, name: str) -> float:
        return time.monotonic() - self.marks[name]


def summarize(clock: PhaseClock, builds: dict[str, float]) -> dict:
    """Durations per summary phase from the clock's marks (pure: tested with made-up marks)."""
    order = ["vm_power_on", "partition", "stream", "configure", "bootloader", "installed", "active"]
    seen = [(name, clock.marks[name]) for name in order if name in clock.marks]
    durations: dict[str, float | None] = {key: None for key, _ in SUMMARY_PHASES}
    names = {"vm_power_on": "pxe_to_agent", "partition": "partition", "stream": "stream", "configure": "configure",
             "bootloader": "bootloader", "installed": "reboot_to_ssh"}
    for (name, start), (_, end) in zip(seen, seen[1:]):
        if name in names:
            durations[names[name]] = round(end - start, 1)
    deploy_total = (round(clock.marks["active"] - clock.marks["vm_power_on"], 1)
                    if {"active", "vm_power_on"} <= clock.marks.keys() else None)
    return {"builds_seconds": {k: round(v, 1) for k, v in builds.items()}, "phases_seconds": durations,
            "deploy_total_seconds": deploy_total, "total_seconds": round(time.monotonic() - clock.started, 1)}


def render_table(summary: dict) -> str:
    rows = [(f"build {name}{' (up to date, reused)' if not secs else ''}", secs)
            for name, secs in summary["builds_seconds"].items()]
    rows += [(label, summary["phases_seconds"].get(key)) for key, label in SUMMARY_PHASES]
    rows += [("deploy total (power on → active)", summary["deploy_total_seconds"]),
             ("everything", summary["total_seconds"])]
    width = max(len(label) for label, _ in rows)
    lines = [f"{'phase':<{width}}  seconds", f"{'-' * width}  -------"]
    lines += [f"{label:<{width}}  {'-' if secs is None else f'{secs:7.1f}'}" for label, secs in rows]
    return "\n".join(lines)


def ensure_image(kickstart: Path, out_dir: Path, name: str, image_format: str, *, rebuild: bool, echo: Echo,
                 ca_file: Path | None = None) -> tuple[Path, float]:
    """Build NAME from KICKSTART unless an image of the same kickstart (for an installer: the same agent
    and CA inside) is already in OUT_DIR."""
    from tarball_builder.context import BuildOptions
    from tarball_builder.kickstart import parse_kickstart
    from tarball_builder.pipeline import Progress, build

    split = parse_kickstart(kickstart)
    manifest_path = out_dir / f"{name}.json"
    ca_sha256 = _file_sha256(ca_file) if ca_file else None
    if manifest_path.exists() and not rebuild:
        manifest = json.loads(manifest_path.read_text())
        if _up_to_date(manifest, split.sha256, image_format, ca_sha256) and _files_present(manifest_path, manifest):
            echo(f"{name}: up to date ({manifest_path}), not rebuilding")
            return manifest_path, 0.0
    echo(f"building {name} from {kickstart}{f' with the CA {ca_file}' if ca_file else ''} ...")
    started = time.monotonic()
    options = BuildOptions(output_dir=out_dir.resolve(), name=name, image_format=image_format, ca_file=ca_file)
    built = build(split, options, progress=Progress())
    return Path(built), time.monotonic() - started


def _file_sha256(path: Path) -> str:
    import hashlib
    return hashlib.sha256(Path(path).read_bytes()).hexdigest()


def _up_to_date(manifest: dict, kickstart_sha256: str, image_format: str, ca_sha256: str | None = None) -> bool:
    """Built from this kickstart and, for the installer, with this checkout's agent and this CA (or none) inside."""
    if manifest.get("kickstart_sha256") != kickstart_sha256:
        return False
    if image_format == "installer":
        from tarball_builder.installer.stage import agent_sources_sha256
        return manifest.get("agent_sha256") == agent_sources_sha256() and manifest.get("ca_sha256") == ca_sha256
    return True


def _files_present(manifest_path: Path, manifest: dict) -> bool:
    names = [manifest.get("tarball")] + [manifest.get(part, {}).get("file") for part in ("kernel", "initramfs")]
    return all((manifest_path.parent / n).exists() for n in names if n) and any(names)


class ApiClient:
    def __init__(self, base_url: str, token: str, *, verify: bool | str = True):
        self.base = base_url
        self.verify = verify
        self.session = requests.Session()
        self.session.headers["Authorization"] = f"Bearer {token}"

    def post(self, path: str, body: dict) -> dict:
        response = self.session.post(self.base + path, json=body, timeout=30, verify=self.verify)
        if response.status_code >= 400:
            raise OperationFailed(f"POST {path}: {response.status_code} {response.text.strip()}")
        return response.json()

    def get(self, path: str) -> dict:
        response = self.session.get(self.base + path, timeout=30, verify=self.verify)
        response.raise_for_status()
        return response.json()

    def delete(self, path: str) -> None:
        self.session.delete(self.base + path, timeout=30, verify=self.verify)


def traffic_by_scheme(lines: list[str]) -> dict[str, dict[str, int]]:
    """Requests per kind (agent calls, image downloads, boot files) and scheme, from access log lines (pure)."""
    counts = {kind: {"https": 0, "http": 0} for kind, _ in TRAFFIC_KINDS}
    for line in lines:
        match = _ACCESS_LINE.search(line.rstrip())
        if not match:
            continue
        kind = next((kind for kind, prefix in TRAFFIC_KINDS if match["path"].startswith(prefix)), None)
        if kind is not None:
            counts[kind][match["scheme"]] += 1
    return counts


def render_traffic(counts: dict[str, dict[str, int]]) -> str:
    return "; ".join(f"{kind}: {by_scheme['https']} over https, {by_scheme['http']} over plain http"
                     for kind, by_scheme in counts.items())


def _read_log_from(path: Path, offset: int) -> list[str]:
    with open(path, "rb") as f:
        f.seek(offset)
        return f.read().decode(errors="replace").splitlines()


def demo_certificates(data_dir: Path) -> tuple[KeyPair, KeyPair]:
    """The lab CA (kept in DATA_DIR/tls while valid, so the TLS installer built with it stays up to date)
    and a fresh server certificate for the addresses the VM and this host reach the service at."""
    directory = data_dir / "tls"
    ca = lab_ca(directory)
    return ca, issue_server_cert(ca, directory, ip_addresses=SERVICE_ADDRESSES, dns_names=["localhost"])


def watch_deployment(api: ApiClient, dep_id: str, clock: PhaseClock, vm: LabVm, *, timeout: float, echo: Echo) -> dict:
    """Poll the deployment once a second, print progress, record phase marks; return its final record."""
    deadline = time.monotonic() + timeout
    last_line = ""
    while True:
        dep = api.get(f"/api/v1/deployments/{dep_id}")
        state, phase = dep["state"], dep.get("phase")
        if state == "installing" and phase in PHASE_GROUP:
            clock.mark(PHASE_GROUP[phase])
        if state in ("installed", "active"):
            clock.mark("installed")
        if state == "active":
            clock.mark("active")
        line = _progress_line(dep)
        if line != last_line:
            echo(f"demo: [{time.monotonic() - clock.marks['vm_power_on']:6.1f}s] {line}")
            last_line = line
        if state in TERMINAL_STATES:
            return dep
        if not vm.is_running():
            raise OperationFailed(f"the VM stopped while the deployment was {state}")
        if time.monotonic() > deadline:
            raise OperationFailed(f"deployment still {state} after {timeout:.0f} s")
        time.sleep(1)


def reboot_event(dep: dict) -> str | None:
    """The agent's `reboot: METHOD (...)` event of a deployment record: how it booted the installed system."""
    return next((e["message"] for e in reversed(dep.get("events") or [])
                 if (e.get("message") or "").startswith("reboot:")), None)


def _progress_line(dep: dict) -> str:
    parts = [dep["state"]]
    if dep.get("phase"):
        parts.append(dep["phase"])
    if dep.get("bytes_total"):
        done, total = dep.get("bytes_done") or 0, dep["bytes_total"]
        parts.append(f"{done / 2**20:.0f}/{total / 2**20:.0f} MiB ({100 * done / total:.0f}%)")
    if dep.get("eta_seconds") is not None:
        parts.append(f"ETA {dep['eta_seconds']:.0f}s")
    if dep.get("message"):
        parts.append(dep["message"])
    if dep.get("error"):
        parts.append("error: " + dep["error"])
    return " | ".join(parts)


def run_demo(opts: DemoOptions, echo: Echo = print) -> dict:
    from pxe import tokens
    from pxe.cli import _engine

    clock = PhaseClock()
    builds: dict[str, float] = {}
    ca, server_cert = demo_certificates(opts.data_dir) if opts.tls else (None, None)
    image_manifest, builds["image"] = ensure_image(opts.image_kickstart, opts.out_dir, opts.image_name, "tarball",
                                                   rebuild=opts.rebuild, echo=echo)
    # The TLS installer has its own name: switching between the demos does not rebuild either.
    installer_name = f"{opts.installer_name}-tls" if opts.tls else opts.installer_name
    installer_manifest, builds["installer"] = ensure_image(opts.installer_kickstart, opts.out_dir, installer_name,
                                                           "installer", rebuild=opts.rebuild, echo=echo,
                                                           ca_file=ca.cert if ca else None)
    config, engine = _engine(opts.data_dir, None, create=True)
    image = _register_current(engine, config.image_dir, image_manifest)
    token = tokens.create_api_token(engine, "admin", "demo")
    ssh_port = free_port()
    spec = VmSpec(opts.vm_name, firmware=opts.firmware, ssh_port=ssh_port, lab_dir=opts.lab_dir,
                  memory_mib=2048, disk_size_gib=8)
    service = ServiceProcess(opts.data_dir, installer=installer_manifest, tls=server_cert,
                             ca=ca.cert if ca else None)
    log_start = service.log_path.stat().st_size if service.log_path.exists() else 0
    with ExitStack() as stack:
        stack.enter_context(service)
        echo(f"demo: service at {service.url} (guests: {service.guest_url}, boot files: {service.guest_boot_url}), "
             f"log {service.log_path}")
        api = ApiClient(service.url, token, verify=service.verify)
        _cancel_open_deployments(api, spec.mac)
        spec.boot_url = f"{service.guest_boot_url}/boot.ipxe"
        create_disk(spec)
        request = {"mac": spec.mac, "image": image["name"], "hostname": opts.vm_name, "boot_mode": "both",
                   "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"127.0.0.1:{ssh_port}",
                   "reboot_method": opts.reboot_method}
        if opts.power != "none":
            vm = _PoweredByService(_machine_behind_bmc(stack, api, spec, opts, echo))
            request["machine"] = spec.name
        dep = api.post("/api/v1/deployments", request)
        clock.mark("vm_power_on")
        if opts.power == "none":
            echo(f"demo: deployment {dep['id']} for {spec.mac} ({opts.firmware}, {opts.reboot_method} reboot); "
                 f"powering on {spec.name}")
            vm = stack.enter_context(LabVm(spec))
        else:
            echo(f"demo: deployment {dep['id']} for machine {spec.name} ({opts.firmware}, {opts.reboot_method} "
                 f"reboot); the service powers it on through {opts.power}")
        final = watch_deployment(api, dep["id"], clock, vm, timeout=opts.deploy_timeout, echo=echo)
    summary = summarize(clock, builds)
    traffic = traffic_by_scheme(_read_log_from(service.log_path, log_start))
    summary.update({"deployment": final["id"], "state": final["state"], "firmware": opts.firmware,
                    "image": image["name"], "image_size": image.get("size"), "error": final.get("error"),
                    "tls": opts.tls, "traffic": traffic, "reboot_method": opts.reboot_method,
                    "reboot_event": reboot_event(final)})
    echo(render_table(summary))
    echo(f"demo: power-on → active with a {opts.reboot_method} reboot: "
         f"{'-' if summary['deploy_total_seconds'] is None else summary['deploy_total_seconds']} s"
         f" ({summary['reboot_event'] or 'the agent reported no reboot method'})")
    echo(f"demo: service access log: {render_traffic(traffic)}")
    if opts.summary_path:
        opts.summary_path.parent.mkdir(parents=True, exist_ok=True)
        opts.summary_path.write_text(json.dumps(summary, indent=2) + "\n")
        echo(f"demo: summary written to {opts.summary_path}")
    if final["state"] != "active":
        raise OperationFailed(f"deployment ended {final['state']}: {final.get('error') or final.get('check_message')}"
                              f" (serial log: {spec.serial_log})")
    if opts.tls and (traffic["agent"]["http"] or traffic["image"]["http"] or not traffic["agent"]["https"]):
        raise OperationFailed(f"the agent was expected to talk only https to the service: {render_traffic(traffic)}"
                              f" (log {service.log_path})")
    return summary


class _PoweredByService:
    """The demo's view of a domain the service powers on: not running yet is fine until it first runs."""

    def __init__(self, vm):
        self.vm = vm
        self.seen_running = False

    def is_running(self) -> bool:
        running = self.vm.is_running()
        self.seen_running = self.seen_running or running
        return running or not self.seen_running


def _machine_behind_bmc(stack: ExitStack, api: ApiClient, spec: VmSpec, opts: DemoOptions, echo: Echo):
    """Define SPEC as a powered-off libvirt domain behind a BMC emulator of `opts.power` and register it as a
    machine (replacing the demo's earlier record of it); nothing but the service touches it afterwards."""
    from .bmc import emulator_for, machine_bmc
    from .libvirt import LibvirtDaemon, LibvirtVm

    stack.enter_context(LibvirtDaemon())
    vm = stack.enter_context(LibvirtVm(spec))
    bmc = stack.enter_context(emulator_for(opts.power, opts.data_dir / "bmc" / spec.name, spec.name,
                                           password=opts.bmc_password))
    api.delete(f"/api/v1/machines/{spec.name}")
    machine = api.post("/api/v1/machines", {"name": spec.name, "macs": [spec.mac], "bmc": machine_bmc(bmc)})
    echo(f"demo: machine {machine['id']} ({spec.name}, {spec.mac}) behind {opts.power} BMC "
         f"{machine_bmc(bmc)['address']} (log {bmc.log_path}); domain {vm.name} is {vm.state()}")
    return vm


def _register_current(engine, image_dir: Path, manifest_path: Path) -> dict:
    """Register the image just built; an older build under the same name in the demo's own store (the
    kickstart changed, or another checkout built it) is replaced, not refused."""
    from pxe import imagestore
    from pxe.errors import NotFound

    sha256 = json.loads(manifest_path.read_text())["sha256"]
    name = json.loads(manifest_path.read_text())["name"]
    try:
        if imagestore.get(engine, name)["sha256"] != sha256:
            imagestore.remove(engine, image_dir, name)
    except NotFound:
        pass
    return imagestore.register(engine, image_dir, manifest_path)


def _cancel_open_deployments(api: ApiClient, mac: str) -> None:
    """A previous interrupted demo may have left a deployment open for this VM's MAC: cancel it."""
    for dep in api.get(f"/api/v1/deployments?mac={mac}")["deployments"]:
        if dep["state"] in ("pending", "booting", "installing"):
            api.delete(f"/api/v1/deployments/{dep['id']}")
