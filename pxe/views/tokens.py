"""/api/v1/tokens: list, create and revoke API tokens (admin scope)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from metalstream.errors import BadInput

from .. import tokens
from ..errors import Forbidden, NotFound
from .common import json_body, require_api_token, service

bp = Blueprint("tokens", __name__, url_prefix="/api/v1/tokens")


@bp.before_request
def admin_only():
    require_api_token()
    if g.api_token["scope"] != "admin":
        raise Forbidden("managing tokens needs an admin token")


@bp.get("")
def list_tokens():
    return jsonify({"tokens": tokens.list_api_tokens(service().engine)})


@bp.post("")
def create_token():
    body = json_body()
    if not isinstance(body, dict):
        raise BadInput("must be a JSON object", location="body")
    unknown = sorted(set(body) - {"scope", "comment"})
    if unknown:
        raise BadInput("unknown field (allowed: scope, comment)", location=unknown[0])
    comment = body.get("comment")
    if comment is not None and (not isinstance(comment, str) or len(comment) > 200 or not comment.isprintable()):
        raise BadInput("must be printable text of at most 200 characters", location="comment")
    if body.get("scope") not in tokens.SCOPES:
        raise BadInput(f"must be one of {', '.join(tokens.SCOPES)}", location="scope")
    token = tokens.create_api_token(service().engine, body["scope"], comment)
    g.audit_target = tokens.api_token_id(token)
    return jsonify({"token": token, "scope": body["scope"]}), 201


@bp.delete("/<token_id>")
def revoke_token(token_id: str):
    if not tokens.revoke_api_token(service().engine, token_id):
        raise NotFound(f"no token {token_id!r}", details={"field": "id"})
    return "", 204
