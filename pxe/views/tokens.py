"""/api/v1/tokens: list, create and revoke API tokens (admin scope)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify

from .. import tokens
from ..errors import Forbidden, NotFound
from ..schemas.base import parse
from ..schemas.tokens import TokenCreate
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
    body = parse(TokenCreate, json_body())
    token = tokens.create_api_token(service().engine, body.scope, body.comment)
    g.audit_target = tokens.api_token_id(token)
    return jsonify({"token": token, "scope": body.scope}), 201


@bp.delete("/<token_id>")
def revoke_token(token_id: str):
    if not tokens.revoke_api_token(service().engine, token_id):
        raise NotFound(f"no token {token_id!r}", details={"field": "id"})
    return "", 204
