"""Power control of machines through their BMCs: Redfish (sushy) and IPMI (ipmitool), guarded by
timeouts, retries with backoff and a per-BMC concurrency limit (docs/power.md)."""
from .base import (AUTH, BMC_ERROR, BOOT_DEVICES, DRIVERS, KINDS, POWER_STATES, TIMEOUT, UNREACHABLE, BmcAccess,
                   PowerError)
from .guard import GuardedDriver, NoPowerControl, driver_for

__all__ = ["AUTH", "BMC_ERROR", "BOOT_DEVICES", "DRIVERS", "KINDS", "POWER_STATES", "TIMEOUT", "UNREACHABLE",
           "BmcAccess", "PowerError", "GuardedDriver", "NoPowerControl", "driver_for"]
