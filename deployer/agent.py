"""The deployer agent: what the installer environment runs after boot.

Fetch the plan from the service (retrying while the network comes up), run the one install code
path with progress going to the console and the service, post the result with the whole log, then
reboot into the installed system: through the firmware, or with kexec straight into the installed kernel
when the plan asks for it and the installer can (deployer.kexec; an event says which method and why). A failed install is reported and the machine stays in the
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

from . import inspect, kexec
from .agentlog import AgentLog
from .deferred import Resolver
from .firmware import read_secure_boot
from .include_service import service_resolver
from .inspect_agent import send_facts
from .report import ConsoleReporter, HttpReporter, TeeReporter
from .retry import answer_with_backoff
from .tls import Verify, check_source_trusted, describe, require_https, trust

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
    reboot_method: str | None = None  # firmware | kexec; None: what the plan says (absent there: firmware)


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
    """GET the plan; connection errors, 5xx and 429 are retried with backoff until `wait` seconds passed.
    A certificate that does not verify is final: TlsVerificationFailed at once."""
    url = server.rstrip("/") + PLAN_PATH
    response = answer_with_backoff(lambda: session.get(url, timeout=15, verify=verify), url, "fetch the plan from",
                                   wait=wait, verify=verify, sleep=sleep)
    if response.status_code in (401, 403):
        raise OperationFailed(f"the service rejected the agent token (HTTP {response.status_code} "
                              f"from {url}): the deployment was cancelled, finished or never existed")
    if response.status_code != 200:
        raise OperationFailed(f"GET {url}: HTTP {response.status_code}: {response.text[:200].strip()}")
    try:
        return response.json()
    except ValueError:
        raise BadInput("the service sent a plan that is not JSON", location=url) from None


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


@dataclass(frozen=True)
class KexecOps:
    """The kexec steps that touch the running kernel (a boundary the tests replace): why kexec cannot work
    here (None: it can), load an entry from the mounted /boot filesystem, jump into it."""

    blocker: Callable[[], str | None] = kexec.system_blocker
    load: Callable[[Path, kexec.BootEntry], str] = kexec.load
    execute: Callable[[], None] = kexec.execute
    unload: Callable[[], None] = kexec.unload


def run_agent(options: AgentOptions, *, out: TextIO, reboot: Callable[[], None] = reboot_machine,
              efivars: str | Path = EFIVARS, kexec_ops: KexecOps = KexecOps(),
              collect_facts: Callable[[], dict] | None = inspect.collect) -> int:
    """The agent from plan to reboot; returns the process exit code (0 installed, 1 failed, 2 bad plan).
    `efivars` is where the firmware's variables are (efivarfs): how the installer booted is reported.
    `collect_facts` reads the hardware facts sent to the service once the plan is in (None: none sent)."""
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
        if collect_facts is not None:  # the service refreshes the machine's hardware facts on every deployment
            send_facts(session, server, verify=verify, collect=collect_facts)
        held = _HeldResult(reporter)
        code, outcome = _install(plan, options, held, service, verify,
                                 service_resolver(session, server, verify=verify))
        method = kexec.FIRMWARE
        if code == 0:
            try:
                method = _choose_reboot(plan, outcome, options, held, kexec_ops)
            except Exception:  # a bug there must not keep the result from the service: the firmware reboot is safe
                log.exception("choosing the reboot method failed; rebooting through the firmware")
            finally:
                held.release()
    if code == 0 and options.reboot:
        out.write(f"metalstream-agent: installed; rebooting ({method})\n")
        out.flush()
        if method == kexec.KEXEC:
            try:
                kexec_ops.execute()
                return code  # systemd takes the machine down into the loaded kernel (kexec --exec never returns)
            except MetalstreamError as exc:  # nothing is mounted any more: the firmware reboot is as safe
                log.error("kexec --exec failed (%s); rebooting through the firmware", exc)
                out.write(f"metalstream-agent: kexec failed ({exc}); rebooting through the firmware\n")
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


class _HeldResult:
    """Passes events on and holds a successful result until `release`: the service takes no event after the
    result (the agent token ends with it), and the reboot event must still reach it. A failure goes at once."""

    def __init__(self, reporter: TeeReporter):
        self.reporter = reporter
        self.held: dict | None = None

    def event(self, phase: str, message: str, bytes_done: int | None = None, bytes_total: int | None = None) -> None:
        self.reporter.event(phase, message, bytes_done, bytes_total)

    def result(self, *, success: bool, phase: str, error: str | None = None, root_uuid: str | None = None,
               log: str | None = None) -> None:
        if success and self.held is None:
            self.held = {"success": success, "phase": phase, "error": error, "root_uuid": root_uuid, "log": log}
        elif not success:
            self.reporter.result(success=success, phase=phase, error=error, root_uuid=root_uuid, log=log)

    def release(self) -> None:
        if self.held is not None:
            self.reporter.result(**self.held)
            self.held = None


def _install(plan, options: AgentOptions, reporter: _HeldResult, service: HttpReporter, verify: Verify,
             resolve_includes: Resolver):
    """(exit code, the install's result or None); the service merges deferred %includes (`resolve_includes`)."""
    from .install import run_install

    try:
        outcome = run_install(plan, options.target, reporter, tls_verify=verify, resolve_includes=resolve_includes)
    except MetalstreamError as exc:
        log.error("install failed in phase %s: %s", service.phase or "start", exc)
        if not service.result_sent:
            reporter.result(success=False, phase=service.phase or "start", error=str(exc))
        return exc.exit_code, None
    except Exception as exc:  # a bug: still report it, with the log, rather than go silent
        log.exception("install crashed in phase %s", service.phase or "start")
        if not service.result_sent:
            reporter.result(success=False, phase=service.phase or "start",
                            error=f"internal error: {type(exc).__name__}: {exc}")
        return 1, None
    if reporter.held is None and not service.result_sent:
        reporter.result(success=True, phase="finish", root_uuid=getattr(outcome, "root_uuid", None))
    return 0, outcome


def _choose_reboot(plan, outcome, options: AgentOptions, reporter: _HeldResult, ops: KexecOps) -> str:
    """The reboot method, with the installed kernel loaded when it is kexec; reported as a `finish` event."""
    wanted = options.reboot_method or plan.reboot_method
    if not options.reboot:
        reporter.event("finish", "reboot: none (--no-reboot)")
        return kexec.FIRMWARE
    if wanted != kexec.KEXEC:
        choice = kexec.RebootChoice(kexec.FIRMWARE, "as the plan asks")
    else:
        choice = _load_kexec(plan, outcome, ops)
    if wanted == kexec.KEXEC and choice.method != kexec.KEXEC:
        log.warning("kexec not possible (%s): falling back to a firmware reboot", choice.reason)
        message = f"reboot: firmware (kexec not possible: {choice.reason})"
    else:
        log.info("reboot method %s: %s", choice.method, choice.reason)
        message = f"reboot: {choice.method} ({choice.reason})"
    reporter.event("finish", message)
    return choice.method


def _load_kexec(plan, outcome, ops: KexecOps) -> kexec.RebootChoice:
    """Load the kernel the installed grub boots by default from the target's /boot (mounted read-only and
    unmounted again before this returns); a firmware reboot with the reason when any step is not possible."""
    from . import blockdev
    from .bootloader import boot_fs

    blocked = ops.blocker()
    if blocked is not None:
        return kexec.RebootChoice(kexec.FIRMWARE, blocked)
    layout, target = getattr(outcome, "layout", None), getattr(outcome, "target", None)
    if layout is None or target is None:
        return kexec.RebootChoice(kexec.FIRMWARE, "the install did not say which disk it wrote")
    if getattr(outcome, "stacked", False):
        return kexec.RebootChoice(kexec.FIRMWARE, "/boot and / sit on RAID, LVM, LUKS, btrfs or several disks: "
                                                  "the firmware boots them through grub")
    boot = boot_fs(layout)
    part = next(p for p in layout.partitions if p.fs_uuid == boot.uuid)
    kernel_args = " ".join(a for a in (plan.kernel_args, plan.storage.bootloader.append
                                       if plan.storage and plan.storage.bootloader else "") if a)
    try:
        with blockdev.partition_devices(target, layout) as devices, \
                kexec.mounted_readonly(devices[part.number], part.fstype) as mounted:
            boot_dir = mounted / boot.prefix.lstrip("/")
            grub_cfg = boot_dir / kexec.GRUB_CFG
            entry = kexec.choose_entry(grub_cfg.read_text() if grub_cfg.is_file() else None,
                                       sorted(p.name for p in boot_dir.iterdir()) if boot_dir.is_dir() else [],
                                       boot.prefix, root_uuid=outcome.root_uuid, kernel_args=kernel_args)
            if entry is None:
                return kexec.RebootChoice(kexec.FIRMWARE, "no kernel found on the installed /boot")
            how = ops.load(mounted, entry)
    except (MetalstreamError, OSError) as exc:
        ops.unload()
        return kexec.RebootChoice(kexec.FIRMWARE, f"loading the installed kernel failed: {exc}")
    os.sync()
    initrd = f" + {entry.initrd}" if entry.initrd else ""
    return kexec.RebootChoice(kexec.KEXEC, f"{entry.kernel}{initrd} from {entry.source} ({how}); "
                                           f"command line: {entry.cmdline}")
