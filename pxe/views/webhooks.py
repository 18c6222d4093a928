"""/api/v1/webhooks: subscriptions (list, create, show, change, delete) and their deliveries.

Reading needs a token of either scope; changing needs an admin token. A subscription's secret is in the
answer to the POST that made it (when the service generated it, this is the only time it can be read), and
in no other answer.
"""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from .. import webhooks
from ..schemas.base import parse
from ..schemas.webhooks import DeliveryQuery, WebhookCreate, WebhookPatch
from .common import json_body, require_api_token, service

bp = Blueprint("webhooks", __name__, url_prefix="/api/v1/webhooks")
bp.before_request(require_api_token)  # read scope: GET only


@bp.get("")
def list_webhooks():
    return jsonify({"webhooks": webhooks.list_all(service().engine)})


@bp.post("")
def create_webhook():
    svc = service()
    created = webhooks.create(svc.engine, svc.secrets, parse(WebhookCreate, json_body()).subscription())
    g.audit_target = created["id"]
    response = jsonify(created)
    response.status_code = 201
    response.headers["Location"] = f"/api/v1/webhooks/{created['id']}"
    response.headers["Cache-Control"] = "no-store"  # it carries the secret
    return response


@bp.get("/<webhook_id>")
def show_webhook(webhook_id: str):
    return jsonify(webhooks.get(service().engine, webhook_id))


@bp.patch("/<webhook_id>")
def change_webhook(webhook_id: str):
    svc = service()
    change = parse(WebhookPatch, json_body()).change()
    return jsonify(webhooks.change(svc.engine, svc.secrets, webhook_id, change))


@bp.delete("/<webhook_id>")
def delete_webhook(webhook_id: str):
    webhooks.remove(service().engine, webhook_id)
    return "", 204


@bp.get("/<webhook_id>/deliveries")
def list_deliveries(webhook_id: str):
    query = parse(DeliveryQuery, request.args.to_dict())
    return jsonify({"deliveries": webhooks.deliveries(service().engine, webhook_id, state=query.state,
                                                      limit=query.limit)})
