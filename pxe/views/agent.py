"""/api/v1/agent/*: the deployer agent's calls, authenticated by its per-deployment token."""
from __future__ import annotations

import time

from flask import Blueprint, g, jsonify, request

from .. import authguard, deployments, imagestore, kickstart_input, states
from ..errors import Unauthorized
from ..plan import build_plan
from ..schemas.agent import Event, Result, StorageIncludes
from ..schemas.base import parse
from . import inspection as inspection_views
from .common import base_url, bearer_token, json_body, service

bp = Blueprint("agent", __name__, url_prefix="/api/v1/agent")


@bp.before_request
def authenticate():
    if request.endpoint == "agent.inspection":  # takes inspection tokens too: checks its own (views/inspection.py)
        return
    engine, token = service().engine, bearer_token()
    if token is not None:
        authguard.check_not_blocked(engine, request.remote_addr)
    row = deployments.authenticate_agent(engine, token)
    if row is None:
        if token is not None:
            authguard.record_failure(engine, service().config, request.remote_addr, "agent")
        raise Unauthorized("missing, invalid or expired agent token")
    g.deployment = row


def _seen():
    deployments.agent_seen(service().engine, g.deployment, request.remote_addr)
    g.deployment = deployments.get_row(service().engine, g.deployment["id"])


@bp.get("/plan")
def plan():
    svc = service()
    _seen()
    row = g.deployment
    image = imagestore.get(svc.engine, row["image_name"])
    return jsonify(build_plan(deployment_id=row["id"], request=row["request"], storage=row["storage"], image=image,
                              base_url=base_url(), deploy_public_key=svc.deploy_public_key,
                              mirrors=svc.config.mirror_rules, client_address=request.remote_addr,
                              reboot_method=svc.config.reboot_method,
                              encryption_passphrase=deployments.passphrase_of(svc.secrets, row)))


@bp.post("/events")
def events():
    event = parse(Event, json_body()).model_dump()
    if g.deployment["state"] != states.INSTALLING:  # storing the event refreshes the silence timer itself
        _seen()
    stored = deployments.record_event(service().engine, g.deployment, event)
    return jsonify({"accepted": True, "duplicate": not stored})


@bp.post("/result")
def result():
    outcome = parse(Result, json_body()).model_dump()
    _seen()
    svc = service()
    new_state = deployments.record_result(svc.engine, g.deployment, outcome, check_after=time.time())
    return jsonify({"accepted": True, "state": new_state})


@bp.post("/storage")
def storage():
    """The deployment's storage with the storage commands of its deferred %includes merged in (the agent read them
    on the machine after the %pre scripts; it has no kickstart front end of its own)."""
    body = parse(StorageIncludes, json_body())
    _seen()
    merged = kickstart_input.merge_deferred(g.deployment["storage"],
                                            [(i.path, i.line, i.text) for i in body.includes])
    return jsonify({"storage": merged})


bp.add_url_rule("/inspection", "inspection", inspection_views.report, methods=["POST"])
