"""IPMI power control through `ipmitool -I lanplus` (run by metalstream.proc).

The password goes to ipmitool in its environment (IPMI_PASSWORD, read with -E), never on the
command line that proc logs and `ps` shows. ipmitool's own retransmits are kept short (-N/-R) so
one call stays within the BMC timeout; pxe.power.guard retries whole calls, with backoff.
"""
from __future__ import annotations

import logging
import re
import time

from metalstream import proc
from metalstream.errors import CommandError, OperationFailed

from .base import AUTH, BMC_ERROR, TIMEOUT, UNREACHABLE, BmcAccess, PowerError

log = logging.getLogger("metalstream.pxe.power")

DEFAULT_PORT = 623
POLL_INTERVAL = 1.0  # seconds between status reads while waiting for a soft shutdown
_BOOT_DEVICES = {"network": "pxe", "disk": "disk"}
_CHATTER = ("Loading IANA PEN Registry", "Using best available cipher suite", "Running Get ", "Discovered ")
_STATUS = re.compile(r"Chassis Power is (on|off)")
# What ipmitool prints when the BMC refused the user or the password (RAKP 2/4 checks, session open)
# (-v makes ipmitool say which step failed; without it every failure reads "Unable to establish ... session").
# "no response from RAKP 1": the BMC answered the session's first steps, then ignored the user (virtualbmc's
# answer to an unknown user name).
_AUTH_FAILURES = ("password is longer than 20 bytes", "no response from RAKP 1", "RAKP 2 HMAC is invalid", "RAKP 4 HMAC is invalid", "unauthorized name",
                  "invalid role", "inactive session ID", "Unauthorized name", "Invalid user name",
                  "insufficient privilege")


def split_address(address: str) -> tuple[str, int]:
    """HOST, HOST:PORT, [V6] or [V6]:PORT → (host, port)."""
    if address.startswith("["):
        host, _, rest = address[1:].partition("]")
        return host, int(rest[1:]) if rest.startswith(":") else DEFAULT_PORT
    if address.count(":") == 1:
        host, port = address.split(":")
        return host, int(port)
    return address, DEFAULT_PORT


class IpmiDriver:
    def __init__(self, access: BmcAccess, *, timeout: float):
        self.access = access
        self.timeout = timeout

    def status(self) -> str:
        out = self._ipmitool("chassis", "power", "status")
        found = _STATUS.search(out)
        if not found:
            raise PowerError(BMC_ERROR, f"IPMI {self.access.address}: unexpected answer to power status: "
                                        f"{out.strip()[:200]!r}", address=self.access.address, transient=False)
        return found.group(1)

    def power_on(self) -> None:
        self._ipmitool("chassis", "power", "on")

    def power_off(self, graceful_timeout: float) -> None:
        if self.status() == "off":
            return
        if graceful_timeout > 0:
            self._ipmitool("chassis", "power", "soft")
            deadline = time.monotonic() + graceful_timeout
            while time.monotonic() < deadline:
                time.sleep(POLL_INTERVAL)
                if self.status() == "off":
                    return
            log.info("IPMI %s: still on %g s after a soft shutdown; forcing it off", self.access.address,
                     graceful_timeout)
        self._ipmitool("chassis", "power", "off")

    def reset(self) -> None:
        # `power reset` (a hard reset), not `power cycle`: some BMCs (virtualbmc among them) refuse a cycle
        self._ipmitool("chassis", "power", "reset")

    def set_boot_device(self, device: str, once: bool) -> None:
        self._ipmitool("chassis", "bootdev", _BOOT_DEVICES[device], *(() if once else ("options=persistent",)))

    def _ipmitool(self, *command: str) -> str:
        access = self.access
        host, port = split_address(access.address)
        argv = ["ipmitool", "-I", "lanplus", "-H", host, "-p", str(port), "-N", "2", "-R", "1"]
        if access.username:
            argv += ["-U", access.username]
        argv += ["-v", "-E", *command]
        try:
            return proc.run(argv, timeout=self.timeout, env={"IPMI_PASSWORD": access.password or ""}).stdout
        except CommandError as exc:
            raise power_error(access.address, exc) from None
        except OperationFailed as exc:  # ipmitool is not installed
            raise PowerError(BMC_ERROR, f"IPMI {access.address}: {exc}", address=access.address,
                             transient=False) from None


def power_error(address: str, exc: CommandError) -> PowerError:
    where = f"IPMI {address}"
    if exc.timed_out:
        return PowerError(TIMEOUT, f"{where}: no answer within the BMC timeout", address=address)
    lines = [line.strip() for line in exc.stderr.splitlines() if line.strip() and not line.startswith(_CHATTER)]
    said = " | ".join(dict.fromkeys(lines[-3:])) or f"exit status {exc.returncode}"
    if any(marker in exc.stderr for marker in _AUTH_FAILURES):
        return PowerError(AUTH, f"{where}: credentials refused: {said}", address=address)
    if "Unable to establish IPMI v2 / RMCP+ session" in exc.stderr or "Address lookup" in exc.stderr:
        return PowerError(UNREACHABLE, f"{where}: unreachable: {said}", address=address)
    return PowerError(BMC_ERROR, f"{where}: {said}", address=address)
