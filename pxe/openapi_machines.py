"""OpenAPI paths and schemas of /api/v1/machines (merged into pxe.openapi's document)."""
from __future__ import annotations

from .machine_states import SETTABLE, STATES
from .openapi import _nullable, _op, _path_param
from .validate_machines import DRIVERS, MAX_ADDRESS, MAX_MACS, MAX_NAME, MAX_PASSWORD, MAX_SYSTEM_ID, MAX_TAG, \
    MAX_TAGS, MAX_USERNAME



def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


def _query(name: str, schema: dict, description: str) -> dict:
    return {"name": name, "in": "query", "required": False, "schema": schema, "description": description}


_ID = [_path_param("machine_id")]
_ID[0]["description"] = "the machine's id or name"

_LIST_PARAMS = [
    _query("state", {"enum": list(STATES)}, "only machines in this state"),
    _query("tag", {"type": "string"}, "only machines with this tag"),
    _query("mac", {"type": "string"}, "only the machine with this MAC"),
    _query("min_memory_mib", {"type": "integer", "minimum": 0}, "facts: at least this much memory (MiB)"),
    _query("min_cpus", {"type": "integer", "minimum": 0}, "facts: at least this many CPUs"),
    _query("min_disks", {"type": "integer", "minimum": 0}, "facts: at least this many disks"),
    _query("min_disk_bytes", {"type": "integer", "minimum": 0}, "facts: a disk of at least this size (bytes)"),
    _query("firmware", {"enum": ["uefi", "bios"]}, "facts: this firmware mode"),
]


def _bmc_input(*, driver_required: bool) -> dict:
    schema = {
        "type": "object", "additionalProperties": False,
        "properties": {
            "driver": {"enum": list(DRIVERS), "description": "redfish, ipmi, or manual (no BMC: someone powers it)"},
            "address": _nullable("string", maxLength=MAX_ADDRESS, example="https://10.0.0.20",
                                 description="redfish: http(s)://HOST[:PORT]; ipmi: HOST or HOST:PORT"),
            "username": _nullable("string", maxLength=MAX_USERNAME),
            "password": _nullable("string", maxLength=MAX_PASSWORD, format="password",
                                  description="stored encrypted; never returned (a machine shows password_set)"),
            "verify_tls": _nullable("boolean", description="redfish only: check the BMC's certificate (default true)"),
            "system_id": _nullable("string", maxLength=MAX_SYSTEM_ID,
                                   description="redfish only: the system's id or path (default: the BMC's only one)"),
        },
    }
    if driver_required:
        schema["required"] = ["driver"]
    else:
        schema["description"] = ("merged into the stored BMC: fields left out stay, null clears one, the password "
                                 "stays unless given; another driver starts from nothing")
    return schema


_MACS = {"type": "array", "minItems": 1, "maxItems": MAX_MACS, "uniqueItems": True,
         "items": {"type": "string", "example": "52:54:00:12:34:56"}}
_TAGS = {"type": "array", "maxItems": MAX_TAGS, "uniqueItems": True, "items": {"type": "string", "maxLength": MAX_TAG}}
_NAME = {"type": "string", "maxLength": MAX_NAME, "example": "node-01",
         "description": "a host name (letters, digits, '-', '.'); not a UUID"}
_DEPLOYMENT_REF = _nullable("object", required=["id", "state"],
                            properties={"id": {"type": "string"}, "state": _nullable("string")})

SCHEMAS = {
    "BmcInput": _bmc_input(driver_required=True),
    "BmcPatch": _bmc_input(driver_required=False),
    "MachineCreate": {
        "type": "object", "additionalProperties": False, "required": ["name", "macs"],
        "properties": {"name": _NAME, "macs": _MACS, "bmc": _ref("BmcInput"), "tags": _TAGS},
    },
    "MachinePatch": {
        "type": "object", "additionalProperties": False,
        "properties": {"name": _NAME, "macs": _MACS, "bmc": _ref("BmcPatch"), "tags": _TAGS,
                       "state": {"enum": list(SETTABLE),
                                 "description": "ready: take a new machine into use, or clear a failed one"}},
    },
    "Machine": {
        "type": "object",
        "required": ["id", "name", "state", "macs", "bmc", "tags", "facts", "facts_at", "power_state",
                     "power_checked_at", "power_error", "current_deployment", "last_deployment", "created_at",
                     "updated_at"],
        "properties": {
            "id": {"type": "string"}, "name": {"type": "string"}, "state": {"enum": list(STATES)},
            "macs": {"type": "array", "items": {"type": "string"}},
            "bmc": {"type": "object", "additionalProperties": False,
                    "required": ["driver", "address", "username", "verify_tls", "system_id", "password_set"],
                    "properties": {"driver": {"enum": list(DRIVERS)}, "address": _nullable("string"),
                                   "username": _nullable("string"), "verify_tls": _nullable("boolean"),
                                   "system_id": _nullable("string"), "password_set": {"type": "boolean"}}},
            "tags": {"type": "array", "items": {"type": "string"}},
            "facts": _nullable("object", description="hardware facts from inspection (docs/machines.md)"),
            "facts_at": _nullable("number"),
            "power_state": _nullable("string", description="on, off or unknown; null: never asked"),
            "power_checked_at": _nullable("number"),
            "power_error": _nullable("string", description="the BMC's last error"),
            "current_deployment": _DEPLOYMENT_REF, "last_deployment": _DEPLOYMENT_REF,
            "created_at": {"type": "number"}, "updated_at": {"type": "number"},
        },
    },
    "MachineList": {"type": "object", "required": ["machines"],
                    "properties": {"machines": {"type": "array", "items": _ref("Machine")}}},
}

PATHS = {
    "/api/v1/machines": {
        "get": _op("List machines (filters: state, tag, mac, and facts)", tag="machines", params=_LIST_PARAMS,
                   returns="MachineList"),
        "post": _op("Register a machine (409 when its name or a MAC is taken)", body="MachineCreate", ok="201",
                    tag="machines", returns="Machine"),
    },
    "/api/v1/machines/{machine_id}": {
        "get": _op("Show a machine", tag="machines", params=_ID, returns="Machine"),
        "patch": _op("Change a machine (fields given replace the stored ones; the BMC is merged)",
                     body="MachinePatch", tag="machines", params=_ID, returns="Machine"),
        "delete": _op("Delete a machine (409 while it has an open deployment)", ok="204", tag="machines",
                      params=_ID),
    },
}
