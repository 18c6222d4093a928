"""/api/v1/audit: the audit log of mutating API calls (admin scope)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from metalstream.contracts import rules
from metalstream.errors import BadInput

from .. import audit
from ..errors import Forbidden
from .common import require_api_token, service

bp = Blueprint("audit", __name__, url_prefix="/api/v1/audit")

MAX_LIMIT = 1000


@bp.before_request
def admin_only():
    require_api_token()
    if g.api_token["scope"] != "admin":
        raise Forbidden("reading the audit log needs an admin token")


def _number_arg(name: str, parse, **bounds):
    text = request.args.get(name)
    if text is None:
        return None
    try:
        value = parse(text)
    except ValueError:
        raise BadInput("must be a number", location=name) from None
    return rules.number(value, name, **bounds) if parse is float else rules.integer(value, name, **bounds)


@bp.get("")
def list_entries():
    unknown = sorted(set(request.args) - {"limit", "since"})
    if unknown:
        raise BadInput("unknown query parameter (allowed: limit, since)", location=unknown[0] or "query")
    limit = _number_arg("limit", int, minimum=1, maximum=MAX_LIMIT)
    since = _number_arg("since", float)
    return jsonify({"entries": audit.entries(service().engine, limit=limit or 100, since=since)})
