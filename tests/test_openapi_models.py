"""The OpenAPI document is made from the pydantic models that validate requests (pxe/schemas): every API
route has an operation whose answers are typed, and a change to a model shows in the document."""
from __future__ import annotations

import json

import pytest

from metalstream.errors import BadInput
from pxe.openapi import openapi_document
from pxe.openapi_paths import OPERATIONS
from pxe.schemas.base import parse
from pxe.schemas.deployments import DeploymentCreate
from pxe.schemas.machines import MachineCreate


def _untyped(schema, where: str) -> list[str]:
    """Places in a schema that say nothing about the value (a bare {} or an object without properties)."""
    if isinstance(schema, list):
        return [found for n, item in enumerate(schema) for found in _untyped(item, f"{where}[{n}]")]
    if not isinstance(schema, dict):
        return []
    found = [where] if schema == {} else []
    for key, value in schema.items():
        if key in ("properties", "headers", "responses", "content", "paths"):
            found += [f for name, item in value.items() for f in _untyped(item, f"{where}.{name}")]
        elif isinstance(value, (dict, list)) and key not in ("example", "default", "enum"):
            found += _untyped(value, f"{where}.{key}")
    return found


def test_every_api_route_has_an_operation_with_typed_answers(pxe_env):
    doc = openapi_document()
    routed = set()
    for rule in pxe_env.app.url_map.iter_rules():
        if rule.rule.startswith("/api/"):
            path = rule.rule.replace("<", "{").replace(">", "}")
            routed |= {(path, method.lower()) for method in rule.methods - {"HEAD", "OPTIONS"}}
    documented = {(path, method) for path, operations in doc["paths"].items() for method in operations}
    assert documented == routed
    for (path, method) in routed:
        operation = doc["paths"][path][method]
        assert any(status.startswith("2") for status in operation["responses"]), (path, method)
        for status, answer in operation["responses"].items():
            if status != "204":
                schema = next(iter(answer["content"].values()))["schema"]
                assert schema.get("$ref") or schema.get("type") == "string", (path, method, status)
    assert _untyped(doc, "doc") == []


def test_every_model_the_document_names_is_there():
    doc = openapi_document()
    names = set(doc["components"]["schemas"])
    refs = {ref.rsplit("/", 1)[1] for ref in _refs(doc)}
    assert refs <= names
    assert "anyOf" not in json.dumps(doc["components"]["schemas"]["DeploymentCreate"])  # 3.0: nullable, not null types


def _refs(node):
    if isinstance(node, dict):
        if "$ref" in node:
            yield node["$ref"]
        for value in node.values():
            yield from _refs(value)
    elif isinstance(node, list):
        for item in node:
            yield from _refs(item)


def test_the_document_is_made_from_the_request_models(monkeypatch):
    """A field added to a model is in the document: nothing is written twice."""
    from pydantic import Field, create_model

    import pxe.openapi_paths as paths

    grown = create_model("DeploymentCreate", __base__=DeploymentCreate,
                         colour=(str | None, Field(None, description="a field only this test has")))
    monkeypatch.setattr(paths, "OPERATIONS", tuple(
        op if op.body is not DeploymentCreate else paths.Operation(**{**op.__dict__, "body": grown})
        for op in OPERATIONS))
    monkeypatch.setattr("pxe.openapi.OPERATIONS", paths.OPERATIONS)
    schema = openapi_document()["components"]["schemas"]["DeploymentCreate"]
    assert schema["properties"]["colour"] == {"type": "string", "nullable": True,
                                              "description": "a field only this test has", "default": None}
    assert schema["required"] == ["image"] and schema["additionalProperties"] is False


def test_what_the_document_says_is_what_the_models_check():
    schemas = openapi_document()["components"]["schemas"]
    assert schemas["DeploymentCreate"]["properties"]["boot_mode"]["enum"] == ["bios", "uefi", "both"]
    assert schemas["MachineCreate"]["required"] == ["name", "macs"]
    assert schemas["BmcInput"]["properties"]["driver"]["enum"] == ["redfish", "ipmi", "manual"]
    assert schemas["NetworkDevice"]["properties"]["vlan_id"] == {"type": "integer", "minimum": 1, "maximum": 4094,
                                                                  "nullable": True, "default": None}


@pytest.mark.parametrize("body, location, words", [
    ({"mac": "52:54:00:12:34:56", "image": "tiny", "network": [{"device": "eth0"}, {"vlan_id": 9}]},
     "network[1].device", "a vlan needs a device name"),
    ({"mac": "52:54:00:12:34:56", "image": "tiny", "disk_hints": {"min_size_gib": float("nan")}},
     "disk_hints.min_size_gib", "must be a finite number"),
    ({"mac": "52:54:00:12:34:56", "image": "tiny", "kernel_args": ["quiet", "a;b"]}, "kernel_args[1]",
     "not an allowed kernel argument"),
    ({"mac": "52:54:00:12:34:56", "image": "tiny", "disk_hints": {"max_size_gib": 10**400}},
     "disk_hints.max_size_gib", "must be between"),
    ({"mac": "52:54:00:12:34:56", "image": "tiny", "colour": 1}, "colour", "unknown field (allowed: mac, image"),
    ([], "body", "must be a JSON object"),
])
def test_a_refusal_names_the_field_in_the_apis_spelling_with_the_rules_words(body, location, words):
    with pytest.raises(BadInput) as caught:
        parse(DeploymentCreate, body)
    assert caught.value.location == location and caught.value.reason.startswith(words)
    assert "Value error" not in caught.value.reason and "pydantic" not in caught.value.reason


def test_a_bmc_refusal_is_located_inside_the_bmc():
    with pytest.raises(BadInput) as caught:
        parse(MachineCreate, {"name": "n1", "macs": ["52:54:00:12:34:56"],
                              "bmc": {"driver": "ipmi", "address": "10.0.0.9", "password": "x" * 21}})
    assert caught.value.location == "bmc.password" and "at most 20 bytes" in caught.value.reason
