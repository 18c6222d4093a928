"""/api/v1/machines: registering and changing a machine, the list's filters, and the machine as answered."""
from __future__ import annotations

import re
from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from metalstream.contracts import rules
from metalstream.errors import BadInput

from .. import machine_states
from .base import Query, Request, choice, fields_of, require, rule, shape
from .bmc import Bmc, BmcInput, BmcPatch, check_bmc

MAX_NAME = 64
MAX_MACS = 64
MAX_TAGS = 64
MAX_TAG = 64
MAX_COUNT_DIGITS = 18
FIRMWARE_MODES = ("uefi", "bios")
_UUID = re.compile(r"[0-9a-fA-F]{8}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{4}-[0-9a-fA-F]{12}\Z")
_TAG = re.compile(r"[A-Za-z0-9][A-Za-z0-9_.:=+-]*\Z")


def looks_like_id(value: str) -> bool:
    """A machine id is a UUID; a name never looks like one, so `GET /machines/<ref>` is never ambiguous."""
    return bool(_UUID.match(value))


def check_name(value: Any, location: str = "name") -> str:
    name = rules.hostname(value, location)
    if len(name) > MAX_NAME:
        raise BadInput(f"at most {MAX_NAME} characters", location=location)
    if looks_like_id(name):
        raise BadInput("must not look like a machine id (a UUID)", location=location)
    return name


def check_macs(value: Any, location: str) -> list[str]:
    items = rules.expect_list(value, location, max_items=MAX_MACS)
    if not items:
        raise BadInput("needs at least one MAC address", location=location)
    macs: list[str] = []
    for i, item in enumerate(items):
        mac = rules.mac(item, f"{location}[{i}]")
        if mac in macs:
            raise BadInput(f"{mac} is listed twice", location=f"{location}[{i}]")
        macs.append(mac)
    return macs


def check_tags(value: Any, location: str) -> list[str]:
    items = rules.expect_list(value, location, max_items=MAX_TAGS)
    tags: list[str] = []
    for i, item in enumerate(items):
        where = f"{location}[{i}]"
        if not isinstance(item, str) or not 0 < len(item) <= MAX_TAG or not _TAG.match(item):
            raise BadInput(f"a tag is 1-{MAX_TAG} characters: letters, digits and _ . : = + - "
                           "(starting with a letter or digit)", location=where)
        if item in tags:
            raise BadInput(f"tag {item!r} is listed twice", location=where)
        tags.append(item)
    return tags


Name = Annotated[str, rule(check_name), Field(max_length=MAX_NAME, examples=["node-01"],
                                              description="a host name (letters, digits, '-', '.'); not a UUID")]
Macs = Annotated[list[Annotated[str, Field(examples=["52:54:00:12:34:56"])]], rule(check_macs),
                 Field(min_length=1, max_length=MAX_MACS, json_schema_extra={"uniqueItems": True})]
Tags = Annotated[list[Annotated[str, Field(max_length=MAX_TAG)]], rule(check_tags),
                 Field(max_length=MAX_TAGS, json_schema_extra={"uniqueItems": True})]


class MachineCreate(Request):
    """A machine to register (its BMC defaults to manual)."""

    name: Name
    macs: Macs
    bmc: BmcInput = None  # type: ignore[assignment]  # absent: a manual BMC (see `spec`)
    tags: Tags = []

    @shape
    def _whole(cls, data: Any) -> Any:
        fields_of(data, cls)
        for required in ("name", "macs"):
            require(data, required)
        return data

    def spec(self) -> dict:
        """{name, macs, bmc, tags} for machines.create."""
        bmc = self.bmc.model_dump() if self.bmc else check_bmc({"driver": "manual"})
        return {"name": self.name, "macs": self.macs, "bmc": bmc, "tags": self.tags}


class MachinePatch(Request):
    """Fields given replace the stored ones (null is refused: leave a field out to keep it); the BMC is merged."""

    name: Name = None  # type: ignore[assignment]
    macs: Macs = None  # type: ignore[assignment]
    tags: Tags = None  # type: ignore[assignment]
    state: Annotated[Literal[machine_states.SETTABLE], choice(machine_states.SETTABLE)] = \
        Field(None, description="ready: take a new machine into use, or clear a failed one")
    bmc: BmcPatch = None  # type: ignore[assignment]

    @shape
    def _whole(cls, data: Any) -> Any:
        rules.expect_object(data, "", ("name", "macs", "bmc", "tags", "state"))  # the order the refusal lists them
        for key, item in data.items():
            if item is None:
                raise BadInput("must not be null (leave the field out to keep it)", location=key)
        return data

    def change(self) -> dict:
        """Only the fields given; `bmc` as given (merged with the stored one by machines.update_machine)."""
        change = self.model_dump(exclude_unset=True, exclude={"bmc"})
        if self.bmc is not None:
            change["bmc"] = self.bmc.change()
        return change


def _count(value: Any, location: str) -> int:
    if not isinstance(value, str) or not value.isascii() or not value.isdigit() or len(value) > MAX_COUNT_DIGITS:
        raise BadInput("must be a non-negative integer", location=location)
    return int(value)


Count = Annotated[int, Field(ge=0, le=10**MAX_COUNT_DIGITS - 1), rule(_count)]


class MachineFilters(Query):
    """GET /api/v1/machines and `metalstream machine list`: each filter given narrows the list (a fact filter
    passes only machines that have the fact)."""

    state: Annotated[Literal[machine_states.STATES], choice(machine_states.STATES)] = Field(
        None, description="only machines in this state")
    tag: Annotated[str, rule(rules.text, max_length=MAX_TAG, allow_empty=False)] = Field(
        None, min_length=1, max_length=MAX_TAG, description="only machines with this tag")
    mac: Annotated[str, rule(rules.mac)] = Field(
        None, examples=["52:54:00:12:34:56"], description="only the machine with this MAC")
    min_memory_mib: Count = Field(None, description="facts: at least this much memory (MiB)")
    min_cpus: Count = Field(None, description="facts: at least this many CPUs")
    min_disks: Count = Field(None, description="facts: at least this many disks")
    min_disk_bytes: Count = Field(None, description="facts: a disk of at least this size (bytes)")
    firmware: Annotated[Literal[FIRMWARE_MODES], choice(FIRMWARE_MODES)] = Field(
        None, description="facts: this firmware mode")


class DeploymentRef(BaseModel):
    id: str
    state: str | None


class Machine(BaseModel):
    """A registered machine (never its BMC password)."""

    id: str
    name: str
    state: Literal[machine_states.STATES]
    macs: list[str]
    bmc: Bmc
    tags: list[str]
    facts: dict | None = Field(description="hardware facts from inspection (docs/machines.md)")
    facts_at: float | None
    power_state: str | None = Field(description="on, off or unknown; null: never asked")
    power_checked_at: float | None
    power_error: str | None = Field(description="the BMC's last error")
    current_deployment: DeploymentRef | None
    last_deployment: DeploymentRef | None
    created_at: float
    updated_at: float


class MachineList(BaseModel):
    machines: list[Machine]
