"""Answers of the routes that take no body: the audit log, the agent's plan, this document."""
from __future__ import annotations

from typing import Literal

from pydantic import BaseModel, ConfigDict, Field

from metalstream.contracts import rules

from .deployments import DiskHintsInput as DiskHints
from .network import NetworkDeviceModel as NetworkDevice


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
    format: str = Field(examples=["metalstream-plan/1.3"])
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
