"""The console's sign-in session: a sealed cookie, its CSRF token, and the same-origin check on actions.

The cookie holds, sealed with the service's secret box (Fernet: encrypted and authenticated, so it can
be neither read nor forged), the API token's *id*, a random CSRF token and an expiry time: never the
token itself. Every request re-reads the token's row, so revoking the token ends its sessions at once.
Signing out clears the cookie; the sealed value stays valid until it expires if someone copied it.
"""
from __future__ import annotations

import hmac
import json
import secrets
import time
from urllib.parse import urlsplit

from flask import Request
from sqlalchemy import select

from metalstream.errors import OperationFailed

from .. import db

COOKIE = "metalstream_console"
PURPOSE = "metalstream-console-session/1"
SESSION_SECONDS = 8 * 3600
CSRF_FIELD = "csrf_token"
CSRF_HEADER = "X-CSRF-Token"


def new_session(token_id: str, scope: str, now: float | None = None) -> dict:
    now = time.time() if now is None else now
    return {"p": PURPOSE, "token_id": token_id, "scope": scope, "csrf": secrets.token_urlsafe(32),
            "expires": now + SESSION_SECONDS}


def seal(box, session: dict) -> str:
    return box.seal(json.dumps(session, sort_keys=True))


def open_sealed(box, engine, sealed: str | None, now: float | None = None) -> dict | None:
    """The session a cookie value holds, if it is ours, unexpired, and its token still valid; else None."""
    if not sealed or len(sealed) > 4096:
        return None
    try:
        session = json.loads(box.unseal(sealed))
    except (OperationFailed, ValueError):
        return None
    if not isinstance(session, dict) or session.get("p") != PURPOSE:
        return None
    if not isinstance(session.get("expires"), (int, float)) or session["expires"] <= (time.time() if now is None else now):
        return None
    token_id = session.get("token_id")
    if not isinstance(token_id, str) or not db.matchable(token_id):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(db.api_tokens.c.scope, db.api_tokens.c.revoked)
                           .where(db.api_tokens.c.id == token_id)).first()
    if row is None or row.revoked:
        return None
    return {**session, "scope": row.scope}


def csrf_matches(session: dict, request: Request) -> bool:
    given = request.headers.get(CSRF_HEADER) or request.form.get(CSRF_FIELD) or ""
    return bool(given) and hmac.compare_digest(given.encode(), session["csrf"].encode())


def _origin_of(url: str) -> str | None:
    parts = urlsplit(url)
    if not parts.scheme or not parts.netloc:
        return None
    return f"{parts.scheme}://{parts.netloc}".lower()


def same_origin(request: Request, public_url: str | None) -> tuple[bool, str]:
    """Whether an unsafe request comes from a page of this service: its Origin (else its Referer) must be
    this request's own scheme://host or the configured public URL's. (ok, why not)"""
    claimed = request.headers.get("Origin")
    source = "Origin"
    if claimed == "null":
        return False, "the request's Origin is null (a sandboxed or foreign page)"
    if not claimed:
        claimed, source = request.headers.get("Referer"), "Referer"
    if not claimed:
        return False, "the request carries neither Origin nor Referer"
    origin = _origin_of(claimed)
    own = {_origin_of(request.host_url)} | ({_origin_of(public_url)} if public_url else set())
    if origin is None or origin not in own:
        return False, f"the request's {source} is not this service"
    return True, ""


def is_https(request: Request, public_url: str | None) -> bool:
    return request.is_secure or bool(public_url and public_url.lower().startswith("https://"))
