"""Machine states and the moves between them. Pure: no Flask, no SQL.

* new       — enlisted by inspection (facts known), not yet taken into use;
* ready     — registered and deployable (also where a cancelled deployment leaves it);
* deploying — a deployment of it is open (pending, booting, installing, installed);
* deployed  — its last deployment reached active;
* failed    — its last deployment failed.

A machine in any state but `deploying` may be deployed; while `deploying` it cannot be deployed again
or deleted. What a deployment's state means for its machine is `for_deployment`.
"""
from __future__ import annotations

from . import states as deployment_states

NEW, READY, DEPLOYING, DEPLOYED, FAILED = "new", "ready", "deploying", "deployed", "failed"
STATES = (NEW, READY, DEPLOYING, DEPLOYED, FAILED)

TRANSITIONS: dict[str, tuple[str, ...]] = {
    NEW: (READY, DEPLOYING),
    READY: (DEPLOYING,),
    DEPLOYING: (DEPLOYED, FAILED, READY),  # ready: the deployment was cancelled
    DEPLOYED: (DEPLOYING, READY),
    FAILED: (DEPLOYING, READY),
}

# What an operator may set through PATCH, and from which states: taking a `new` machine into use, or clearing a
# failure (never while a deployment is open: that deployment decides).
OPERATOR_MOVES: dict[str, tuple[str, ...]] = {READY: (NEW, FAILED, DEPLOYED)}
SETTABLE = tuple(OPERATOR_MOVES)


def allowed(current: str, new: str) -> bool:
    return new in TRANSITIONS.get(current, ())


def operator_may_set(current: str, new: str) -> bool:
    return current in OPERATOR_MOVES.get(new, ())


def sources_for(new: str) -> tuple[str, ...]:
    return tuple(state for state, targets in TRANSITIONS.items() if new in targets)


def for_deployment(deployment_state: str) -> str:
    """The machine's state while (or after) its deployment is in `deployment_state`."""
    if deployment_state in deployment_states.OPEN_STATES:
        return DEPLOYING
    return {deployment_states.ACTIVE: DEPLOYED, deployment_states.FAILED: FAILED,
            deployment_states.CANCELLED: READY}[deployment_state]
