"""The agent's inspection mode (`metalstream.mode=inspect`): collect this machine's hardware facts, post them to
the service, power off. Also `send_facts`, which a deploying agent calls once with its deployment token so the
service refreshes the facts of the deployment's machine.

Nothing here touches a disk's contents: inspection only reads /proc, /sys and udev's database (deployer.inspect).
"""
from __future__ import annotations

import logging
import os
import time
from pathlib import Path
from typing import Callable, TextIO

import requests

from metalstream import proc
from metalstream.errors import MetalstreamError, OperationFailed

from . import inspect
from .retry import answer_with_backoff
from .tls import Verify, describe, require_https, trust

log = logging.getLogger("metalstream.agent")

INSPECTION_PATH = "/api/v1/agent/inspection"


def post_facts(session: requests.Session, server: str, facts: dict, *, wait: float, verify: Verify = True,
               sleep: Callable[[float], None] = time.sleep) -> dict:
    """POST {"facts": …}; connection errors, 5xx and 429 are retried with backoff until `wait` seconds passed.
    A refusal (4xx) or an unverifiable certificate is final."""
    url = server.rstrip("/") + INSPECTION_PATH
    response = answer_with_backoff(lambda: session.post(url, json={"facts": facts}, timeout=30, verify=verify),
                                   url, "post the facts to", wait=wait, verify=verify, sleep=sleep)
    if response.status_code != 200:
        raise OperationFailed(f"POST {url}: HTTP {response.status_code}: {response.text[:300].strip()}")
    try:
        return response.json()
    except ValueError:
        return {}


def summary(facts: dict) -> str:
    """One console line: what was found."""
    cpus, disks, nics = facts.get("cpus") or {}, facts.get("disks") or [], facts.get("nics") or []
    disk_text = ", ".join(f"{d['name']} {d['size_bytes'] / (1 << 30):.1f} GiB" + (f" serial={d['serial']}"
                                                                                  if d.get("serial") else "")
                          for d in disks) or "none"
    return (f"{cpus.get('count')} CPU(s) ({cpus.get('model')}), {facts.get('memory_mib')} MiB, "
            f"{facts.get('firmware')}; disks: {disk_text}; NICs: "
            + (", ".join(f"{n['name']} {n['mac']}" for n in nics) or "none"))


def poweroff_machine() -> None:
    """Power the machine off: through systemd when it runs, else forcibly (the installer has no init system)."""
    os.sync()
    if Path("/run/systemd/system").is_dir():
        proc.run(["systemctl", "poweroff"], timeout=60)
        return
    try:
        proc.run(["poweroff", "-f"], timeout=60)
    except MetalstreamError:
        Path("/proc/sysrq-trigger").write_text("o")


def run_inspection(server: str, token: str, *, out: TextIO, ca: str | None = None, wait: float = 300.0,
                   poweroff: Callable[[], None] | None = poweroff_machine,
                   collect: Callable[[], dict] = inspect.collect) -> int:
    """Inspect, report, power off (`poweroff` None: stay up). Exit code 0 reported, 1 the service refused or
    could not be reached (the machine stays up then: the console says why)."""
    verify = trust(ca)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    log.info("metalstream agent: inspection for %s (https verified with %s)", server, describe(verify))
    try:
        require_https(server, "metalstream.server", ca)
        facts = collect()
        out.write(f"metalstream-agent: inspected: {summary(facts)}\n")
        out.flush()
        answer = post_facts(session, server, facts, wait=wait, verify=verify)
    except MetalstreamError as exc:
        out.write(f"metalstream-agent: inspection not reported: {exc}\n")
        out.flush()
        return 1
    out.write(f"metalstream-agent: facts reported (machine {(answer.get('machine') or {}).get('name', '?')})"
              + ("; powering off\n" if poweroff else "\n"))
    out.flush()
    if poweroff is not None:
        poweroff()
    return 0


def send_facts(session: requests.Session, server: str, *, verify: Verify,
               collect: Callable[[], dict] = inspect.collect) -> None:
    """A deploying agent's best-effort facts refresh: a failure is logged, never fails the install."""
    try:
        post_facts(session, server, collect(), wait=30.0, verify=verify)
        log.info("hardware facts sent to the service")
    except Exception as exc:  # an older service (404), a bug in reading /sys: the install goes on
        log.warning("hardware facts not sent: %s", exc)
