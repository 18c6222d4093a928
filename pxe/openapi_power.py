"""OpenAPI paths and schemas of POST /api/v1/machines/{machine_id}/power (merged into pxe.openapi's document)."""
from __future__ import annotations

from .openapi import _op, _path_param
from .power import BOOT_DEVICES, KINDS, POWER_STATES
from .views.power import ACTIONS, DEFAULT_GRACEFUL_TIMEOUT, MAX_GRACEFUL_TIMEOUT

_ID = [{**_path_param("machine_id"), "description": "the machine's id or name"}]

_POWER = _op("Switch a machine's power through its BMC, or read it (admin). 409: the machine's power is switched "
             "by hand (driver manual); 502: the BMC failed (unreachable, credentials refused, an error answer, no "
             "answer in time) — `error` carries the BMC's message, `kind` which failure",
             body="PowerRequest", tag="machines", params=_ID, returns="PowerState")
_POWER["responses"]["502"] = {"description": "the BMC failed",
                              "content": {"application/json": {"schema": {"$ref": "#/components/schemas/BmcFailure"}}}}

PATHS = {"/api/v1/machines/{machine_id}/power": {"post": _POWER}}

SCHEMAS = {
    "PowerRequest": {
        "type": "object", "additionalProperties": False, "required": ["action"],
        "properties": {
            "action": {"enum": list(ACTIONS), "description": "on; off (graceful, then forced after graceful_timeout); "
                                                             "cycle (a hard reset when on, power on when off); "
                                                             "status (only read it)"},
            "boot_device": {"enum": list(BOOT_DEVICES), "description": "boot once from this device (set before the "
                                                                       "action)"},
            "graceful_timeout": {"type": "number", "minimum": 0, "maximum": MAX_GRACEFUL_TIMEOUT,
                                 "default": DEFAULT_GRACEFUL_TIMEOUT,
                                 "description": "off: seconds the OS gets to shut down before the power is forced "
                                                "off (0: at once); ignored by the other actions"},
        },
    },
    "PowerState": {
        "type": "object", "required": ["machine", "action", "boot_device", "power_state"],
        "properties": {
            "machine": {"type": "string", "description": "the machine's id"},
            "action": {"enum": list(ACTIONS)},
            "boot_device": {"enum": [*BOOT_DEVICES, None], "nullable": True},
            "power_state": {"enum": list(POWER_STATES), "description": "as the BMC reports it after the action"},
        },
    },
    "BmcFailure": {
        "type": "object", "required": ["error", "kind"],
        "properties": {
            "error": {"type": "string", "description": "the BMC's message (never a credential)"},
            "kind": {"enum": list(KINDS)},
            "attempts": {"type": "integer", "minimum": 1},
        },
    },
}
