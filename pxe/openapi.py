"""The OpenAPI 3 description of the REST API (hand-written; a test checks it matches the routes)."""
from __future__ import annotations

from metalstream.contracts.plan import DISK_HINT_FIELDS
from metalstream.contracts.rules import BOOT_MODES, PHASES, STATES

_ERROR = {"description": "error", "content": {"application/json": {"schema": {"$ref": "#/components/schemas/Error"}}}}
_ERRORS = {code: _ERROR for code in ("400", "401", "403", "404", "409", "413", "429")}
_INSTALLER_SECURE_BOOT = {"type": "boolean", "nullable": True,
                          "description": "whether the installer booted with Secure Boot on (absent or null: unknown)"}


def _op(summary: str, *, body: str | None = None, ok: str | tuple[str, ...] = "200", tag: str,
        params: list | None = None, agent: bool = False, returns: str | None = None) -> dict:
    successes = (ok,) if isinstance(ok, str) else ok
    success = {"description": "success"}
    if returns:
        success["content"] = {"application/json": {"schema": {"$ref": f"#/components/schemas/{returns}"}}}
    op = {"summary": summary, "tags": [tag], "responses": {**{code: success for code in successes}, **_ERRORS}}
    if body:
        op["requestBody"] = {"required": True,
                             "content": {"application/json": {"schema": {"$ref": f"#/components/schemas/{body}"}}}}
    if params:
        op["parameters"] = params
    op["security"] = [{"agentToken": []}] if agent else [{"apiToken": []}]
    return op


def _path_param(name: str) -> dict:
    return {"name": name, "in": "path", "required": True, "schema": {"type": "string"}}


def _nullable(kind: str, **more) -> dict:
    return {"type": kind, "nullable": True, **more}


def _network_device_schema() -> dict:
    """One of the host's network devices (metalstream.contracts.network.NetworkDevice; docs/agent.md)."""
    from dataclasses import fields

    from metalstream.contracts.network import BOOTPROTOS, NetworkDevice

    properties = {}
    for f in fields(NetworkDevice):  # annotations are text: "str | None", "list[str]", "bool", ...
        kind = f.type.removesuffix(" | None")
        schema = ({"type": "array", "items": {"type": "string"}} if kind.startswith("list")
                  else {"type": {"str": "string", "int": "integer", "bool": "boolean"}[kind]})
        properties[f.name] = {**schema, "nullable": True} if f.type.endswith(" | None") else schema
    properties["bootproto"] = {"enum": list(BOOTPROTOS), "default": "dhcp"}
    properties["vlan_id"] = _nullable("integer", minimum=1, maximum=4094)
    return {"type": "object", "additionalProperties": False, "properties": properties}


def _deployment_schema() -> dict:
    """GET /api/v1/deployments/{id}: the fields a client reads (more may be added)."""
    text, number, integer = _nullable("string"), _nullable("number"), _nullable("integer")
    return {
        "type": "object",
        "required": ["id", "mac", "image", "state", "created_at", "updated_at", "request", "boot_path",
                     "first_stage", "secure_boot"],
        "properties": {
            "id": {"type": "string"}, "mac": {"type": "string"}, "image": {"type": "string"},
            "hostname": text, "state": {"enum": list(STATES)}, "phase": text, "message": text, "error": text,
            "bytes_done": integer, "bytes_total": integer, "eta_seconds": number,
            "created_at": {"type": "number"}, "updated_at": {"type": "number"}, "last_seen_at": number,
            "root_uuid": text, "check_message": text,
            "request": {"type": "object", "description": "the request as sent, secrets replaced by their sha256"},
            "boot_path": _nullable("string", description="how the machine reached the installer: ipxe, grub-http "
                                                         "or shim-grub (null until its boot script is served)"),
            "first_stage": _nullable("object", description="the last first-stage loader it fetched over TFTP",
                                     properties={"loader": {"type": "string"}, "client": {"type": "string"},
                                                 "mac": text, "at": {"type": "number"}}),
            "secure_boot": {
                "type": "object", "required": ["requested", "installer", "target"],
                "properties": {
                    "requested": {"type": "boolean", "description": "asked for by the request or its kickstart"},
                    "installer": _nullable("boolean", description="the installer booted with Secure Boot on "
                                                                  "(reported by the agent)"),
                    "target": _nullable("boolean", description="the installed system booted with Secure Boot on "
                                                               "(the activation check)"),
                },
            },
            "events": _nullable("array", items={"type": "object"}),
            "machine": _nullable("string", description="the id of the machine it installs (null: a MAC of no "
                                                       "registered machine)"),
        },
    }


# Modules that describe their own routes: each has PATHS and SCHEMAS (dicts merged into the document).
PARTS = ("pxe.openapi_machines", "pxe.openapi_power", "pxe.openapi_webhooks", "pxe.openapi_inspection",
         "pxe.openapi_uploads")


def openapi_document() -> dict:
    document = _core_document()
    import importlib
    for name in PARTS:
        try:
            part = importlib.import_module(name)
        except ModuleNotFoundError as exc:
            if exc.name != name:
                raise
            continue
        document["paths"].update(part.PATHS)
        document["components"]["schemas"].update(part.SCHEMAS)
    return document


def _core_document() -> dict:
    idem = {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string", "maxLength": 200}}
    return {
        "openapi": "3.0.3",
        "info": {"title": "metalstream service API", "version": "1"},
        "paths": {
            "/api/v1/images": {
                "get": _op("List images", tag="images"),
                "post": _op("Register an image from a manifest on the server", body="ImageAdd", ok="201", tag="images"),
            },
            "/api/v1/images/{name}": {
                "get": _op("Show an image", tag="images", params=[_path_param("name")]),
                "delete": _op("Delete an image (409 while an open deployment uses it)", ok="204", tag="images",
                              params=[_path_param("name")]),
            },
            "/api/v1/deployments": {
                "get": _op("List deployments (filters: state, mac)", tag="deployments", returns="DeploymentList",
                           params=[{"name": "state", "in": "query", "schema": {"type": "string"}},
                                   {"name": "mac", "in": "query", "schema": {"type": "string"}}]),
                "post": _op("Create a deployment (idempotent with Idempotency-Key: a replay answers 200)",
                            body="DeploymentCreate", ok=("201", "200"),
                            tag="deployments", params=[idem], returns="Deployment"),
            },
            "/api/v1/deployments/{dep_id}": {
                "get": _op("Show a deployment with its events", tag="deployments", params=[_path_param("dep_id")],
                           returns="Deployment"),
                "delete": _op("Cancel a deployment", tag="deployments", params=[_path_param("dep_id")],
                              returns="Deployment"),
            },
            "/api/v1/deployments/{dep_id}/log": {
                "get": _op("The agent's log (text/plain)", tag="deployments", params=[_path_param("dep_id")]),
            },
            "/api/v1/tokens": {
                "get": _op("List API tokens (admin)", tag="tokens"),
                "post": _op("Create an API token (admin)", body="TokenCreate", ok="201", tag="tokens"),
            },
            "/api/v1/tokens/{token_id}": {
                "delete": _op("Revoke an API token (admin)", ok="204", tag="tokens", params=[_path_param("token_id")]),
            },
            "/api/v1/audit": {
                "get": _op("The audit log of mutating API calls, newest first (admin)", tag="audit", params=[
                    {"name": "limit", "in": "query", "schema": {"type": "integer", "minimum": 1, "maximum": 1000}},
                    {"name": "since", "in": "query", "schema": {"type": "number"}}]),
            },
            "/api/v1/agent/plan": {"get": _op("The deploy plan (metalstream-plan/1.x)", tag="agent", agent=True)},
            "/api/v1/agent/events": {"post": _op("Report progress", body="Event", tag="agent", agent=True)},
            "/api/v1/agent/result": {"post": _op("Report the final result", body="Result", tag="agent", agent=True)},
            "/api/v1/openapi.json": {"get": _op("This document", tag="meta")},
        },
        "components": {
            "securitySchemes": {
                "apiToken": {"type": "http", "scheme": "bearer", "description": "metalstream token create"},
                "agentToken": {"type": "http", "scheme": "bearer", "description": "from metalstream.token= on the "
                               "installer's kernel command line"},
            },
            "schemas": {
                "Error": {"type": "object", "required": ["error"],
                          "properties": {"error": {"type": "string"}, "field": {"type": "string"}}},
                "ImageAdd": {"type": "object", "additionalProperties": False, "required": ["manifest"],
                             "properties": {"manifest": {"type": "string", "description": "absolute path"}}},
                "TokenCreate": {"type": "object", "additionalProperties": False, "required": ["scope"],
                                "properties": {"scope": {"enum": ["admin", "read"]}, "comment": {"type": "string"}}},
                "DeploymentCreate": {
                    "type": "object", "additionalProperties": False, "required": ["image"],
                    "anyOf": [{"required": ["mac"]}, {"required": ["machine"]}],
                    "properties": {
                        "mac": {"type": "string", "example": "52:54:00:12:34:56",
                                "description": "the MAC that network-boots; with `machine`, one of its MACs "
                                               "(default: its only one)"},
                        "machine": {"type": "string", "description": "a registered machine's id or name "
                                                                    "(/api/v1/machines)"},
                        "image": {"type": "string"},
                        "image_sha256": {"type": "string", "pattern": "^[0-9a-f]{64}$"},
                        "hostname": {"type": "string"},
                        "disk_hints": {"type": "object", "additionalProperties": False,
                                       "properties": {name: {} for name in DISK_HINT_FIELDS}},
                        "boot_mode": {"enum": list(BOOT_MODES), "default": "both"},
                        "root_password_hash": {"type": "string"},
                        "ssh_keys": {"type": "array", "items": {"type": "string"}},
                        "kernel_args": {"type": "array", "items": {"type": "string"}},
                        "kickstart": {"type": "string"},
                        "ssh_address": {"type": "string", "example": "127.0.0.1:2222"},
                        "network": {"type": "array", "maxItems": 64, "items": _network_device_schema(),
                                    "description": "this host's network devices (docs/agent.md); when given, "
                                                   "they replace the kickstart's network lines"},
                        "reboot_method": {"enum": ["firmware", "kexec"],
                                          "description": "how the agent boots the installed system: a firmware "
                                                         "reboot, or kexec into its kernel (a firmware reboot "
                                                         "where kexec is not possible; an event says which). "
                                                         "Default: `metalstream serve --reboot-method`"},
                        "secure_boot": {"type": "boolean", "default": False,
                                        "description": "boot the image's signed shim, grub and kernel with Secure "
                                                       "Boot on (400 when the image lacks them or boot_mode is bios); "
                                                       "when given, true or false overrides the kickstart's "
                                                       "secure_boot"},
                    },
                },
                "Deployment": _deployment_schema(),
                "DeploymentList": {"type": "object", "required": ["deployments"], "properties": {
                    "deployments": {"type": "array", "items": {"$ref": "#/components/schemas/Deployment"}}}},
                "Event": {"type": "object", "additionalProperties": False, "required": ["phase"],
                          "properties": {"phase": {"enum": list(PHASES)}, "message": {"type": "string"},
                                         "bytes_done": {"type": "integer", "nullable": True},
                                         "bytes_total": {"type": "integer", "nullable": True},
                                         "time": {"type": "number"},
                                         "seq": {"type": "integer", "minimum": 1,
                                                 "description": "1, 2, ... per agent run: a retried event is "
                                                                "stored once"},
                                         "secure_boot": _INSTALLER_SECURE_BOOT}},
                "Result": {"type": "object", "additionalProperties": False, "required": ["success", "phase"],
                           "properties": {"success": {"type": "boolean"}, "phase": {"enum": list(PHASES)},
                                          "error": {"type": "string", "nullable": True}, "log": {"type": "string"},
                                          "root_uuid": {"type": "string", "nullable": True},
                                          "time": {"type": "number"}, "secure_boot": _INSTALLER_SECURE_BOOT}},
            },
        },
    }
