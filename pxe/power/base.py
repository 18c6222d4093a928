"""What every power driver offers, the BMC's address and credentials, and the one error a BMC call raises.

A driver talks to one machine's BMC and knows nothing of retries, timeouts across attempts or
concurrency: pxe.power.guard wraps every driver with those.
"""
from __future__ import annotations

from dataclasses import dataclass, field
from typing import Protocol

from metalstream.errors import OperationFailed

DRIVERS = ("redfish", "ipmi", "manual")
POWER_STATES = ("on", "off")
BOOT_DEVICES = ("network", "disk")

# Error kinds: what went wrong decides whether another attempt may help.
UNREACHABLE = "unreachable"  # no answer (refused, no route, TLS handshake failed): transient
AUTH = "auth"  # the BMC refused the credentials: another attempt only locks the account out
BMC_ERROR = "bmc_error"  # the BMC answered with an error (5xx, a refused action)
TIMEOUT = "timeout"  # the BMC did not answer within the call's time
KINDS = (UNREACHABLE, AUTH, BMC_ERROR, TIMEOUT)
TRANSIENT_KINDS = (UNREACHABLE, BMC_ERROR, TIMEOUT)


class PowerError(OperationFailed):
    """A BMC call failed. `message` carries the BMC's own words (never a credential); `kind` is one of KINDS."""

    def __init__(self, kind: str, message: str, *, address: str | None = None, attempts: int = 1,
                 transient: bool | None = None):
        if kind not in KINDS:
            raise ValueError(f"unknown power error kind {kind!r}")
        super().__init__(message, details={"kind": kind, "bmc": address, "attempts": attempts})
        self.kind = kind
        self.address = address
        self.attempts = attempts
        # whether another attempt may help: by kind, unless the driver knows better (a TLS certificate
        # that is not trusted is unreachable but stays so; a 400 is a BMC error that will not change)
        self.transient = kind in TRANSIENT_KINDS if transient is None else transient

    def after(self, attempts: int) -> "PowerError":
        """The same error, saying how many attempts were made."""
        suffix = f" (after {attempts} attempts)" if attempts > 1 else ""
        return PowerError(self.kind, self.message + suffix, address=self.address, attempts=attempts,
                          transient=self.transient)


@dataclass(frozen=True)
class BmcAccess:
    """How to reach one machine's BMC. The password is kept out of repr and str."""

    driver: str
    address: str
    username: str | None = None
    password: str | None = field(default=None, repr=False)
    verify_tls: bool = True
    system_id: str | None = None

    @classmethod
    def from_dict(cls, access: dict) -> "BmcAccess":
        """From pxe.machines.bmc_access()'s dict."""
        verify = access.get("verify_tls")
        return cls(driver=access["driver"], address=access["address"], username=access.get("username"),
                   password=access.get("password"), verify_tls=True if verify is None else bool(verify),
                   system_id=access.get("system_id"))


class PowerDriver(Protocol):
    """One BMC. Every method raises PowerError on failure; none retries."""

    def status(self) -> str:
        """'on' or 'off'."""

    def power_on(self) -> None: ...

    def power_off(self, graceful_timeout: float) -> None:
        """Ask the OS to shut down; force the power off if it is still on after graceful_timeout seconds."""

    def reset(self) -> None:
        """Power-cycle a machine that is on (a hard reset)."""

    def set_boot_device(self, device: str, once: bool) -> None:
        """'network' or 'disk', for the next boot only (once) or from now on."""
