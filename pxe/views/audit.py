"""/api/v1/audit: the audit log of mutating API calls (admin scope)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from .. import audit
from ..errors import Forbidden
from ..schemas.base import parse
from ..schemas.meta import AuditQuery
from .common import require_api_token, service

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")


@bp.before_request
def admin_only():
    require_api_token()
    if g.api_token["scope"] != "admin":
        raise Forbidden("reading the audit log needs an admin token")


@bp.get("")
def list_entries():
    query = parse(AuditQuery, request.args.to_dict())
    return jsonify({"entries": audit.entries(service().engine, limit=query.limit, since=query.since)})
