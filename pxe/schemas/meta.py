"""Routes that take no body: the audit log (its query and answer), the agent's plan, this document."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from metalstream.contracts import rules
from metalstream.errors import BadInput

from .base import Query, rule
from .deployments import DiskHintsInput as DiskHints
from .network import NetworkDeviceModel as NetworkDevice


MAX_AUDIT_LIMIT = 1000


def _number_text(value: Any, location: str, *, read: type = float, **bounds) -> float | int:
    """A query parameter's text read as a number (Python's int() or float()), then checked by the rules."""
    try:
        number = read(value)
    except (TypeError, ValueError):
        raise BadInput("must be a number", location=location) from None
    return rules.integer(number, location, **bounds) if read is int else rules.number(number, location, **bounds)


class AuditQuery(Query):
    """GET /api/v1/audit."""

    limit: Annotated[int, rule(_number_text, read=int, minimum=1, maximum=MAX_AUDIT_LIMIT)] = Field(
        100, ge=1, le=MAX_AUDIT_LIMIT, description="at most this many entries")
    since: Annotated[float, rule(_number_text)] = Field(
        None, ge=0, description="only entries from this time on (seconds since the epoch)")


class AuditEntry(BaseModel):
    id: int
    time: float
    token_id: str | None = Field(description="the token's id (null: no valid token was presented)")
    client: str | None
    action: str = Field(description="METHOD /path/pattern")
    target: str | None
    status: int


class AuditLog(BaseModel):
    entries: list[AuditEntry]


class DeployPlan(BaseModel):
    """The deploy plan (metalstream-plan/1.x; docs/contracts.md §2): the agent's reader judges it."""

    model_config = ConfigDict(extra="allow")
    format: str = Field(examples=["metalstream-plan/1.4"])
    deployment_id: str
    image: dict
    disk_hints: DiskHints
    boot_mode: Literal[rules.BOOT_MODES]
    storage: dict | None
    hostname: str | None
    network: list[NetworkDevice]
    root_password_hash: str | None
    ssh_keys: list[str]
    kernel_args: str
    report: dict


class OpenApiDocument(BaseModel):
    """This document (OpenAPI 3.0)."""

    model_config = ConfigDict(extra="allow")
    openapi: str
    info: dict
    paths: dict
    components: dict
