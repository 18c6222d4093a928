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


# --- query parameters: a list endpoint's query model is what the view parses and what the document lists ---

def _parameters(doc: dict, path: str) -> dict[str, dict]:
    return {param["name"]: param for param in doc["paths"][path]["get"]["parameters"] if param["in"] == "query"}


def test_the_query_parameters_are_the_query_models_fields():
    from pxe import machine_states

    doc = openapi_document()
    machines = _parameters(doc, "/api/v1/machines")
    assert list(machines) == ["state", "tag", "mac", "min_memory_mib", "min_cpus", "min_disks", "min_disk_bytes",
                              "firmware"]
    assert machines["state"] == {"name": "state", "in": "query", "required": False, "description":
                                 "only machines in this state",
                                 "schema": {"type": "string", "enum": list(machine_states.STATES)}}
    assert machines["min_cpus"]["schema"] == {"type": "integer", "minimum": 0, "maximum": 10**18 - 1}
    assert _parameters(doc, "/api/v1/deployments")["state"]["schema"]["enum"][0] == "pending"
    assert _parameters(doc, "/api/v1/audit")["limit"]["schema"] == {"type": "integer", "minimum": 1, "maximum": 1000,
                                                                     "default": 100}
    deliveries = _parameters(doc, "/api/v1/webhooks/{webhook_id}/deliveries")
    assert deliveries["state"]["schema"]["enum"] == ["pending", "delivered", "failed"]
    assert deliveries["limit"]["schema"]["default"] == 100


def test_a_query_model_change_shows_in_the_document(monkeypatch):
    from typing import Annotated, Literal

    from pydantic import Field, create_model

    import pxe.openapi_paths as paths
    from pxe.schemas.base import choice
    from pxe.schemas.machines import MachineFilters

    grown = create_model("MachineFilters", __base__=MachineFilters, rack=(
        Annotated[Literal["a", "b"], choice(("a", "b"))], Field(None, description="a filter only this test has")))
    monkeypatch.setattr(paths, "OPERATIONS", tuple(
        op if op.query is not MachineFilters else paths.Operation(**{**op.__dict__, "query": grown})
        for op in OPERATIONS))
    monkeypatch.setattr("pxe.openapi.OPERATIONS", paths.OPERATIONS)
    assert _parameters(openapi_document(), "/api/v1/machines")["rack"] == {
        "name": "rack", "in": "query", "required": False, "description": "a filter only this test has",
        "schema": {"type": "string", "enum": ["a", "b"]}}
    assert parse(grown, {"rack": "b"}).given() == {"rack": "b"}
    with pytest.raises(BadInput) as caught:
        parse(grown, {"rack": "c"})
    assert caught.value.location == "rack" and caught.value.reason == "must be one of a, b (got 'c')"


@pytest.mark.parametrize("model, args, location, words", [
    ("machines.MachineFilters", {"colour": "red"}, "colour", "unknown query parameter (allowed: state, tag, mac, "
     "min_memory_mib, min_cpus, min_disks, min_disk_bytes, firmware)"),
    ("machines.MachineFilters", {"": "x"}, "query", "unknown query parameter (allowed: state, tag,"),
    ("machines.MachineFilters", {"min_disks": "-1"}, "min_disks", "must be a non-negative integer"),
    ("machines.MachineFilters", {"tag": ""}, "tag", "must not be empty"),
    ("deployments.DeploymentFilters", {"mac": "nope"}, "mac", "not a MAC address: 'nope'"),
    ("deployments.DeploymentFilters", {"x": "1"}, "x", "unknown query parameter (allowed: state, mac)"),
    ("meta.AuditQuery", {"limit": "abc"}, "limit", "must be a number"),
    ("meta.AuditQuery", {"limit": "0"}, "limit", "must be between 1 and 1000"),
    ("meta.AuditQuery", {"since": "nan"}, "since", "must be a finite number"),
    ("webhooks.DeliveryQuery", {"limit": "+5"}, "limit", "must be an integer from 1 to 1000"),
    ("webhooks.DeliveryQuery", {"state": "lost"}, "state", "must be one of pending, delivered, failed"),
])
def test_a_query_refusal_names_the_parameter_with_the_rules_words(model, args, location, words):
    import importlib

    module, name = model.split(".")
    with pytest.raises(BadInput) as caught:
        parse(getattr(importlib.import_module(f"pxe.schemas.{module}"), name), args)
    assert caught.value.location == location and caught.value.reason.startswith(words)


def test_a_query_model_types_what_it_accepts():
    from pxe.schemas.deployments import DeploymentFilters
    from pxe.schemas.machines import MachineFilters
    from pxe.schemas.meta import AuditQuery
    from pxe.schemas.webhooks import DeliveryQuery

    assert parse(MachineFilters, {"mac": "52-54-00-AA-00-02", "min_cpus": "004"}).given() == {
        "mac": "52:54:00:aa:00:02", "min_cpus": 4}
    assert parse(MachineFilters, {}).given() == {}
    assert (parse(DeploymentFilters, {}).state, parse(DeploymentFilters, {"mac": "5254001234AB"}).mac) == \
        (None, "52:54:00:12:34:ab")
    assert (parse(AuditQuery, {}).limit, parse(AuditQuery, {"limit": " 5", "since": "1.5"}).model_dump()) == \
        (100, {"limit": 5, "since": 1.5})
    assert (parse(DeliveryQuery, {}).limit, parse(DeliveryQuery, {"limit": "0" * 5000 + "7"}).limit) == (100, 7)
