"""/api/v1/agent/*: what the deployer agent posts (read by metalstream.contracts.events, the agent's own
contract) and what it is answered."""
from __future__ import annotations

from typing import Any, Literal

from pydantic import BaseModel, Field

from metalstream.contracts import rules
from metalstream.contracts.events import MAX_ERROR, MAX_LOG, MAX_MESSAGE, MAX_TIME, read_event, read_result

from .base import Request, shape
from .common import Number

_INSTALLER_SECURE_BOOT = "whether the installer booted with Secure Boot on (absent or null: unknown)"
Phase = Literal[rules.PHASES]


class Event(Request):
    """A progress report."""

    phase: Phase
    message: str = Field("", max_length=MAX_MESSAGE)
    bytes_done: int | None = Field(None, ge=0, le=rules.MAX_INT)
    bytes_total: int | None = Field(None, ge=0, le=rules.MAX_INT)
    time: Number | None = Field(None, json_schema_extra={"minimum": 0, "maximum": MAX_TIME})
    seq: int | None = Field(None, ge=1, le=rules.MAX_INT,
                            description="1, 2, ... per agent run: a retried event is stored once")
    secure_boot: bool | None = Field(None, description=_INSTALLER_SECURE_BOOT)

    @shape
    def _whole(cls, data: Any) -> Any:
        return read_event(data)


class Result(Request):
    """The final result: success with the root filesystem's UUID, or the failing phase and error."""

    success: bool
    phase: Phase
    error: str | None = Field(None, max_length=MAX_ERROR)
    log: str = Field("", max_length=MAX_LOG)
    root_uuid: str | None = None
    time: Number | None = Field(None, json_schema_extra={"minimum": 0, "maximum": MAX_TIME})
    secure_boot: bool | None = Field(None, description=_INSTALLER_SECURE_BOOT)

    @shape
    def _whole(cls, data: Any) -> Any:
        return read_result(data)


class EventAccepted(BaseModel):
    accepted: bool
    duplicate: bool = Field(description="an event of this seq was stored before")


class ResultAccepted(BaseModel):
    accepted: bool
    state: str = Field(description="the deployment's state after the result")


MAX_INCLUDES = 8
MAX_INCLUDE_TEXT = 256 * 1024  # deployer.deferred reads no more


class IncludedText(Request):
    """One deferred `%include` as the agent read it on the machine after the %pre scripts ran."""

    path: str = Field(min_length=2, max_length=4096, pattern=r"^/[^\x00]*$")
    line: int | None = Field(None, ge=1, le=rules.MAX_INT)
    text: str = Field(max_length=MAX_INCLUDE_TEXT)


class StorageIncludes(Request):
    """The texts of the deployment's deferred `%include`s, each the one its kickstart names at that line."""

    includes: list[IncludedText] = Field(min_length=1, max_length=MAX_INCLUDES)


class MergedStorage(BaseModel):
    storage: dict = Field(description="the deployment's storage (deploy spec) with the included storage commands "
                                      "merged in, to install instead of the plan's")
