"""Secrets: API bearer tokens and per-deployment agent tokens. Only hashes are ever stored.

API token:   `msa_<id>_<secret>`  (id locates the row; the secret's sha256 is compared in constant time)
Agent token: `<deployment id>.<secret>` (same scheme; valid only while the deployment is booting/installing)
Secrets are 32 random bytes (256 bits), URL-safe base64, so they fit a kernel command line unquoted.
"""
from __future__ import annotations

import hashlib
import hmac
import secrets
import time

from sqlalchemy import select, update
from sqlalchemy.engine import Engine

from metalstream.errors import BadInput

from . import db

SCOPES = ("admin", "read")


def new_secret() -> str:
    return secrets.token_urlsafe(32)


def digest(secret: str) -> str:
    return hashlib.sha256(secret.encode()).hexdigest()


def matches(secret: str, stored_digest: str | None) -> bool:
    return stored_digest is not None and hmac.compare_digest(digest(secret), stored_digest)


def split_agent_token(token: str) -> tuple[str, str] | None:
    deployment_id, sep, secret = token.partition(".")
    return (deployment_id, secret) if sep and deployment_id and secret else None


def create_api_token(engine: Engine, scope: str, comment: str | None = None) -> str:
    if scope not in SCOPES:
        raise BadInput(f"scope must be one of {', '.join(SCOPES)}", location="--scope")
    token_id, secret = secrets.token_hex(6), new_secret()
    with engine.begin() as conn:
        conn.execute(db.api_tokens.insert().values(id=token_id, scope=scope, secret_sha256=digest(secret),
                                                   comment=comment, created_at=time.time(), revoked=False))
    return f"msa_{token_id}_{secret}"


def api_token_id(token: str) -> str:
    """The public id part of `msa_<id>_<secret>`."""
    return token.split("_")[1]


def authenticate_api_token(engine: Engine, token: str) -> dict | None:
    """`{"id", "scope"}` of a valid, unrevoked API token, or None."""
    prefix, _, rest = token.partition("_")
    token_id, _, secret = rest.partition("_")
    if prefix != "msa" or not token_id or not secret or not db.matchable(token_id):
        return None
    with engine.connect() as conn:
        row = conn.execute(select(db.api_tokens).where(db.api_tokens.c.id == token_id)).mappings().first()
    if row is None or row["revoked"] or not matches(secret, row["secret_sha256"]):
        return None
    return {"id": row["id"], "scope": row["scope"]}


def list_api_tokens(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(db.api_tokens.c.id, db.api_tokens.c.scope, db.api_tokens.c.comment,
                                   db.api_tokens.c.created_at, db.api_tokens.c.revoked)).mappings().all()
    return [dict(r) for r in rows]


def revoke_api_token(engine: Engine, token_id: str) -> bool:
    if not db.matchable(token_id):
        return False
    with engine.begin() as conn:
        return conn.execute(update(db.api_tokens).where(db.api_tokens.c.id == token_id)
                            .values(revoked=True)).rowcount == 1
