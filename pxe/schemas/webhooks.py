"""/api/v1/webhooks (docs/webhooks.md): subscriptions, and the query of their deliveries."""
from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field

from metalstream.contracts import rules
from metalstream.errors import BadInput

from ..webhooks import ALL, DELIVERY_STATES, EVENT_TYPES, MAX_URL, SECRET_MAX, SECRET_MIN, check_event_types, \
    check_secret, check_url
from .base import Query, Request, choice, fields_of, rule, shape

Url = Annotated[str, rule(check_url), Field(
    max_length=MAX_URL, examples=["https://inventory.example/hooks/metalstream"],
    description="http:// or https://; no user name or password, no fragment")]
EventTypes = Annotated[list[Literal[(ALL, *EVENT_TYPES)]], rule(check_event_types), Field(
    min_length=1, description=f'the event types sent to it; "{ALL}": all (the default)')]
Secret = Annotated[str, rule(check_secret), Field(
    min_length=SECRET_MIN, max_length=SECRET_MAX, pattern="^[!-~]+$", json_schema_extra={"format": "password"},
    description="signs the deliveries (HMAC-SHA256); stored encrypted, never returned (POST without one: the "
                "service makes one and returns it once)")]
Enabled = Annotated[bool, rule(rules.boolean), Field(
    description="a disabled subscription gets no new events; its pending ones wait")]


class WebhookCreate(Request):
    url: Url
    event_types: EventTypes = [ALL]
    secret: Secret = None  # type: ignore[assignment]
    enabled: Enabled = True

    @shape
    def _whole(cls, data: Any) -> Any:
        fields_of(data, cls)
        if "url" not in data:
            raise BadInput("is required", location="url")
        return data

    def subscription(self) -> dict:
        """{url, event_types, enabled} and the secret when given."""
        return self.model_dump(exclude_none=True)


class WebhookPatch(Request):
    url: Url = None  # type: ignore[assignment]
    event_types: EventTypes = None  # type: ignore[assignment]
    secret: Secret = None  # type: ignore[assignment]
    enabled: Enabled = None  # type: ignore[assignment]

    @shape
    def _whole(cls, data: Any) -> Any:
        return fields_of(data, cls)

    def change(self) -> dict:
        return self.model_dump(exclude_unset=True)


MAX_DELIVERIES = 1000


def _delivery_limit(value: Any, location: str) -> int:
    """Plain decimal digits (no sign, no space); leading zeros allowed."""
    digits = value.lstrip("0") if isinstance(value, str) and value.isascii() and value.isdigit() else None
    if digits is None or len(digits) > len(str(MAX_DELIVERIES)) or not 1 <= int(digits or "0") <= MAX_DELIVERIES:
        raise BadInput(f"must be an integer from 1 to {MAX_DELIVERIES}", location=location)
    return int(digits)


class DeliveryQuery(Query):
    """GET /api/v1/webhooks/{webhook_id}/deliveries."""

    state: Annotated[Literal[DELIVERY_STATES], choice(DELIVERY_STATES)] = Field(
        None, description="only deliveries in this state")
    limit: Annotated[int, rule(_delivery_limit)] = Field(
        100, ge=1, le=MAX_DELIVERIES, description="at most this many deliveries")


class Webhook(BaseModel):
    id: str
    url: str
    event_types: list[str]
    enabled: bool
    created_at: float


class WebhookCreated(Webhook):
    secret: str = Field(description="the signing secret: shown this once")


class WebhookList(BaseModel):
    webhooks: list[Webhook]


class WebhookDelivery(BaseModel):
    id: int
    event_id: str = Field(description="the event's id (receivers dedupe on it)")
    event_type: str
    state: Literal[DELIVERY_STATES]
    attempts: int = Field(ge=0)
    last_status: int | None = Field(description="the receiver's last HTTP status (null: no answer)")
    last_error: str | None = Field(description="why the last attempt failed")
    next_attempt_at: float | None = Field(description="when it is tried next (pending only)")
    created_at: float
    delivered_at: float | None


class WebhookDeliveryList(BaseModel):
    deliveries: list[WebhookDelivery]
