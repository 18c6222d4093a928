"""The web console at /console/: server-rendered pages (Jinja, autoescaped), live parts refreshed by a
small script of our own, actions as forms protected by a CSRF token and an Origin check (docs/console.md).

Every request but sign-in needs the sealed session cookie (session.py); actions need an admin token's
session. Pages forbid every source but the service itself (Content-Security-Policy): no inline script,
nothing from another host.
"""
from __future__ import annotations

from datetime import datetime, timezone

from flask import Blueprint, g, redirect, render_template, request, url_for
from werkzeug.exceptions import HTTPException

from metalstream.errors import BadInput, MetalstreamError

from .. import audit
from ..errors import http_status
from ..views.common import service
from . import session

bp = Blueprint("console", __name__, url_prefix="/console", template_folder="templates",
               static_folder="static", static_url_path="/static")

OPEN_ENDPOINTS = {"console.sign_in_page", "console.sign_in", "console.static"}
CONTENT_SECURITY_POLICY = ("default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self'; "
                           "connect-src 'self'; form-action 'self'; frame-ancestors 'none'; base-uri 'none'")


class ConsoleRefusal(HTTPException):
    """A 401/403 of the console, answered as a page (and the session's absence as a sign-in redirect)."""

    def __init__(self, code: int, description: str):
        super().__init__(description)
        self.code = code


def _is_fragment() -> bool:
    return request.endpoint is not None and request.endpoint.endswith("_part")


@bp.before_request
def require_session():
    if request.endpoint in OPEN_ENDPOINTS:
        return None
    current = session.open_sealed(service().secrets, service().engine, request.cookies.get(session.COOKIE))
    if request.method not in ("GET", "HEAD"):
        ok, why = session.same_origin(request, service().config.public_url)
        if not ok:
            raise ConsoleRefusal(403, why)
    if current is None:
        if request.method in ("GET", "HEAD") and not _is_fragment():
            return redirect(url_for("console.sign_in_page", next=request.full_path.rstrip("?")))
        raise ConsoleRefusal(401, "not signed in, or the session expired: sign in again")
    g.console = current
    g.api_token = {"id": current["token_id"], "scope": current["scope"]}
    if request.method not in ("GET", "HEAD"):
        if not session.csrf_matches(current, request):
            raise ConsoleRefusal(403, "the form's CSRF token is missing or wrong: reload the page and try again")
        if current["scope"] != "admin" and request.endpoint != "console.sign_out":
            raise ConsoleRefusal(403, f"a {current['scope']}-scope token may only look; this needs an admin token")
    return None


@bp.app_context_processor
def console_context():
    current = g.get("console")
    return {"console_session": current, "csrf_token": current["csrf"] if current else "",
            "can_act": bool(current and current["scope"] == "admin")}


@bp.app_template_filter("utc")
def utc(seconds) -> str:
    """A time as UTC text: what the page shows until its script puts it in the browser's time zone."""
    if not isinstance(seconds, (int, float)) or seconds <= 0:
        return ""
    return datetime.fromtimestamp(seconds, timezone.utc).strftime("%Y-%m-%d %H:%M:%S UTC")


@bp.after_request
def headers(response):
    response.headers["Content-Security-Policy"] = CONTENT_SECURITY_POLICY
    response.headers["X-Content-Type-Options"] = "nosniff"
    response.headers["Referrer-Policy"] = "same-origin"
    if request.endpoint != "console.static":
        response.headers["Cache-Control"] = "no-store"
    return response


@bp.after_request
def record_action(response):
    if request.method not in ("GET", "HEAD") and request.endpoint not in (None, "console.sign_in", "console.sign_out"):
        caller = g.get("console")
        audit.record(service().engine, token_id=caller["token_id"] if caller else None, client=request.remote_addr,
                     action=f"{request.method} {request.url_rule.rule if request.url_rule else request.path}",
                     target=g.get("audit_target"), status=response.status_code)
    return response


@bp.errorhandler(ConsoleRefusal)
def refused(exc: ConsoleRefusal):
    return _error_page(exc.code, exc.description)


@bp.errorhandler(MetalstreamError)
def typed_error(exc: MetalstreamError):
    if isinstance(exc, BadInput):
        message = f"{exc.location}: {exc.reason}" if exc.location else exc.reason
    else:
        message = exc.message
    page, status, headers = _error_page(http_status(exc), message)
    return page, status, {**headers, **(getattr(exc, "headers", None) or {})}  # Retry-After on a 429


@bp.errorhandler(HTTPException)
def http_error(exc: HTTPException):
    return _error_page(exc.code or 500, exc.description or exc.name)


def _error_page(status: int, message: str):
    if _is_fragment():
        return message, status, {"Content-Type": "text/plain; charset=utf-8"}
    return render_template("console_error.html", status=status, message=message), status, {}


from . import views  # noqa: E402,F401  (routes register on bp)
