"""Deployment state machine (docs/contracts.md §4) and progress arithmetic. Pure: no Flask, no SQL.

The state names are the contract's (metalstream.contracts.rules); which moves between them are
allowed, and what each state means to the service, is decided here.
"""
from __future__ import annotations

from metalstream.contracts.rules import ACTIVE, BOOTING, CANCELLED, FAILED, INSTALLED, INSTALLING, PENDING, STATES  # noqa: F401

TRANSITIONS: dict[str, tuple[str, ...]] = {
    PENDING: (BOOTING, FAILED, CANCELLED),
    BOOTING: (BOOTING, INSTALLING, FAILED, CANCELLED),  # booting → booting: the machine PXE-booted again
    INSTALLING: (INSTALLED, FAILED, CANCELLED),
    INSTALLED: (ACTIVE, FAILED),
    ACTIVE: (),
    FAILED: (),
    CANCELLED: (),
}

# Deployments that still own their MAC: a second one for the same MAC is refused while one of these exists.
OPEN_STATES = (PENDING, BOOTING, INSTALLING, INSTALLED)
# The agent token is valid only while the agent is supposed to be running.
AGENT_STATES = (BOOTING, INSTALLING)
# The boot script sends the machine to the installer only in these states; in every other, to its disk.
INSTALLER_STATES = (PENDING, BOOTING)
# The agent must be heard from within the silence timeout in these states.
WATCHED_STATES = (BOOTING, INSTALLING)


def allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, ())


def sources_for(new: str) -> tuple[str, ...]:
    """All states from which `new` may be entered (for conditional UPDATE ... WHERE state IN (...))."""
    return tuple(state for state, targets in TRANSITIONS.items() if new in targets)


def eta_seconds(bytes_done: int | None, bytes_total: int | None, stream_started: float | None,
                now: float) -> float | None:
    """Remaining seconds at the average rate since streaming began, or None when it cannot be known."""
    if not bytes_done or not bytes_total or stream_started is None or now <= stream_started:
        return None
    rate = bytes_done / (now - stream_started)
    return max(0.0, (bytes_total - bytes_done) / rate) if rate > 0 else None
