"""Redfish power control through sushy (OpenStack's Redfish client).

Each call opens its own sushy session (the BMC's session service, else HTTP basic auth), does its
work and lets the session go; sushy's own retries are cut to one attempt (pxe.power.guard retries,
with backoff). Every sushy error becomes a PowerError carrying the BMC's message.
"""
from __future__ import annotations

import logging
import time
from collections.abc import Callable
from typing import TypeVar

import requests
import sushy
from sushy import exceptions as sushy_errors

from .base import AUTH, BMC_ERROR, TIMEOUT, UNREACHABLE, BmcAccess, PowerError

log = logging.getLogger("metalstream.pxe.power")

T = TypeVar("T")
POLL_INTERVAL = 1.0  # seconds between power-state reads while waiting for a graceful shutdown

_OFF_STATES = (sushy.PowerState.OFF, sushy.PowerState.POWERING_OFF)
_TARGETS = {"network": sushy.BootSource.PXE, "disk": sushy.BootSource.HDD}


def base_url(address: str) -> str:
    """The BMC's URL: the address as given when it has a scheme, else https://ADDRESS."""
    return address if "://" in address else f"https://{address}"


def system_path(system_id: str | None) -> str | None:
    """The system's resource path: as given when it is one, else under /redfish/v1/Systems/; None: the only one."""
    if not system_id:
        return None
    return system_id if system_id.startswith("/") else f"/redfish/v1/Systems/{system_id}"


class RedfishDriver:
    def __init__(self, access: BmcAccess, *, timeout: float):
        self.access = access
        self.timeout = timeout

    def status(self) -> str:
        state = self._with_system(lambda system: system.power_state)
        if state is None:
            raise PowerError(BMC_ERROR, f"Redfish {self.access.address}: the system reports no PowerState",
                             address=self.access.address, transient=False)
        return "off" if state in _OFF_STATES else "on"

    def power_on(self) -> None:
        self._with_system(lambda system: system.reset_system(
            _first_allowed(system, sushy.ResetType.ON, sushy.ResetType.FORCE_ON)))

    def power_off(self, graceful_timeout: float) -> None:
        def shut_down(system) -> None:
            if system.power_state in _OFF_STATES:
                return
            allowed = system.get_allowed_reset_system_values()
            if sushy.ResetType.GRACEFUL_SHUTDOWN in allowed and graceful_timeout > 0:
                system.reset_system(sushy.ResetType.GRACEFUL_SHUTDOWN)
                deadline = time.monotonic() + graceful_timeout
                while time.monotonic() < deadline:
                    time.sleep(POLL_INTERVAL)
                    system.refresh()
                    if system.power_state == sushy.PowerState.OFF:
                        return
                log.info("Redfish %s: still on %g s after a graceful shutdown; forcing it off",
                         self.access.address, graceful_timeout)
            system.reset_system(sushy.ResetType.FORCE_OFF)
        self._with_system(shut_down)

    def reset(self) -> None:
        self._with_system(lambda system: system.reset_system(
            _first_allowed(system, sushy.ResetType.FORCE_RESTART, sushy.ResetType.POWER_CYCLE)))

    def set_boot_device(self, device: str, once: bool) -> None:
        enabled = sushy.BootSourceOverrideEnabled.ONCE if once else sushy.BootSourceOverrideEnabled.CONTINUOUS
        self._with_system(lambda system: system.set_system_boot_options(target=_TARGETS[device], enabled=enabled))

    def _with_system(self, work: Callable[..., T]) -> T:
        access = self.access
        try:
            # server_side_retries=1: one attempt per request (sushy reads 0 as its default of 3)
            root = sushy.Sushy(base_url(access.address), username=access.username, password=access.password,
                               verify=access.verify_tls, read_timeout=self.timeout, connect_timeout=self.timeout,
                               server_side_retries=1, server_side_retries_delay=0)
            system = root.get_system(system_path(access.system_id))
            return work(system)
        except sushy_errors.SushyError as exc:
            raise power_error(access.address, exc) from None


def _first_allowed(system, *choices: sushy.ResetType) -> sushy.ResetType:
    allowed = system.get_allowed_reset_system_values()
    for choice in choices:
        if choice in allowed:
            return choice
    return choices[0]  # sushy refuses it with the allowed values named


def power_error(address: str, exc: sushy_errors.SushyError) -> PowerError:
    """The PowerError for a sushy error: its kind, and the BMC's own message."""
    where = f"Redfish {address}"
    if isinstance(exc, sushy_errors.HTTPError):
        said = exc.detail or (exc.code if exc.body else None) or "no error message in the answer"
        text = f"{where}: HTTP {exc.status_code}: {said}"
        if isinstance(exc, sushy_errors.AccessError):
            return PowerError(AUTH, text, address=address)
        return PowerError(BMC_ERROR, text, address=address, transient=exc.status_code >= 500)
    if isinstance(exc, sushy_errors.ConnectionError):
        cause = exc.__context__
        if isinstance(cause, requests.exceptions.SSLError):
            return PowerError(UNREACHABLE, f"{where}: TLS failed: {_innermost(cause)}", address=address,
                              transient=False)
        if isinstance(cause, requests.exceptions.Timeout):
            return PowerError(TIMEOUT, f"{where}: no answer within the BMC timeout", address=address)
        return PowerError(UNREACHABLE, f"{where}: unreachable: {_innermost(cause) if cause else exc}",
                          address=address)
    if isinstance(exc, sushy_errors.UnknownDefaultError):
        return PowerError(BMC_ERROR, f"{where}: the BMC does not list exactly one system; set the machine's "
                                     "Redfish system id", address=address, transient=False)
    return PowerError(BMC_ERROR, f"{where}: {exc}", address=address, transient=False)


def _innermost(exc: BaseException) -> str:
    """The root cause's text (requests and urllib3 wrap the socket error in several layers)."""
    for _ in range(10):
        reason = getattr(exc, "reason", None)
        nested = exc.args[0] if exc.args and isinstance(exc.args[0], BaseException) else reason
        if not isinstance(nested, BaseException):
            break
        exc = nested
    return str(exc)
