"""POST /api/v1/machines/{machine_id}/power."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from metalstream.errors import BadInput

from ..power import BOOT_DEVICES, POWER_STATES
from .base import Request, choice, fields_of, rule, shape

ACTIONS = ("on", "off", "cycle", "status")
DEFAULT_GRACEFUL_TIMEOUT = 30.0
MAX_GRACEFUL_TIMEOUT = 300.0


def _seconds(value: Any, location: str) -> float:
    if isinstance(value, bool) or not isinstance(value, (int, float)) or not 0 <= value <= MAX_GRACEFUL_TIMEOUT:
        raise BadInput(f"must be a number of seconds from 0 to {MAX_GRACEFUL_TIMEOUT:g}", location=location)
    return float(value)


class PowerRequest(Request):
    action: Annotated[Literal[ACTIONS], choice(ACTIONS)] = Field(
        description="on; off (graceful, then forced after graceful_timeout); cycle (a hard reset when on, power "
                    "on when off); status (only read it)")
    boot_device: Annotated[Literal[BOOT_DEVICES] | None, choice(BOOT_DEVICES, nullable=True)] = Field(
        None, description="boot once from this device (set before the action)")
    graceful_timeout: Annotated[float, rule(_seconds)] = Field(
        DEFAULT_GRACEFUL_TIMEOUT, ge=0, le=MAX_GRACEFUL_TIMEOUT,
        description="off: seconds the OS gets to shut down before the power is forced off (0: at once); ignored "
                    "by the other actions")

    @shape
    def _whole(cls, data: Any) -> Any:
        fields_of(data, cls)
        if "action" not in data:
            raise BadInput(f"is required ({', '.join(ACTIONS)})", location="action")
        return data


class PowerState(BaseModel):
    machine: str = Field(description="the machine's id")
    action: Literal[ACTIONS]
    boot_device: Literal[BOOT_DEVICES] | None
    power_state: Literal[POWER_STATES] = Field(description="as the BMC reports it after the action")
