"""OpenAPI paths and schemas of /api/v1/webhooks (merged into pxe.openapi's document; docs/webhooks.md)."""
from __future__ import annotations

from .openapi import _nullable, _op, _path_param
from .webhooks import ALL, DELIVERY_STATES, EVENT_TYPES, MAX_URL, SECRET_MAX, SECRET_MIN


def _ref(name: str) -> dict:
    return {"$ref": f"#/components/schemas/{name}"}


_ID = [{**_path_param("webhook_id"), "description": "the subscription's id"}]
_URL = {"type": "string", "maxLength": MAX_URL, "example": "https://inventory.example/hooks/metalstream",
        "description": "http:// or https://; no user name or password, no fragment"}
_EVENT_TYPES = {"type": "array", "minItems": 1, "items": {"enum": [ALL, *EVENT_TYPES]},
                "description": f'the event types sent to it; "{ALL}": all (the default)'}
_SECRET = {"type": "string", "minLength": SECRET_MIN, "maxLength": SECRET_MAX, "pattern": "^[!-~]+$",
           "format": "password", "description": "signs the deliveries (HMAC-SHA256); stored encrypted, never returned "
                                                "(POST without one: the service makes one and returns it once)"}
_ENABLED = {"type": "boolean", "description": "a disabled subscription gets no new events; its pending ones wait"}
_WEBHOOK_PROPERTIES = {
    "id": {"type": "string"}, "url": {"type": "string"}, "event_types": {"type": "array", "items": {"type": "string"}},
    "enabled": {"type": "boolean"}, "created_at": {"type": "number"},
}

SCHEMAS = {
    "WebhookCreate": {"type": "object", "additionalProperties": False, "required": ["url"],
                      "properties": {"url": _URL, "event_types": _EVENT_TYPES, "secret": _SECRET, "enabled": _ENABLED}},
    "WebhookPatch": {"type": "object", "additionalProperties": False,
                     "properties": {"url": _URL, "event_types": _EVENT_TYPES,
                                    "secret": {**_SECRET, "description": "a new secret (not echoed)"},
                                    "enabled": _ENABLED}},
    "Webhook": {"type": "object", "additionalProperties": False, "required": list(_WEBHOOK_PROPERTIES),
                "properties": _WEBHOOK_PROPERTIES},
    "WebhookCreated": {
        "type": "object", "additionalProperties": False, "required": [*_WEBHOOK_PROPERTIES, "secret"],
        "properties": {**_WEBHOOK_PROPERTIES,
                       "secret": {"type": "string", "description": "the signing secret: shown this once"}}},
    "WebhookList": {"type": "object", "required": ["webhooks"],
                    "properties": {"webhooks": {"type": "array", "items": _ref("Webhook")}}},
    "WebhookDelivery": {
        "type": "object", "required": ["id", "event_id", "event_type", "state", "attempts", "last_status",
                                       "last_error", "next_attempt_at", "created_at", "delivered_at"],
        "properties": {
            "id": {"type": "integer"}, "event_id": {"type": "string", "description": "the event's id (receivers "
                                                                                      "dedupe on it)"},
            "event_type": {"type": "string"}, "state": {"enum": list(DELIVERY_STATES)},
            "attempts": {"type": "integer", "minimum": 0},
            "last_status": _nullable("integer", description="the receiver's last HTTP status (null: no answer)"),
            "last_error": _nullable("string", description="why the last attempt failed"),
            "next_attempt_at": _nullable("number", description="when it is tried next (pending only)"),
            "created_at": {"type": "number"}, "delivered_at": _nullable("number"),
        },
    },
    "WebhookDeliveryList": {"type": "object", "required": ["deliveries"],
                            "properties": {"deliveries": {"type": "array", "items": _ref("WebhookDelivery")}}},
}

PATHS = {
    "/api/v1/webhooks": {
        "get": _op("List webhook subscriptions", tag="webhooks", returns="WebhookList"),
        "post": _op("Subscribe a URL to events (admin); the answer carries the signing secret, once",
                    body="WebhookCreate", ok="201", tag="webhooks", returns="WebhookCreated"),
    },
    "/api/v1/webhooks/{webhook_id}": {
        "get": _op("Show a subscription", tag="webhooks", params=_ID, returns="Webhook"),
        "patch": _op("Change a subscription (admin)", body="WebhookPatch", tag="webhooks", params=_ID,
                     returns="Webhook"),
        "delete": _op("Delete a subscription and its deliveries (admin)", ok="204", tag="webhooks", params=_ID),
    },
    "/api/v1/webhooks/{webhook_id}/deliveries": {
        "get": _op("A subscription's deliveries, newest first: state, attempts, last answer, next attempt",
                   tag="webhooks", returns="WebhookDeliveryList", params=[
                       *_ID,
                       {"name": "state", "in": "query", "required": False, "schema": {"enum": list(DELIVERY_STATES)}},
                       {"name": "limit", "in": "query", "required": False,
                        "schema": {"type": "integer", "minimum": 1, "maximum": 1000, "default": 100}}]),
    },
}
