"""Simulated machines for load and fail-over tests: each walks a real deployment through the service's
HTTP API exactly as a machine and its agent would, without a VM.

One simulated machine: the inventory creates its deployment (with an Idempotency-Key, and an `ssh_address`
when given), a machine with a BMC waits until the service has powered it on, the firmware fetches its boot
script (which mints the agent token), the agent fetches its plan, reports a phase every `event_interval`
seconds, downloads the image with Range requests while reporting progress at the same pace, checks the
sha256 and reports its result. Calls that fail for transport reasons (a replica
killed, a proxy answering 502/503/504) are retried with a bounded backoff, as a real agent would;
events carry a sequence number so a retried event is stored once. Every call's latency is recorded
per endpoint class. Loopback (or a test's own namespace) only: the caller gives the URL.
"""
from __future__ import annotations

import asyncio
import hashlib
import statistics
import time
from collections import defaultdict
from collections.abc import Callable
from dataclasses import dataclass, field

import httpx

RETRYABLE_STATUS = (502, 503, 504)
PHASES_BEFORE_STREAM = ("start", "disk", "partition", "mkfs")


@dataclass
class FleetOptions:
    image: str
    event_interval: float = 1.0
    range_requests: int = 2  # the image is fetched in this many Range requests
    attempts: int = 8  # per call, for transport failures
    backoff: float = 0.2
    timeout: float = 30.0
    power_wait: float = 120.0  # seconds a machine with a BMC waits for the service to power it on


@dataclass
class FleetStats:
    latencies: dict[str, list[float]] = field(default_factory=lambda: defaultdict(list))
    errors: dict[str, int] = field(default_factory=lambda: defaultdict(int))  # transport failures, retried
    failures: list[str] = field(default_factory=list)  # machines that could not finish

    def observe(self, kind: str, seconds: float) -> None:
        self.latencies[kind].append(seconds)

    def summary(self) -> dict:
        def percentile(values: list[float], fraction: float) -> float:
            ordered = sorted(values)
            return ordered[min(len(ordered) - 1, int(fraction * len(ordered)))]

        return {kind: {"requests": len(values), "p50_ms": round(1000 * statistics.median(values), 1),
                       "p99_ms": round(1000 * percentile(values, 0.99), 1), "max_ms": round(1000 * max(values), 1),
                       "transport_errors": self.errors.get(kind, 0)}
                for kind, values in sorted(self.latencies.items())}


class MachineFailed(Exception):
    """A simulated machine could not finish its deployment (the service refused it, or retries ran out)."""


class SimulatedMachine:
    def __init__(self, client: httpx.AsyncClient, mac: str, options: FleetOptions, stats: FleetStats,
                 admin_headers: dict, *, goes_silent: bool = False, ssh_address: str | None = None,
                 powered: Callable[[], bool] | None = None):
        self.client = client
        self.goes_silent = goes_silent
        self.ssh_address = ssh_address
        self.powered = powered  # for a machine with a BMC: True once the service has powered it on
        self.mac = mac
        self.options = options
        self.stats = stats
        self.admin_headers = admin_headers
        self.agent_headers: dict = {}
        self.seq = 0
        self.deployment_id: str | None = None

    async def call(self, kind: str, method: str, url: str, **kwargs) -> httpx.Response:
        """One HTTP call, retried on transport failures; any other answer is returned as it is."""
        for attempt in range(self.options.attempts):
            started = time.perf_counter()
            try:
                response = await self.client.request(method, url, timeout=self.options.timeout, **kwargs)
            except httpx.TransportError:
                response = None
            self.stats.observe(kind, time.perf_counter() - started)
            if response is not None and response.status_code not in RETRYABLE_STATUS:
                return response
            self.stats.errors[kind] += 1
            await asyncio.sleep(self.options.backoff * 2 ** min(attempt, 4))
        raise MachineFailed(f"{self.mac}: {method} {url}: no answer after {self.options.attempts} attempts")

    async def expect(self, kind: str, method: str, url: str, ok: tuple[int, ...] = (200, 201), **kwargs):
        response = await self.call(kind, method, url, **kwargs)
        if response.status_code not in ok:
            raise MachineFailed(f"{self.mac}: {method} {url} answered {response.status_code}: {response.text[:200]}")
        return response

    async def event(self, phase: str, message: str, done: int | None = None, total: int | None = None,
                    *, paced: bool = True) -> None:
        """Report like the agent: one event per `event_interval` (the stream's progress paces itself)."""
        if paced:
            await asyncio.sleep(self.options.event_interval)
        self.seq += 1
        body = {"phase": phase, "message": message, "bytes_done": done, "bytes_total": total,
                "time": time.time(), "seq": self.seq}
        await self.expect("agent_event", "POST", "/api/v1/agent/events", json=body, headers=self.agent_headers)

    async def run(self) -> str:
        request = {"mac": self.mac, "image": self.options.image}
        if self.ssh_address:
            request["ssh_address"] = self.ssh_address
        created = await self.expect("api_create", "POST", "/api/v1/deployments", json=request,
                                    headers={**self.admin_headers, "Idempotency-Key": f"fleet-{self.mac}"})
        self.deployment_id = created.json()["id"]
        if self.powered is not None:
            await self.wait_for_power()
        script = (await self.expect("boot_script", "GET", f"/boot/{self.mac}.ipxe")).text
        if "metalstream.token=" not in script:
            raise MachineFailed(f"{self.mac}: the boot script holds no agent token")
        token = script.split("metalstream.token=", 1)[1].split()[0]
        self.agent_headers = {"Authorization": f"Bearer {token}"}
        plan = (await self.expect("agent_plan", "GET", "/api/v1/agent/plan", headers=self.agent_headers)).json()
        if self.goes_silent:
            return "silent"
        for phase in PHASES_BEFORE_STREAM:
            await self.event(phase, f"simulated {phase}")
        await self.download(plan["image"])
        await self.event("verify", "sha256 matches")
        await self.event("configure", "simulated configure")
        await self.event("bootloader", "simulated bootloader")
        result = {"success": True, "phase": "finish", "error": None, "log": f"simulated agent {self.mac}\n",
                  "root_uuid": "0f3c-77aa", "time": time.time()}
        answer = await self.call("agent_result", "POST", "/api/v1/agent/result", json=result,
                                 headers=self.agent_headers)
        if answer.status_code == 200:
            return answer.json()["state"]
        if answer.status_code in (401, 409):  # a retry after the result was stored on a replica that died
            return "installed-before"
        raise MachineFailed(f"{self.mac}: result answered {answer.status_code}: {answer.text[:200]}")

    async def wait_for_power(self) -> None:
        """A machine with a BMC network-boots only once the service has powered it on."""
        deadline = time.monotonic() + self.options.power_wait
        while not self.powered():
            if time.monotonic() > deadline:
                raise MachineFailed(f"{self.mac}: not powered on within {self.options.power_wait:g} s")
            await asyncio.sleep(0.2)

    async def download(self, image: dict) -> None:
        size, url = image["size"], image["url"]
        digest, done = hashlib.sha256(), 0
        step = -(-size // self.options.range_requests)
        next_report = time.monotonic()
        while done < size:
            end = min(size, done + step) - 1
            response = await self.expect("image_range", "GET", url, ok=(206,),
                                         headers={"Range": f"bytes={done}-{end}"})
            digest.update(response.content)
            done += len(response.content)
            if time.monotonic() >= next_report or done >= size:
                await self.event("stream", "streaming image", done, size, paced=False)
                next_report = time.monotonic() + self.options.event_interval
            await asyncio.sleep(self.options.event_interval / self.options.range_requests)
        if digest.hexdigest() != image["sha256"]:
            raise MachineFailed(f"{self.mac}: image sha256 {digest.hexdigest()} is not the plan's {image['sha256']}")


def fleet_macs(count: int, prefix: str = "52:54:01") -> list[str]:
    return [f"{prefix}:{n >> 16 & 0xff:02x}:{n >> 8 & 0xff:02x}:{n & 0xff:02x}" for n in range(count)]


async def watch_api(client: httpx.AsyncClient, admin_headers: dict, stats: FleetStats, stop: asyncio.Event,
                    interval: float = 1.0) -> None:
    """An inventory system polling the deployment list while the fleet deploys."""
    while not stop.is_set():
        started = time.perf_counter()
        try:
            await client.get("/api/v1/deployments", headers=admin_headers, timeout=30)
        except httpx.TransportError:
            stats.errors["api_list"] += 1
        stats.observe("api_list", time.perf_counter() - started)
        try:
            await asyncio.wait_for(stop.wait(), interval)
        except asyncio.TimeoutError:
            pass


@dataclass(frozen=True)
class MachineOutcome:
    result: str  # the state the result call answered, "installed-before", "silent", or "error: ..."
    deployment_id: str | None
    events_sent: int  # the highest event `seq` the service acknowledged


async def run_fleet(base_url: str, admin_headers: dict, macs: list[str], options: FleetOptions, *,
                    silent: frozenset[str] = frozenset(), watchers: int = 2, concurrency: int | None = None,
                    verify=True, ssh_addresses: dict[str, str] | None = None,
                    powered: dict[str, Callable[[], bool]] | None = None
                    ) -> tuple[dict[str, MachineOutcome], FleetStats]:
    """Deploy every MAC at once; the `silent` ones stop after fetching their plan (a machine that died),
    for the service's silence timeout to fail. `ssh_addresses` ({mac: host:port}) go into the deployments;
    the MACs in `powered` ({mac: is it on?}) wait for their power-on before booting.
    Returns ({mac: outcome}, stats)."""
    stats = FleetStats()
    limits = httpx.Limits(max_connections=concurrency or len(macs) + watchers, max_keepalive_connections=64)
    async with httpx.AsyncClient(base_url=base_url, limits=limits, verify=verify) as client:
        stop = asyncio.Event()
        watching = [asyncio.create_task(watch_api(client, admin_headers, stats, stop)) for _ in range(watchers)]
        machines = [SimulatedMachine(client, mac, options, stats, admin_headers, goes_silent=mac in silent,
                                     ssh_address=(ssh_addresses or {}).get(mac), powered=(powered or {}).get(mac))
                    for mac in macs]
        outcomes = await asyncio.gather(*(machine.run() for machine in machines), return_exceptions=True)
        stop.set()
        await asyncio.gather(*watching)
    results = {}
    for machine, outcome in zip(machines, outcomes):
        if isinstance(outcome, BaseException):
            stats.failures.append(str(outcome))
            outcome = f"error: {outcome}"
        results[machine.mac] = MachineOutcome(outcome, machine.deployment_id, machine.seq)
    return results, stats
