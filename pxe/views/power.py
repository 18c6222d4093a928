"""POST /api/v1/machines/<id>/power: switch a machine's power through its BMC (an ops call; admin token).

The only request handler that talks to a BMC: bounded by the BMC timeout, retries and the graceful
shutdown time. A BMC failure answers 502 with the BMC's message; a machine without a BMC 409.
"""
from __future__ import annotations

import time

from flask import Blueprint, g, jsonify

from .. import machines, power_duties
from ..errors import NotFound, ServiceError
from ..power import PowerError, driver_for
from ..schemas.base import parse
from ..schemas.power import PowerRequest
from .common import json_body, require_api_token, service

bp = Blueprint("power", __name__, url_prefix="/api/v1/machines")
bp.before_request(require_api_token)

class BmcFailed(ServiceError):
    """The BMC could not be reached or refused: the gateway's error."""

    http_status = 502


@bp.post("/<machine_id>/power")
def power(machine_id: str):
    svc = service()
    row = machines.get_row(svc.engine, machine_id)
    if row is None:
        raise NotFound(f"no machine {machine_id!r}", details={"field": "id"})
    g.audit_target = row["id"]
    spec = parse(PowerRequest, json_body()).model_dump()
    bmc = driver_for(machines.bmc_access(svc, row["id"]), svc.config)  # 409 for a manual machine
    try:
        if spec["boot_device"] is not None:
            bmc.set_boot_device(spec["boot_device"], once=True)
        action = spec["action"]
        if action == "on":
            bmc.power_on()
        elif action == "off":
            bmc.power_off(spec["graceful_timeout"])
        elif action == "cycle":
            bmc.reset() if bmc.status() == "on" else bmc.power_on()
        state = bmc.status()
    except PowerError as exc:
        with svc.engine.begin() as conn:
            power_duties.record_power_state(conn, row["id"], None, exc.message, time.time())
        raise BmcFailed(exc.message, details={"kind": exc.kind, "attempts": exc.attempts}) from None
    with svc.engine.begin() as conn:
        power_duties.record_power_state(conn, row["id"], state, None, time.time())
    return jsonify({"machine": row["id"], "action": spec["action"], "boot_device": spec["boot_device"],
                    "power_state": state})
