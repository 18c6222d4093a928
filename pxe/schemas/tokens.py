"""/api/v1/tokens."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from metalstream.errors import BadInput

from ..tokens import SCOPES
from .base import Request, rule, shape

MAX_COMMENT = 200


def _comment(value: Any, location: str) -> str | None:
    if value is not None and (not isinstance(value, str) or len(value) > MAX_COMMENT or not value.isprintable()):
        raise BadInput(f"must be printable text of at most {MAX_COMMENT} characters", location=location)
    return value


def _scope(value: Any, location: str) -> str:
    if value not in SCOPES:
        raise BadInput(f"must be one of {', '.join(SCOPES)}", location=location)
    return value


class TokenCreate(Request):
    scope: Annotated[Literal[SCOPES], rule(_scope)]
    comment: Annotated[str | None, rule(_comment)] = Field(None, max_length=MAX_COMMENT)

    @shape
    def _whole(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise BadInput("must be a JSON object", location="body")
        unknown = sorted(set(data) - {"scope", "comment"})
        if unknown:
            raise BadInput("unknown field (allowed: scope, comment)", location=unknown[0])
        _comment(data.get("comment"), "comment")  # the comment is checked first, as it always was
        _scope(data.get("scope"), "scope")
        return data


class TokenCreated(BaseModel):
    token: str = Field(description="the bearer token: shown this once")
    scope: Literal[SCOPES]


class Token(BaseModel):
    id: str
    scope: Literal[SCOPES]
    comment: str | None
    created_at: float
    revoked: bool


class TokenList(BaseModel):
    tokens: list[Token]
