"""/metrics (Prometheus), /api/v1/openapi.json, and / (the web console's landing, pxe/console)."""
from __future__ import annotations

from flask import Blueprint, Response, jsonify, redirect

from .. import deployments, metrics
from ..openapi import openapi_document
from .common import require_api_token, service

bp = Blueprint("meta", __name__)


@bp.get("/metrics")
def prometheus():
    body, content_type = metrics.exposition(deployments.counts_by_state(service().engine))
    return Response(body, content_type=content_type)


@bp.get("/api/v1/openapi.json")
def openapi():
    require_api_token()
    return jsonify(openapi_document())


@bp.get("/")
def index():
    return redirect("/console/")
