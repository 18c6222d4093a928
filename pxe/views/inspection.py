"""POST /api/v1/agent/inspection: hardware facts from an agent.

Two tokens are accepted: an inspection token (`i.…`, minted when discovery served an unknown machine the
installer in inspection mode) enlists the machine or refreshes its facts; a deployment's agent token
refreshes the facts of the deployment's machine. Wrong tokens count towards the address's block (authguard).
"""
from __future__ import annotations

from flask import jsonify, request

from metalstream.errors import BadInput

from .. import authguard, deployments, inspection
from ..errors import Unauthorized
from ..schemas.base import parse
from ..schemas.inspection import InspectionReport
from .common import bearer_token, json_body, service

def _refuse(token: str | None):
    if token is not None:
        authguard.record_failure(service().engine, service().config, request.remote_addr, "agent")
    raise Unauthorized("missing, invalid or expired inspection or agent token")


def _facts() -> dict:
    if request.content_length is not None and request.content_length > inspection.MAX_REPORT_BYTES:
        raise BadInput(f"a facts report is at most {inspection.MAX_REPORT_BYTES} bytes", location="body")
    if len(request.get_data(cache=True)) > inspection.MAX_REPORT_BYTES:
        raise BadInput(f"a facts report is at most {inspection.MAX_REPORT_BYTES} bytes", location="body")
    return parse(InspectionReport, json_body()).facts.model_dump()


def report():  # registered on the agent blueprint (views/agent.py), which skips its own token check for it
    svc, token = service(), bearer_token()
    if token is not None:
        authguard.check_not_blocked(svc.engine, request.remote_addr)
    if inspection.is_inspection_token(token):
        claim = inspection.read_token(svc.secrets, token)
        if claim is None:
            _refuse(token)
        facts = _facts()
        machine, created = inspection.enlist(svc.engine, claim[0], claim[1], facts)
        return jsonify({"accepted": True, "created": created, "machine": machine})
    row = deployments.authenticate_agent(svc.engine, token)
    if row is None:
        _refuse(token)
    facts = _facts()
    machine = inspection.refresh_for_deployment(svc.engine, row, facts)
    return jsonify({"accepted": True, "created": False, "machine": machine})
