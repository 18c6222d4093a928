"""Helpers shared by the blueprints: the service object, JSON bodies, server URL, API auth."""
from __future__ import annotations

from flask import abort, current_app, g, request

from metalstream.contracts import jsontext
from metalstream.errors import BadInput

from .. import authguard, tokens
from ..errors import Forbidden, Unauthorized
from ..render import SAFE_URL
from ..service import Service


def service() -> Service:
    return current_app.extensions["metalstream"]


def json_body() -> object:
    raw = request.get_data(cache=True)
    limit = current_app.config.get("MAX_CONTENT_LENGTH")
    if request.content_length is None and limit is not None and len(raw) >= limit:
        request.stream.read(1)  # a chunked body stops at the limit: reading on raises 413 if there is more
    if not raw:
        raise BadInput("request body is empty; send a JSON object", location="body")
    try:
        return jsontext.loads(raw)
    except BadInput as exc:
        raise exc.relocated(exc.location or "body") from None


def base_url() -> str:
    """The URL machines reach this service at: configured, or this request's scheme and Host."""
    url = service().config.public_url or request.host_url.rstrip("/")
    if not SAFE_URL.match(url):
        abort(400, description="the Host header is not a plain host[:port]")
    return url


def bearer_token() -> str | None:
    header = request.headers.get("Authorization", "")
    scheme, _, value = header.partition(" ")
    return value.strip() if scheme.lower() == "bearer" and value.strip() else None


def require_api_token() -> None:
    """before_request hook for the admin/read API: a valid token; read scope may only GET."""
    token = bearer_token()
    if token is None:
        raise Unauthorized("missing bearer token (Authorization: Bearer msa_...; create one with "
                           "`metalstream token create`)")
    engine = service().engine
    authguard.check_not_blocked(engine, request.remote_addr)
    caller = tokens.authenticate_api_token(engine, token)
    if caller is None:
        authguard.record_failure(engine, service().config, request.remote_addr, "api")
        raise Unauthorized("invalid or revoked API token")
    g.api_token = caller
    scope = caller["scope"]
    if scope != "admin" and request.method not in ("GET", "HEAD"):
        raise Forbidden(f"a {scope}-scope token may only read; this needs an admin token")
