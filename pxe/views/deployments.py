"""/api/v1/deployments: create (idempotent), list, show, log, cancel."""
from __future__ import annotations

from flask import Blueprint, Response, g, jsonify, request

from metalstream.errors import BadInput

from .. import deployments, imagestore, machines
from ..kickstart_input import deploy_spec_from_text
from ..deployment_checks import check_boot_path, check_disk_names, check_encryption, check_secure_boot
from ..schemas.base import parse
from ..schemas.deployments import DeploymentCreate, DeploymentFilters
from .common import json_body, require_api_token, service

bp = Blueprint("deployments", __name__, url_prefix="/api/v1/deployments")
bp.before_request(require_api_token)

MAX_IDEMPOTENCY_KEY = 200


@bp.post("")
def create_deployment():
    svc = service()
    key = request.headers.get("Idempotency-Key")
    if key is not None and (not key or len(key) > MAX_IDEMPOTENCY_KEY or not key.isascii() or not key.isprintable()):
        raise BadInput(f"must be 1-{MAX_IDEMPOTENCY_KEY} printable ASCII characters", location="Idempotency-Key")
    body = parse(DeploymentCreate, json_body())
    req = body.request()
    machine_id, req["mac"] = machines.resolve_for_deployment(svc.engine, req.get("machine"), req["mac"])
    image = imagestore.get(svc.engine, req["image"])  # 404 naming the field `image`
    if req["image_sha256"] is not None and req["image_sha256"] != image["sha256"]:
        raise BadInput(f"does not match the registered image's sha256 {image['sha256']}", location="image_sha256")
    storage = deploy_spec_from_text(req["kickstart"]) if req["kickstart"] else None
    check_secure_boot(req, storage, image)
    check_boot_path(req, storage)
    check_encryption(storage, body.encryption_passphrase)
    check_disk_names(req, storage)
    scoped_key = None if key is None else deployments.scoped_idempotency_key(g.api_token["id"], key)
    deployment, created = deployments.create(svc.engine, req, storage, scoped_key, machine_id=machine_id,
                                             passphrase=body.encryption_passphrase, box=svc.secrets)
    g.audit_target = deployment["id"]
    response = jsonify(deployment)
    response.status_code = 201 if created else 200
    response.headers["Location"] = f"/api/v1/deployments/{deployment['id']}"
    return response


@bp.get("")
def list_deployments():
    filters = parse(DeploymentFilters, request.args.to_dict())
    return jsonify({"deployments": deployments.list_all(service().engine, filters.state, filters.mac)})


@bp.get("/<dep_id>")
def show_deployment(dep_id: str):
    return jsonify(deployments.get(service().engine, dep_id))


@bp.get("/<dep_id>/log")
def deployment_log(dep_id: str):
    log = deployments.get(service().engine, dep_id, with_log=True)["log"]
    return Response(log or "", mimetype="text/plain")


@bp.delete("/<dep_id>")
def cancel_deployment(dep_id: str):
    return jsonify(deployments.cancel(service().engine, dep_id))
