"""The OpenAPI 3.0 document of the REST API, generated from the pydantic models in pxe.schemas: the
request models are the ones the views validate bodies with, so the document and the validation cannot
disagree. Operations are declared in pxe.openapi_paths (summary, body, answers, parameters)."""
from __future__ import annotations

from typing import Any

from pydantic.json_schema import models_json_schema

from .openapi_paths import OPERATIONS, TEXT, Operation
from .schemas.common import Error

REF = "#/components/schemas/{model}"
_SECURITY = {
    "apiToken": {"type": "http", "scheme": "bearer", "description": "metalstream token create"},
    "agentToken": {"type": "http", "scheme": "bearer",
                   "description": "from metalstream.token= on the installer's kernel command line"},
}
_ERROR_WHY = {"400": "the request is wrong (`field` names what)", "401": "no valid token",
              "403": "the token's scope does not allow it", "404": "not found (`field` names what)",
              "409": "in conflict with the stored state", "413": "the body is too large",
              "429": "too many failed sign-ins from this address (Retry-After)", "502": "the BMC failed"}


def openapi_document() -> dict:
    models = {model for op in OPERATIONS for model in op.models()} | {Error}
    refs, top = models_json_schema([(model, "validation") for model in sorted(models, key=lambda m: m.__name__)],
                                   ref_template=REF)
    return {
        "openapi": "3.0.3",
        "info": {"title": "metalstream service API", "version": "1"},
        "paths": _paths(),
        "components": {"securitySchemes": _SECURITY,
                       "schemas": {name: openapi30(schema) for name, schema in sorted(top["$defs"].items())}},
    }


def _paths() -> dict:
    paths: dict[str, dict] = {}
    for op in OPERATIONS:
        paths.setdefault(op.path, {})[op.method] = _operation(op)
    return paths


def _ref(model) -> dict:
    return {"$ref": REF.format(model=model.__name__)}


def _operation(op: Operation) -> dict:
    responses: dict[str, Any] = {}
    for status, answer in op.answers().items():
        if answer is None:
            responses[status] = {"description": "no content"}
        elif answer == TEXT:
            responses[status] = {"description": "text", "content": {TEXT: {"schema": {"type": "string"}}}}
        else:
            description = _ERROR_WHY.get(status, "success") if status >= "400" else "success"
            responses[status] = {"description": description, "content": {"application/json": {"schema": _ref(answer)}}}
        if status in op.headers:
            responses[status]["headers"] = op.headers[status]
    out: dict[str, Any] = {"summary": op.summary, "tags": [op.tag], "responses": responses,
                           "security": [{"agentToken": []}] if op.agent else [{"apiToken": []}]}
    if op.body is not None:
        out["requestBody"] = {"required": True, "content": {"application/json": {"schema": _ref(op.body)}}}
    elif op.raw_body is not None:
        out["requestBody"] = {"required": True, "content": {op.raw_body: {"schema": {"type": "string",
                                                                                    "format": "binary"}}}}
    parameters = [*({"name": name, "in": "path", "required": True, "schema": {"type": "string"},
                     **({"description": op.path_doc} if op.path_doc else {})} for name in op.path_names()),
                  *(openapi30(param) for param in op.parameters())]
    if parameters:
        out["parameters"] = parameters
    return out


def openapi30(schema: Any) -> Any:
    """A pydantic (JSON Schema 2020-12) schema in OpenAPI 3.0's dialect: `X | None` as `nullable`, `const`
    as a one-value `enum`, `examples` as `example`."""
    if isinstance(schema, list):
        return [openapi30(item) for item in schema]
    if not isinstance(schema, dict):
        return schema
    out = {key: openapi30(value) for key, value in schema.items() if key not in ("title", "examples")}
    if "examples" in schema and isinstance(schema["examples"], list) and schema["examples"]:
        out["example"] = schema["examples"][0]
    if "const" in out:
        out["enum"] = [out.pop("const")]
    variants = out.get("anyOf")
    if variants and {"type": "null"} in variants:
        rest = [variant for variant in variants if variant != {"type": "null"}]
        del out["anyOf"]
        if len(rest) == 1 and "$ref" not in rest[0]:
            out = {**rest[0], **out}
        elif len(rest) == 1:
            out["allOf"] = rest
        else:
            out["anyOf"] = rest
        out["nullable"] = True
    if out.get("default", 0) is None and not out.get("nullable"):
        del out["default"]  # a field that is absent by default, never null
    return out
