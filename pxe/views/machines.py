"""/api/v1/machines: register, list (with filters), show, change and delete machines.

Read-scope tokens may GET; changes need an admin token (pxe.views.common.require_api_token). No answer
ever carries a BMC password: a machine's `bmc` says only whether one is set (`password_set`).
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from .. import machines
from ..schemas.base import parse
from ..schemas.machines import MachineCreate, MachineFilters, MachinePatch
from .common import json_body, require_api_token, service

bp = Blueprint("machines", __name__, url_prefix="/api/v1/machines")
bp.before_request(require_api_token)


@bp.get("")
def list_machines():
    filters = parse(MachineFilters, request.args.to_dict()).given()
    return jsonify({"machines": machines.list_all(service().engine, filters)})


@bp.post("")
def create_machine():
    svc = service()
    spec = parse(MachineCreate, json_body()).spec()
    machine = machines.create(svc.engine, svc.secrets, **spec)
    g.audit_target = machine["id"]
    response = jsonify(machine)
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/machines/{machine['id']}"
    return response


@bp.get("/<machine_id>")
def show_machine(machine_id: str):
    return jsonify(machines.get(service().engine, machine_id))


@bp.patch("/<machine_id>")
def change_machine(machine_id: str):
    svc = service()
    change = parse(MachinePatch, json_body()).change()
    machine = machines.update_machine(svc.engine, svc.secrets, machine_id, change)
    g.audit_target = machine["id"]
    return jsonify(machine)


@bp.delete("/<machine_id>")
def delete_machine(machine_id: str):
    g.audit_target = machines.delete_machine(service().engine, machine_id)
    return "", 204
