"""schemathesis over the whole REST API with every check: no 5xx, answers as documented, and no
response body carrying an exception name, SQL or a file path."""
from __future__ import annotations

import re

import pytest
import schemathesis
from hypothesis import HealthCheck, settings
from schemathesis import DataGenerationMethod
from schemathesis.checks import ALL_CHECKS
from schemathesis.specs.openapi.checks import negative_data_rejection

from pxe.openapi import openapi_document

LEAK = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|\bSELECT\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b|"
                  r"sqlite|psycopg|site-packages|\.py\b|(?<![\w.])/(tmp|var|usr|etc|home|root|proc|dev)/")


@pytest.fixture
def api_schema(pxe_env):
    return schemathesis.from_dict(openapi_document(), app=pxe_env.app,
                                  data_generation_methods=DataGenerationMethod.all())


schema = schemathesis.from_pytest_fixture("api_schema")


@pytest.fixture
def agent_headers(pxe_env) -> dict:
    pxe_env.pending()
    return {"Authorization": f"Bearer {pxe_env.boot_token()}"}


def _checks_for(case) -> tuple:
    """All checks; an operation without parameters or body has nothing to negate, so schemathesis's
    'negative' cases for it are valid requests and must not be held to negative_data_rejection."""
    definition = case.operation.definition.raw
    if definition.get("parameters") or definition.get("requestBody"):
        return ALL_CHECKS
    return tuple(check for check in ALL_CHECKS if check is not negative_data_rejection)


@schema.parametrize()
@settings(max_examples=40, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
def test_the_api_holds_under_generated_requests(case, pxe_env, agent_headers):
    auth = agent_headers if case.path.startswith("/api/v1/agent/") else pxe_env.admin
    brought = any(name.lower() == "authorization" for name in case.headers or {})  # negative cases may
    response = case.call_wsgi(headers=None if brought else auth)
    case.validate_response(response, checks=_checks_for(case), headers=None if brought else auth,
                           transport_kwargs={"headers": auth})
    body = response.get_data(as_text=True)
    assert not LEAK.search(body), (response.status_code, body[:500])


def _json_schema(openapi_schema):
    """An OpenAPI 3.0 schema as JSON Schema: `nullable: true` becomes a type that also admits null."""
    if isinstance(openapi_schema, list):
        return [_json_schema(item) for item in openapi_schema]
    if not isinstance(openapi_schema, dict):
        return openapi_schema
    schema = {key: _json_schema(value) for key, value in openapi_schema.items() if key != "nullable"}
    if openapi_schema.get("nullable") and "type" in schema:
        schema["type"] = [schema["type"], "null"]
    return schema


@pytest.mark.parametrize("secure_boot", [True, False, None])
def test_the_published_agent_schemas_admit_what_the_agent_sends(secure_boot):
    from jsonschema import validate

    from metalstream.contracts.events import event_document, result_document

    schemas = openapi_document()["components"]["schemas"]
    event = event_document("start", "starting", None, None, 1700000000.0, seq=1, secure_boot=secure_boot)
    failure = result_document(success=False, phase="disk", error="no disk matches", log="...", root_uuid=None,
                              time=1700000040.0, secure_boot=secure_boot)
    assert ("secure_boot" in event) == ("secure_boot" in failure) == (secure_boot is not None)
    for document, name in ((event, "Event"), (failure, "Result")):
        validate(document, _json_schema(schemas[name]))
        validate({**document, "secure_boot": secure_boot}, _json_schema(schemas[name]))  # null too
