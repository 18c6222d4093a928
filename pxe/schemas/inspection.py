"""POST /api/v1/agent/inspection: a machine's hardware facts (docs/inspection.md), read by
pxe.inspection.read_facts (the same reader that checks facts stored from the command line)."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, ConfigDict, Field

from metalstream.contracts import rules
from metalstream.errors import BadInput

from ..inspection import FIRMWARE_MODES, MAX_DISKS, MAX_FACT_TEXT, MAX_NICS, read_facts
from .base import Request, shape

FactText = Annotated[str | None, Field(max_length=MAX_FACT_TEXT)]


class Facts(BaseModel):
    """Every key is required (null when unknown)."""

    model_config = ConfigDict(extra="forbid")


class Cpus(Facts):
    count: Annotated[int | None, Field(ge=1, le=65536)]
    model: FactText


class Dmi(Facts):
    vendor: FactText
    product: FactText
    serial: FactText


class Disk(Facts):
    name: str = Field(pattern="^[A-Za-z0-9][A-Za-z0-9!_.:-]{0,63}$", examples=["sda"])
    size_bytes: int = Field(ge=0)
    model: FactText
    serial: FactText
    wwn: FactText = Field(examples=["0x5000c500a1b2c3d4"])
    rotational: bool | None
    by_path: FactText = Field(description="the disk's udev by-path link (full path)")


class Nic(Facts):
    mac: str = Field(examples=["52:54:00:12:34:56"])
    name: str = Field(pattern="^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$")
    driver: FactText
    link: bool | None = Field(description="carrier detected")
    speed_mbps: Annotated[int | None, Field(ge=0, le=10_000_000)]


class HardwareFacts(Facts):
    cpus: Cpus
    memory_mib: Annotated[int | None, Field(ge=1)]
    firmware: Literal[FIRMWARE_MODES]
    dmi: Dmi
    disks: list[Disk] = Field(max_length=MAX_DISKS)
    nics: list[Nic] = Field(max_length=MAX_NICS)


class InspectionReport(Request):
    facts: HardwareFacts

    @shape
    def _whole(cls, data: Any) -> Any:
        report = rules.expect_object(data, "", ("facts",))
        if "facts" not in report:
            raise BadInput("missing", location="facts")
        return {"facts": read_facts(report["facts"])}


class MachineSummary(BaseModel):
    id: str
    name: str
    state: str


class InspectionAccepted(BaseModel):
    accepted: bool
    created: bool = Field(description="a new machine (state `new`) was enlisted")
    machine: MachineSummary | None = Field(description="the machine the facts were stored on (null: a MAC-only "
                                                       "deployment of an unregistered machine)")
