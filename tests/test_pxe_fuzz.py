"""schemathesis against a live `metalstream serve` (gunicorn on loopback, as users run it, on SQLite and on
PostgreSQL), over every operation of the OpenAPI document the service publishes, with every check: no 5xx,
answers as documented, and no response body carrying an exception name, SQL or a file path."""
from __future__ import annotations

import re
import subprocess
from dataclasses import dataclass

import pytest
import requests
import schemathesis
from hypothesis import HealthCheck, assume, settings
from schemathesis import DataGenerationMethod, GenerationConfig
from schemathesis.checks import ALL_CHECKS
from schemathesis.specs.openapi.checks import negative_data_rejection

from pxe.openapi import openapi_document

from conftest import METALSTREAM
from fixtures_pxe import DATABASES, PXE_MAC, cli_admin_token, db_options

# A control character other than HTAB, which HTTP forbids in a header value (RFC 9110 5.5): gunicorn answers such a
# request with its own HTML 400 before the service sees it, as a proxy in front would.
NOT_HTTP = re.compile(r"[\x00-\x08\x0a-\x1f\x7f]")
LEAK = re.compile(r"Traceback|\b[A-Z]\w*(Error|Exception)\b|\bSELECT\b|\bINSERT INTO\b|\bUPDATE \w+ SET\b|"
                  r"sqlite|psycopg|site-packages|\.py\b|(?<![\w.])/(tmp|var|usr|etc|home|root|proc|dev)/")


@dataclass
class LiveService:
    url: str
    admin: dict
    agent: dict  # the agent token of a pending deployment of PXE_MAC


@pytest.fixture(scope="module", params=DATABASES)
def live_service(request, tmp_path_factory, pxe_installer, pxe_image_manifest) -> LiveService:
    """One `metalstream serve` per database for the module: image `tiny` added and an admin token made with
    the local CLI, its own directory importable over POST /api/v1/images, a pending deployment of PXE_MAC."""
    from lab.service_proc import ServiceProcess

    db_url = None
    if request.param == "postgresql":
        db_url = request.getfixturevalue("pg_cluster").create_database()
    root = tmp_path_factory.mktemp(f"fuzz-{request.param}")
    data_dir = root / "data"
    subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, *db_options(db_url),
                    pxe_image_manifest], check=True, capture_output=True)
    admin = cli_admin_token(data_dir, db_url)
    # No background sweeps or BMC polls: machines the fuzzer registers have made-up BMC addresses. No brute-force
    # guard: the fuzzer presents wrong tokens on purpose (the ignored_auth check), and would be answered 429.
    options = ["--auth-max-failures", "0", "--sweep-interval", "0", "--power-refresh-interval", "0",
               "--bmc-timeout", "1", "--bmc-retries", "1", "--webhook-timeout", "0.5", "--image-import-dir", str(root),
               *db_options(db_url)]
    with ServiceProcess(data_dir, installer=pxe_installer, options=options) as service:
        requests.post(f"{service.url}/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"}, headers=admin,
                      timeout=30).raise_for_status()
        script = requests.get(f"{service.url}/boot/{PXE_MAC}.ipxe", timeout=30).text
        agent = {"Authorization": "Bearer " + script.split("metalstream.token=")[1].split()[0]}
        yield LiveService(service.url, admin, agent)


@pytest.fixture(scope="module")
def api_schema(live_service):
    """The document the service publishes. schemathesis makes no Authorization header of its own (it would send
    a random bearer token, answered 401): each request carries the right token, and the ignored_auth check
    sends it again without one and with a wrong one."""
    return schemathesis.from_uri(f"{live_service.url}/api/v1/openapi.json", base_url=live_service.url,
                                 headers=dict(live_service.admin), data_generation_methods=DataGenerationMethod.all(),
                                 generation_config=GenerationConfig(with_security_parameters=False))


schema = schemathesis.from_pytest_fixture("api_schema")


def _checks_for(case) -> tuple:
    """All checks; an operation without parameters or body has nothing to negate, so schemathesis's
    'negative' cases for it are valid requests and must not be held to negative_data_rejection."""
    definition = case.operation.definition.raw
    if definition.get("parameters") or definition.get("requestBody"):
        return ALL_CHECKS
    return tuple(check for check in ALL_CHECKS if check is not negative_data_rejection)


# Above parametrize: a schema from a fixture reads the settings off the test it makes, not the function below.
@settings(max_examples=25, deadline=None, derandomize=True, database=None,
          suppress_health_check=list(HealthCheck))
@schema.parametrize()
def test_the_live_api_holds_under_generated_requests(case, live_service):
    auth = live_service.agent if case.path.startswith("/api/v1/agent/") else live_service.admin
    assume(not any(NOT_HTTP.search(str(value)) for value in (case.headers or {}).values()))
    # requests sends no query parameter for an empty list: a negative case negated only that way arrives valid
    assume(all(value != [] for value in (case.query or {}).values()))
    case.headers = case.headers or {}  # ignored_auth puts its wrong token there (schemathesis 3.39 fails on None)
    response = case.call(headers=dict(auth), timeout=30)  # a copy: case.call adds its User-Agent to it
    case.validate_response(response, checks=_checks_for(case), headers=dict(auth),
                           transport_kwargs={"headers": dict(auth)})
    assert not LEAK.search(response.text), (response.status_code, response.text[:500])


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
