"""The fleet simulator: many simulated machines (lab.fleet) deploying at once against real
`metalstream serve` processes on loopback — SQLite with one replica, PostgreSQL with one, and
PostgreSQL with three behind nginx — while API clients poll the deployment list. Per endpoint class:
request count, p50/p99/max latency, transport errors; per setup: request rate and the service's CPU
seconds and RSS. Goal: 0 errors and p99 < 100 ms for agent calls at 1,000 machines on PostgreSQL
with 3 replicas.
"""
from __future__ import annotations

import asyncio
import os
import subprocess
import sys
import tempfile
import time
from contextlib import ExitStack
from pathlib import Path

from lab.fleet import FleetOptions, fleet_macs, run_fleet
from lab.nginx import free_port, load_balancer, nginx
from lab.pg import PgCluster
from lab.service_proc import ServiceProcess

from .stats import goal

SETUPS = (("sqlite", 1), ("postgresql", 1), ("postgresql", 3))
AGENT_CALLS = ("agent_plan", "agent_event", "agent_result")
IMAGE_BYTES = 1 << 20
METALSTREAM = [sys.executable, "-m", "metalstream"]


def bench_fleet(machines: int, work: Path, echo) -> dict:
    echo(f"fleet: {machines} simulated machines per setup: " + ", ".join(f"{db} x{n}" for db, n in SETUPS))
    results = {}
    with ExitStack() as stack:
        cluster = PgCluster.start()
        stack.callback(cluster.stop)
        for database, replicas in SETUPS:
            name = f"{database}_x{replicas}"
            db_url = cluster.create_database(f"fleet_{replicas}") if database == "postgresql" else None
            results[name] = _one_setup(machines, replicas, db_url, Path(tempfile.mkdtemp(dir=work)), echo)
            echo(f"  {name}: {_line(results[name])}")
    worst = agent_p99(results["postgresql_x3"])
    errors = results["postgresql_x3"]["failed_machines"]
    met = goal(worst, "<=", 100)
    return {"machines": machines, "setups": results, "agent_p99_ms_postgresql_x3": worst,
            "goal": f"0 failed machines and agent p99 {met['goal']} ms (PostgreSQL, 3 replicas)",
            "met": errors == 0 and bool(met["met"])}


def _one_setup(machines: int, replicas: int, db_url: str | None, work: Path, echo) -> dict:
    image = work / "fleet.tar.zst"
    image.write_bytes(os.urandom(IMAGE_BYTES))
    manifest = _manifest(image)
    installer = _installer(work)
    lb_port = free_port() if replicas > 1 else None
    services = []
    for n in range(replicas):
        data_dir = work / f"replica{n}"
        data_dir.mkdir()
        options = ["--sweep-interval", "5", "--threads", "32", "--auth-max-failures", "0",
                   *(["--db", db_url] if db_url else [])]
        service = ServiceProcess(data_dir, workers=2, installer=installer, options=options, agent_timeout=600)
        subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, *_db(db_url), manifest],
                       check=True, capture_output=True)
        services.append(service)
    with ExitStack() as stack:
        for service in services:
            if lb_port:
                service.public_url = f"http://127.0.0.1:{lb_port}"
            else:
                service.public_url = service.url
            stack.enter_context(service)
        url = services[0].url
        if lb_port:
            stack.enter_context(nginx(work / "nginx", load_balancer([f"127.0.0.1:{s.port}" for s in services],
                                                                    lb_port), probe_path="/boot.ipxe"))
            url = f"http://127.0.0.1:{lb_port}"
        admin = _admin_token(services[0].data_dir, db_url)
        cpu_before = _cpu_seconds(services)
        started = time.monotonic()
        outcomes, stats = asyncio.run(run_fleet(url, admin, fleet_macs(machines), FleetOptions(image="fleet")))
        seconds = time.monotonic() - started
        cpu = _cpu_seconds(services) - cpu_before
        rss = _rss_mib(services)
    summary = stats.summary()
    requests = sum(row["requests"] for row in summary.values())
    failed = [o.result for o in outcomes.values() if o.result.startswith("error")]
    return {"seconds": round(seconds, 1), "requests": requests, "requests_per_second": round(requests / seconds),
            "failed_machines": len(failed), "first_failures": failed[:3], "endpoints": summary,
            "service_cpu_seconds": round(cpu, 1), "service_rss_mib": rss}


def _manifest(tarball: Path) -> Path:
    """A manifest for a blob of random bytes: the simulated agents download it, nothing unpacks it."""
    from metalstream.contracts.manifests import file_sha256, image_manifest, write_document
    manifest = image_manifest(
        name="fleet", tarball=tarball.name, sha256=file_sha256(tarball), size=tarball.stat().st_size,
        uncompressed_size=0, file_count=0, arch="x86_64",
        distribution={"family": "debian", "id": "debian", "version": "12", "codename": "bookworm"},
        kernels=[], bootloader={}, packages=[], kickstart_sha256="0" * 64, created=int(time.time()))
    return write_document(tarball.with_name("fleet.json"), manifest)


def _installer(work: Path) -> Path:
    """Stand-in installer files: the simulated machines only fetch the boot script that names them."""
    from metalstream.contracts.manifests import file_entry, installer_manifest, write_document
    (work / "vmlinuz").write_bytes(b"simulated kernel\n")
    (work / "initrd.img").write_bytes(b"simulated initramfs\n")
    manifest = installer_manifest(
        name="installer", kernel=file_entry(work / "vmlinuz"), initramfs=file_entry(work / "initrd.img"),
        kernel_version="6.1.0-simulated", created=int(time.time()), kickstart_sha256="0" * 64,
        initramfs_uncompressed_size=20, file_count=2, module_count=0, agent_sha256="0" * 64)
    return write_document(work / "installer.json", manifest)


def _db(db_url: str | None) -> list[str]:
    return ["--db", db_url] if db_url else []


def _admin_token(data_dir: Path, db_url: str | None) -> dict:
    token = subprocess.run([*METALSTREAM, "token", "create", "--data-dir", data_dir, *_db(db_url), "--scope", "admin"],
                           check=True, capture_output=True, text=True).stdout.strip()
    return {"Authorization": f"Bearer {token}"}


def _cpu_seconds(services) -> float:
    ticks = os.sysconf("SC_CLK_TCK")
    total = 0
    for service in services:
        for pid in service.pids():
            try:
                fields = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()
            except FileNotFoundError:
                continue
            total += int(fields[11]) + int(fields[12])  # utime + stime
    return total / ticks


def _rss_mib(services) -> int:
    total = 0
    for service in services:
        for pid in service.pids():
            try:
                status = Path(f"/proc/{pid}/status").read_text()
            except FileNotFoundError:
                continue
            total += next(int(line.split()[1]) for line in status.splitlines() if line.startswith("VmRSS:"))
    return round(total / 1024)


def agent_p99(result: dict) -> float | None:
    """The worst p99 of the agent's calls; None if no agent call was made."""
    figures = [result["endpoints"][kind]["p99_ms"] for kind in AGENT_CALLS if kind in result["endpoints"]]
    return max(figures) if figures else None


def _line(result: dict) -> str:
    agent = agent_p99(result)
    return (f"{result['requests']} requests in {result['seconds']} s ({result['requests_per_second']}/s), "
            f"agent p99 {agent} ms, {result['failed_machines']} failed machines, "
            f"service CPU {result['service_cpu_seconds']} s, RSS {result['service_rss_mib']} MiB"
            + (f"; first failure: {result['first_failures'][0]}" if result["first_failures"] else ""))
