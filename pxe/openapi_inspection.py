"""OpenAPI path and schemas of POST /api/v1/agent/inspection (merged into pxe.openapi's document;
docs/inspection.md)."""
from __future__ import annotations

from .inspection import (CPU_KEYS, DISK_KEYS, DMI_KEYS, FACT_KEYS, FIRMWARE_MODES, MAX_DISKS,
                         MAX_FACT_TEXT, MAX_NICS, NIC_KEYS)
from .openapi import _nullable, _op


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _text() -> dict:
    return _nullable("string", maxLength=MAX_FACT_TEXT)


def _object(keys: tuple[str, ...], properties: dict) -> dict:
    return {"type": "object", "additionalProperties": False, "required": list(keys), "properties": properties}


_DISK = _object(DISK_KEYS, {
    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9!_.:-]{0,63}$", "example": "sda"},
    "size_bytes": {"type": "integer", "minimum": 0}, "model": _text(), "serial": _text(),
    "wwn": _nullable("string", maxLength=MAX_FACT_TEXT, example="0x5000c500a1b2c3d4"),
    "rotational": _nullable("boolean"),
    "by_path": _nullable("string", maxLength=MAX_FACT_TEXT, description="the disk's udev by-path link (full path)"),
})
_NIC = _object(NIC_KEYS, {
    "mac": {"type": "string", "example": "52:54:00:12:34:56"},
    "name": {"type": "string", "pattern": "^[A-Za-z0-9][A-Za-z0-9_.-]{0,14}$"}, "driver": _text(),
    "link": _nullable("boolean", description="carrier detected"),
    "speed_mbps": _nullable("integer", minimum=0, maximum=10_000_000),
})

SCHEMAS = {
    "HardwareFacts": _object(FACT_KEYS, {
        "cpus": _object(CPU_KEYS, {"count": _nullable("integer", minimum=1, maximum=65536), "model": _text()}),
        "memory_mib": _nullable("integer", minimum=1),
        "firmware": {"enum": list(FIRMWARE_MODES)},
        "dmi": _object(DMI_KEYS, {key: _text() for key in DMI_KEYS}),
        "disks": {"type": "array", "maxItems": MAX_DISKS, "items": _DISK},
        "nics": {"type": "array", "maxItems": MAX_NICS, "items": _NIC},
    }),
    "InspectionReport": {"type": "object", "additionalProperties": False, "required": ["facts"],
                         "properties": {"facts": _ref("HardwareFacts")}},
    "InspectionAccepted": {
        "type": "object", "required": ["accepted", "created", "machine"],
        "properties": {
            "accepted": {"type": "boolean"},
            "created": {"type": "boolean", "description": "a new machine (state `new`) was enlisted"},
            "machine": _nullable("object", description="the machine the facts were stored on (null: a MAC-only "
                                                       "deployment of an unregistered machine)",
                                 properties={"id": {"type": "string"}, "name": {"type": "string"},
                                             "state": {"type": "string"}}),
        },
    },
}

_REPORT = _op("Report this machine's hardware facts (inspection token: enlist or refresh; agent token: refresh the "
              "deployment's machine)", body="InspectionReport", tag="agent", agent=True, returns="InspectionAccepted")

PATHS = {"/api/v1/agent/inspection": {"post": _REPORT}}
