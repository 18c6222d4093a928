"""Every BMC call goes through here: a timeout per call, bounded retries with exponential backoff for
transient failures only (never for refused credentials: retrying those locks accounts out), and at
most N calls at once per BMC address in this process.
"""
from __future__ import annotations

import logging
import threading
import time
from collections.abc import Callable
from typing import TypeVar

from .. import metrics
from ..config import ServiceConfig
from ..errors import Conflict
from .base import BOOT_DEVICES, BmcAccess, PowerDriver, PowerError

log = logging.getLogger("metalstream.pxe.power")

T = TypeVar("T")
BACKOFF_BASE = 1.0  # seconds before the second attempt; doubled before each further one
BACKOFF_MAX = 30.0

_slots_lock = threading.Lock()
_slots: dict[tuple[str, int], threading.BoundedSemaphore] = {}


class NoPowerControl(Conflict):
    """The machine's power is switched by hand (driver `manual`), or it has no BMC."""


def bmc_slots(address: str, concurrency: int) -> threading.BoundedSemaphore:
    """The semaphore bounding concurrent calls to one BMC (one per address in this process)."""
    key = (address.lower(), concurrency)
    with _slots_lock:
        slot = _slots.get(key)
        if slot is None:
            slot = _slots[key] = threading.BoundedSemaphore(concurrency)
        return slot


def backoff_delays(attempts: int, base: float = BACKOFF_BASE, cap: float = BACKOFF_MAX) -> list[float]:
    """Seconds to wait before attempts 2..N."""
    return [min(cap, base * 2 ** i) for i in range(attempts - 1)]


class GuardedDriver:
    """A driver whose every call is bounded, retried when that may help, and throttled per BMC."""

    def __init__(self, driver: PowerDriver, address: str, *, attempts: int, concurrency: int,
                 backoff: float | None = None, sleep: Callable[[float], None] = time.sleep,
                 driver_name: str = "unknown"):
        self.driver = driver
        self.driver_name = driver_name  # the metrics' `driver` label: redfish, ipmi
        self.address = address
        self.attempts = max(1, attempts)
        self.slots = bmc_slots(address, max(1, concurrency))
        self.backoff = BACKOFF_BASE if backoff is None else backoff
        self.sleep = sleep

    def status(self) -> str:
        return self._call("status", "status", self.driver.status)

    def power_on(self) -> None:
        self._call("power on", "power_on", self.driver.power_on)

    def power_off(self, graceful_timeout: float) -> None:
        self._call("power off", "power_off", lambda: self.driver.power_off(graceful_timeout))

    def reset(self) -> None:
        self._call("reset", "reset", self.driver.reset)

    def set_boot_device(self, device: str, once: bool) -> None:
        if device not in BOOT_DEVICES:
            raise ValueError(f"boot device must be one of {BOOT_DEVICES}, not {device!r}")
        self._call(f"boot device {device}", "boot_device", lambda: self.driver.set_boot_device(device, once))

    def _call(self, what: str, operation: str, work: Callable[[], T]) -> T:
        delays = backoff_delays(self.attempts, self.backoff)
        for attempt in range(1, self.attempts + 1):
            try:
                with self.slots:
                    return self._timed(operation, work)
            except PowerError as exc:
                if not exc.transient or attempt == self.attempts:
                    raise exc.after(attempt) from None
                delay = delays[attempt - 1]
                log.warning("BMC %s: %s failed (attempt %d of %d, retrying in %g s): %s", self.address, what,
                            attempt, self.attempts, delay, exc.message)
            self.sleep(delay)  # outside the slot: a waiting retry does not hold up other calls to this BMC
        raise AssertionError("every attempt returns or raises")

    def _timed(self, operation: str, work: Callable[[], T]) -> T:
        started = time.monotonic()
        try:
            result = work()
        except PowerError as exc:
            metrics.bmc_call(self.driver_name, operation, time.monotonic() - started, exc.kind)
            raise
        metrics.bmc_call(self.driver_name, operation, time.monotonic() - started, None)
        return result


def make_driver(access: BmcAccess, timeout: float) -> PowerDriver:
    if access.driver == "redfish":
        from .redfish import RedfishDriver
        return RedfishDriver(access, timeout=timeout)
    if access.driver == "ipmi":
        from .ipmi import IpmiDriver
        return IpmiDriver(access, timeout=timeout)
    raise NoPowerControl(f"the machine's power is switched by hand (BMC driver {access.driver!r})",
                         details={"field": "driver"})


def driver_for(access: BmcAccess | dict | None, config: ServiceConfig, **guard_options) -> GuardedDriver:
    """The guarded driver for a machine's BMC (`machines.bmc_access()`'s answer); NoPowerControl for none."""
    if access is None:
        raise NoPowerControl("the machine has no BMC to control its power (driver manual)",
                             details={"field": "driver"})
    if isinstance(access, dict):
        access = BmcAccess.from_dict(access)
    return GuardedDriver(make_driver(access, config.bmc_timeout), access.address, attempts=config.bmc_retries,
                         concurrency=config.bmc_concurrency, driver_name=access.driver, **guard_options)
