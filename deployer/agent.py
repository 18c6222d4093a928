"""The deployer agent: what the installer environment runs after boot.

Fetch the plan from the service (retrying while the network comes up), run the one install code
path with progress going to the console and the service, post the result with the whole log, then
reboot into the installed system. A failed install is reported and the machine stays in the
installer (nothing rebooted into a half-written disk; the operator can look at the console).
"""
from __future__ import annotations

import logging
import os
import shlex
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Callable, TextIO

import requests

from metalstream import proc
from metalstream.contracts.efivars import EFIVARS
from metalstream.errors import BadInput, MetalstreamError, OperationFailed

from .agentlog import AgentLog
from .firmware import read_secure_boot
from .report import ConsoleReporter, HttpReporter, TeeReporter
from .tls import Verify, check_source_trusted, describe, refusal, require_https, trust, untrusted_certificate

log = logging.getLogger("metalstream.agent")

PLAN_PATH = "/api/v1/agent/plan"
EVENTS_PATH = "/api/v1/agent/events"
RESULT_PATH = "/api/v1/agent/result"


@dataclass(frozen=True)
class AgentOptions:
    server: str
    token: str
    reboot: bool = True
    target: str | None = None  # None: the disk the plan's hints select
    plan_wait: float = 300.0  # seconds to keep trying to fetch the plan (network coming up)
    ca: str | None = None  # pinned CA file (https only); None: the system trust store for https URLs


def read_kernel_cmdline(path: str | Path = "/proc/cmdline") -> dict[str, str]:
    """`metalstream.server=` and `metalstream.token=` (and any other `metalstream.*`) from the cmdline."""
    try:
        text = Path(path).read_text()
    except OSError:
        return {}
    try:
        words = shlex.split(text)
    except ValueError:
        words = text.split()
    found = {}
    for word in words:
        key, sep, value = word.partition("=")
        if sep and key.startswith("metalstream."):
            found[key.removeprefix("metalstream.")] = value
    return found


def fetch_plan(session: requests.Session, server: str, *, wait: float,
               sleep: Callable[[float], None] = time.sleep, verify: Verify = True) -> dict:
    """GET the plan; connection errors and 5xx are retried with backoff until `wait` seconds passed.
    A certificate that does not verify is final: TlsVerificationFailed at once."""
    url = server.rstrip("/") + PLAN_PATH
    started = time.monotonic()
    delay = 1.0
    attempt = 0
    while True:
        attempt += 1
        problem: str
        try:
            response = session.get(url, timeout=15, verify=verify)
        except requests.RequestException as exc:
            if (cause := untrusted_certificate(exc)) is not None:
                raise refusal(url, cause, verify) from None
            problem = f"{type(exc).__name__}: {exc}"
        else:
            if response.status_code == 200:
                try:
                    return response.json()
                except ValueError:
                    raise BadInput("the service sent a plan that is not JSON", location=url) from None
            if response.status_code in (401, 403):
                raise OperationFailed(f"the service rejected the agent token (HTTP {response.status_code} "
                                      f"from {url}): the deployment was cancelled, finished or never existed")
            if response.status_code < 500 and response.status_code != 429:
                raise OperationFailed(f"GET {url}: HTTP {response.status_code}: {response.text[:200].strip()}")
            problem = f"HTTP {response.status_code}"
        elapsed = time.monotonic() - started
        if elapsed + delay > wait:
            raise OperationFailed(f"could not fetch the plan from {url} in {elapsed:.0f} s "
                                  f"({attempt} attempts): {problem}")
        log.warning("fetching the plan from %s failed (%s); retrying in %.0f s", url, problem, delay)
        sleep(delay)
        delay = min(delay * 2, 15.0)


def reboot_machine() -> None:
    """Reboot into the installed system: via systemd when it runs, else forcibly."""
    os.sync()
    if Path("/run/systemd/system").is_dir():
        proc.run(["systemctl", "reboot"], timeout=60)
        return
    try:
        proc.run(["reboot", "-f"], timeout=60)
    except MetalstreamError:
        Path("/proc/sysrq-trigger").write_text("b")


def run_agent(options: AgentOptions, *, out: TextIO, reboot: Callable[[], None] = reboot_machine,
              efivars: str | Path = EFIVARS) -> int:
    """The agent from plan to reboot; returns the process exit code (0 installed, 1 failed, 2 bad plan).
    `efivars` is where the firmware's variables are (efivarfs): how the installer booted is reported."""
    from metalstream.contracts.plan import Plan

    verify = trust(options.ca)
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {options.token}"
    server = options.server.rstrip("/")
    with AgentLog() as agent_log:
        log.info("metalstream agent starting; server %s (https verified with %s)", server, describe(verify))
        secure_boot = read_secure_boot(efivars)
        log.info("installer: %s", secure_boot.text)
        service = HttpReporter(server + EVENTS_PATH, server + RESULT_PATH, options.token,
                               session=session, log_source=agent_log.text, verify=verify,
                               secure_boot=secure_boot.enabled)
        reporter = TeeReporter(ConsoleReporter(out), service)
        try:
            require_https(server, "metalstream.server", options.ca)
            data = fetch_plan(session, server, wait=options.plan_wait, verify=verify)
            plan = Plan.from_json(data)
            _check_plan_sources(plan, options.ca, verify)
        except MetalstreamError as exc:
            log.error("no usable plan: %s", exc)
            # Still tell the service why (it may be reachable and the plan merely invalid). A service whose
            # certificate did not verify gets nothing: that post is refused by the same check.
            reporter.result(success=False, phase="start", error=str(exc))
            out.write(f"metalstream-agent: refusing to install ({exc}); nothing was written to any disk\n")
            out.flush()
            return exc.exit_code
        report_urls = plan.report or {}
        service.events_url = report_urls.get("events_url") or service.events_url
        service.result_url = report_urls.get("result_url") or service.result_url
        log.info("plan for deployment %s: image %s", plan.deployment_id, plan.image.name)
        code = _install(plan, options, reporter, service, verify)
    if code == 0 and options.reboot:
        out.write("metalstream-agent: installed; rebooting\n")
        out.flush()
        reboot()
    elif code != 0:
        out.write("metalstream-agent: install FAILED; staying in the installer (not rebooting into a "
                  "half-written disk)\n")
        out.flush()
    return code


def _check_plan_sources(plan, ca: str | None, verify: Verify) -> None:
    """Before any disk is touched: with a pinned CA every URL in the plan is https, and the image's
    server proves its identity (it may be another host than the service)."""
    report = plan.report or {}
    image_urls = [(f"plan.image.urls[{n}]", url) for n, url in enumerate(plan.image.urls)]
    for what, url in (*image_urls, ("plan.report.events_url", report.get("events_url")),
                      ("plan.report.result_url", report.get("result_url"))):
        if url:
            require_https(url, what, ca)
    check_source_trusted(plan.image.url, verify)


def _install(plan, options: AgentOptions, reporter: TeeReporter, service: HttpReporter, verify: Verify) -> int:
    from .install import run_install

    try:
        outcome = run_install(plan, options.target, reporter, tls_verify=verify)
    except MetalstreamError as exc:
        log.error("install failed in phase %s: %s", service.phase or "start", exc)
        if not service.result_sent:
            reporter.result(success=False, phase=service.phase or "start", error=str(exc))
        return exc.exit_code
    except Exception as exc:  # a bug: still report it, with the log, rather than go silent
        log.exception("install crashed in phase %s", service.phase or "start")
        if not service.result_sent:
            reporter.result(success=False, phase=service.phase or "start",
                            error=f"internal error: {type(exc).__name__}: {exc}")
        return 1
    if not service.result_sent:
        reporter.result(success=True, phase="finish", root_uuid=getattr(outcome, "root_uuid", None))
    return 0
