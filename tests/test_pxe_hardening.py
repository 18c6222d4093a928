"""Regression tests for the defects hostile testing found in the service (issue 17), one block per defect."""
from __future__ import annotations

import io
import json
import os
import re

import pytest
from werkzeug.test import run_wsgi_app

from fixtures_pxe import PXE_MAC, pxe_write_image

OTHER_MAC = "52:54:00:aa:bb:cc"
EVENT = {"phase": "stream", "message": "streaming image", "bytes_done": 100, "bytes_total": 1000, "time": 1.0}
# What must never reach a client: Python exception names, tracebacks, SQL, paths of the service's files.
LEAK = re.compile(r"Traceback|[A-Z][a-z]+Error\b|Exception\b|\bSELECT\b|\bINSERT\b|\bUPDATE\b|sqlite|"
                  r"/usr/lib|site-packages|metalstream\.db|\.py\b")


def _bearer(token: str) -> dict:
    return {"Authorization": f"Bearer {token}"}


def _raw_post(pxe_env, path: str, raw: str | bytes, headers: dict):
    return pxe_env.client.post(path, data=raw, headers={**headers, "Content-Type": "application/json"})


def _assert_clean_400(response, field: str) -> None:
    assert response.status_code == 400, response.data
    assert response.get_json()["field"] == field, response.get_json()
    assert not LEAK.search(response.get_data(as_text=True)), response.get_data(as_text=True)


def _deployments(pxe_env) -> list:
    response = pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read)
    json.loads(response.data, parse_constant=lambda name: pytest.fail(f"{name} in /api/v1/deployments"))
    return response.get_json()["deployments"]


def _installing(pxe_env) -> dict:
    """A deployment whose agent has started: returns the agent's auth headers."""
    pxe_env.pending()
    headers = _bearer(pxe_env.boot_token())
    assert pxe_env.client.get("/api/v1/agent/plan", headers=headers).status_code == 200
    return headers


# --- 1. non-finite numbers ----------------------------------------------------------------------------

@pytest.mark.parametrize("literal", ["NaN", "Infinity", "-Infinity", "1e400"])
def test_non_finite_numbers_are_refused_naming_the_field(pxe_env, literal):
    raw = f'{{"mac": "{PXE_MAC}", "image": "tiny", "disk_hints": {{"min_size_gib": {literal}}}}}'
    _assert_clean_400(_raw_post(pxe_env, "/api/v1/deployments", raw, pxe_env.admin), "disk_hints.min_size_gib")
    assert _deployments(pxe_env) == []
    headers = _installing(pxe_env)
    raw_event = json.dumps({**EVENT, "time": 0}).replace('"time": 0', f'"time": {literal}')
    _assert_clean_400(_raw_post(pxe_env, "/api/v1/agent/events", raw_event, headers), "time")
    assert _deployments(pxe_env)[0]["state"] == "installing"


def test_a_manifest_with_nan_is_refused_and_the_image_list_stays_valid(pxe_env, tmp_path):
    manifest = pxe_write_image(tmp_path / "nan", "nanimage")
    manifest.write_text(manifest.read_text().replace('"distribution": {', '"distribution": {"score": NaN, ', 1))
    assert "NaN" in manifest.read_text()
    response = pxe_env.client.post("/api/v1/images", json={"manifest": str(manifest)}, headers=pxe_env.admin)
    assert response.status_code == 400 and response.get_json()["field"] == f"{manifest}: distribution.score"
    listed = pxe_env.client.get("/api/v1/images", headers=pxe_env.read)
    assert b"NaN" not in listed.data and [i["name"] for i in listed.get_json()["images"]] == ["tiny"]


# --- 2. unhandled input: always a located 400, never internals ------------------------------------------

@pytest.mark.parametrize("raw,field", [
    ('{"mac": ' + "[" * 5000 + "]" * 5000 + ', "image": "tiny"}', "body"),
    ('{"mac": "' + PXE_MAC + '", "image": "tiny", "disk_hints": {"min_size_gib": ' + "9" * 5000 + "}}",
     "disk_hints.min_size_gib"),
    ('{"mac": "' + PXE_MAC + '", "image": "tiny", "disk_hints": {"min_size_gib": 9223372036854775808}}',
     "disk_hints.min_size_gib"),
    ('{"mac": "' + PXE_MAC + '", "image": "tiny", "kernel_args": [' + "[" * 40 + "]" * 40 + "]}",
     "kernel_args" + "[0]" * 31),
    ('{"mac": "' + PXE_MAC + '", "image": "tiny", "network": [{"device": "eth0"}, null]}', "network[1]"),
])
def test_hostile_deployment_bodies_are_located_400s(pxe_env, raw, field):
    response = _raw_post(pxe_env, "/api/v1/deployments", raw, pxe_env.admin)
    if field == "body":
        assert response.status_code == 400 and response.get_json()["field"] in ("body", "mac"), response.data
        assert not LEAK.search(response.get_data(as_text=True))
    else:
        _assert_clean_400(response, field)
    assert _deployments(pxe_env) == []


@pytest.mark.parametrize("field,literal", [("bytes_done", str(1 << 63)), ("bytes_total", "9" * 4000),
                                           ("time", "1e400")])
def test_hostile_event_numbers_are_located_400s(pxe_env, field, literal):
    headers = _installing(pxe_env)
    raw = json.dumps({**EVENT, field: 7}).replace(f'"{field}": 7', f'"{field}": {literal}')
    _assert_clean_400(_raw_post(pxe_env, "/api/v1/agent/events", raw, headers), field)


def test_an_unexpected_error_answers_without_its_text(pxe_env, monkeypatch):
    from pxe import deployments
    monkeypatch.setattr(deployments, "list_all", lambda *a, **k: 1 / 0)  # a bug, not a boundary: any will do
    response = pxe_env.client.get("/api/v1/deployments", headers=pxe_env.read)
    assert response.status_code == 500
    assert "ZeroDivision" not in response.get_data(as_text=True) and "division" not in response.get_data(as_text=True)


# --- 4. image registration reads only inside the import directories -------------------------------------

@pytest.mark.parametrize("path", ["/etc/passwd", "/dev/zero", "/proc/self/environ"])
def test_image_registration_outside_the_import_directories_is_forbidden(pxe_env, path):
    response = pxe_env.client.post("/api/v1/images", json={"manifest": path}, headers=pxe_env.admin)
    assert response.status_code == 403 and response.get_json()["field"] == "manifest"
    assert "root:" not in response.get_data(as_text=True)


def test_image_registration_through_a_link_or_from_a_fifo_is_refused(pxe_env, tmp_path):
    link = tmp_path / "link.json"
    link.symlink_to("/etc/passwd")
    response = pxe_env.client.post("/api/v1/images", json={"manifest": str(link)}, headers=pxe_env.admin)
    assert response.status_code == 403 and response.get_json()["field"] == "manifest"
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    response = pxe_env.client.post("/api/v1/images", json={"manifest": str(fifo)}, headers=pxe_env.admin)
    assert response.status_code == 400 and "regular file" in response.get_json()["error"]


def test_without_import_directories_the_api_registers_nothing(tmp_path, pxe_installer):
    from pxe import tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    app = create_app(ServiceConfig(data_dir=tmp_path / "d", installer=pxe_installer, supervisor_interval=0))
    admin = _bearer(tokens.create_api_token(app.extensions["metalstream"].engine, "admin"))
    manifest = pxe_write_image(tmp_path / "img", "img")
    response = app.test_client().post("/api/v1/images", json={"manifest": str(manifest)}, headers=admin)
    assert response.status_code == 403 and "--image-import-dir" in response.get_json()["error"]


# --- 5. HTTP conformance --------------------------------------------------------------------------------

def test_405_names_the_allowed_methods(pxe_env):
    response = pxe_env.client.put("/api/v1/deployments", headers=pxe_env.admin)
    assert response.status_code == 405
    assert {"GET", "POST"} <= {m.strip() for m in response.headers["Allow"].split(",")}


def test_416_says_the_length(pxe_env):
    size = pxe_env.image_manifest.with_name("tiny.tar.zst").stat().st_size
    response = pxe_env.client.get("/images/tiny.tar.zst", headers={"Range": f"bytes={size + 5}-"})
    assert response.status_code == 416 and response.headers["Content-Range"] == f"bytes */{size}"


def test_preconditions_on_image_downloads(pxe_env):
    sha = json.loads(pxe_env.image_manifest.read_text())["sha256"]
    get = lambda **headers: pxe_env.client.get("/images/tiny.tar.zst", headers=headers)  # noqa: E731
    body = get().data
    failed = get(**{"If-Match": '"other"'})
    assert failed.status_code == 412 and failed.data == b""
    assert get(**{"If-Match": '"other"', "Range": "bytes=0-9"}).status_code == 412
    assert get(**{"If-Match": f'W/"{sha}"'}).status_code == 412  # If-Match compares strongly
    assert get(**{"If-Match": f'"{sha}"'}).data == body
    assert get(**{"If-Match": "*", "Range": "bytes=0-9"}).status_code == 206
    weak = get(**{"Range": "bytes=0-9", "If-Range": f'W/"{sha}"'})
    assert weak.status_code == 200 and weak.data == body
    assert get(**{"If-Unmodified-Since": "Sat, 01 Jan 2000 00:00:00 GMT"}).status_code == 412
    assert get(**{"If-Unmodified-Since": "Fri, 01 Jan 2100 00:00:00 GMT"}).status_code == 200


def test_a_chunked_body_over_the_limit_is_413_not_truncated(pxe_env):
    limit = pxe_env.app.config["MAX_CONTENT_LENGTH"]
    body = b'{"mac": "' + PXE_MAC.encode() + b'", "image": "tiny", "kickstart": "' + b"#" * limit + b'"}'
    environ = {"REQUEST_METHOD": "POST", "PATH_INFO": "/api/v1/deployments", "SERVER_NAME": "localhost",
               "SERVER_PORT": "80", "wsgi.url_scheme": "http", "wsgi.input": io.BytesIO(body),
               "wsgi.input_terminated": True, "HTTP_TRANSFER_ENCODING": "chunked",
               "CONTENT_TYPE": "application/json", "HTTP_AUTHORIZATION": pxe_env.admin["Authorization"]}
    _, status, _ = run_wsgi_app(pxe_env.app, environ, buffered=True)
    assert status.startswith("413")
    assert _deployments(pxe_env) == []


# --- 6. reserved kernel arguments ---------------------------------------------------------------------

@pytest.mark.parametrize("arg", ["metalstream.token=forged", "metalstream.server=http://evil"])
def test_kernel_args_cannot_override_the_installers_own(pxe_env, arg):
    response = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny", "kernel_args": ["quiet", arg]})
    assert response.status_code == 400 and response.get_json()["field"] == "kernel_args[1]"
    assert "forged" not in pxe_env.client.get(f"/boot/{PXE_MAC}.ipxe").get_data(as_text=True)


# --- 7. secrets in deployment requests ----------------------------------------------------------------

def test_readers_never_see_the_requests_secrets(pxe_env):
    secret_hash = "$6$salt$" + "x" * 86
    kickstart = "part / --fstype=ext4 --size=4096 --grow\nrootpw --iscrypted $6$kssalt$kshash\n"
    created = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny", "root_password_hash": secret_hash,
                                       "kickstart": kickstart})
    assert created.status_code == 201, created.get_json()
    dep_id = created.get_json()["id"]
    for headers in (pxe_env.read, pxe_env.admin):
        for path in ("/api/v1/deployments", f"/api/v1/deployments/{dep_id}"):
            text = pxe_env.client.get(path, headers=headers).get_data(as_text=True)
            assert "xxxxxxxx" not in text and "kshash" not in text, path
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep_id}", headers=pxe_env.read).get_json()
    assert shown["request"]["root_password_hash"]["redacted"] is True
    for text in (created.get_data(as_text=True),):
        assert "xxxxxxxx" not in text and "kshash" not in text
    plan = pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(pxe_env.boot_token())).get_json()
    assert plan["root_password_hash"] == secret_hash  # the agent still gets what it installs


# --- 8. idempotency keys belong to their token ----------------------------------------------------------

def test_an_idempotency_key_of_another_token_is_another_key(pxe_env):
    from pxe import tokens
    other_admin = _bearer(tokens.create_api_token(pxe_env.service.engine, "admin"))
    mine = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}, **{"Idempotency-Key": "k-1"})
    theirs = pxe_env.client.post("/api/v1/deployments", json={"mac": OTHER_MAC, "image": "tiny"},
                                 headers={**other_admin, "Idempotency-Key": "k-1"})
    assert mine.status_code == 201 and theirs.status_code == 201
    assert theirs.get_json()["id"] != mine.get_json()["id"] and theirs.get_json()["mac"] == OTHER_MAC
    replay = pxe_env.post_deployment({"mac": PXE_MAC, "image": "tiny"}, **{"Idempotency-Key": "k-1"})
    assert replay.status_code == 200 and replay.get_json()["id"] == mine.get_json()["id"]


# --- 9. agent tokens: HEAD mints nothing, a reissue is recorded -----------------------------------------

@pytest.mark.parametrize("path", [f"/boot/{PXE_MAC}.ipxe", f"/boot/grub/{PXE_MAC}.cfg"])
def test_head_of_a_boot_script_mints_no_token(pxe_env, path):
    dep = pxe_env.pending()
    assert pxe_env.client.head(path).status_code == 200
    shown = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()
    assert shown["state"] == "pending" and len(shown["events"]) == 1
    token = pxe_env.boot_token()
    assert pxe_env.client.head(path).status_code == 200
    assert pxe_env.client.get("/api/v1/agent/plan", headers=_bearer(token)).status_code == 200


def test_a_reissued_agent_token_is_recorded(pxe_env):
    dep = pxe_env.pending()
    pxe_env.boot_token()
    pxe_env.boot_token()
    events = pxe_env.client.get(f"/api/v1/deployments/{dep['id']}", headers=pxe_env.read).get_json()["events"]
    messages = [e["message"] for e in events]
    assert messages[1] == "installer boot script served (boot: iPXE over HTTP)"
    assert "reissued" in messages[2] and "void" in messages[2] and "iPXE over HTTP" in messages[2]


# --- 10. events may not go back -----------------------------------------------------------------------

def test_events_may_not_go_back(pxe_env):
    headers = _installing(pxe_env)
    post = lambda **changes: pxe_env.client.post("/api/v1/agent/events", json={**EVENT, **changes},  # noqa: E731
                                                  headers=headers)
    assert post(bytes_done=500).status_code == 200
    _assert_clean_400(post(bytes_done=400), "bytes_done")
    _assert_clean_400(post(bytes_done=1500, bytes_total=None), "bytes_done")
    _assert_clean_400(post(bytes_done=2000, bytes_total=1000), "bytes_done")
    assert post(phase="verify", bytes_done=None, bytes_total=None).status_code == 200
    _assert_clean_400(post(phase="stream", bytes_done=900), "phase")
    _assert_clean_400(post(time=-1), "time")
    assert post(phase="configure", bytes_done=None, bytes_total=None, time=0).status_code == 200
    shown = _deployments(pxe_env)[0]
    assert (shown["phase"], shown["bytes_done"]) == ("configure", 500)
    events = pxe_env.client.get(f"/api/v1/deployments/{shown['id']}", headers=pxe_env.read).get_json()["events"]
    assert events[-1]["time"] == 0  # stored as sent, not replaced by the service's clock


def test_a_lone_surrogate_is_a_located_400_not_a_500(pxe_env):
    raw = '{"mac": "' + PXE_MAC + '", "image": "tiny", "kickstart": "part / --size=1\\ud800"}'
    _assert_clean_400(_raw_post(pxe_env, "/api/v1/deployments", raw, pxe_env.admin), "kickstart")
    raw = '{"mac": "' + PXE_MAC + '", "image": "tiny", "disk_hints": {"\\udc00": 1}}'
    _assert_clean_400(_raw_post(pxe_env, "/api/v1/deployments", raw, pxe_env.admin), "disk_hints")
    headers = _installing(pxe_env)
    raw_event = json.dumps({**EVENT, "message": "x"}).replace('"x"', '"\\ud800"')
    _assert_clean_400(_raw_post(pxe_env, "/api/v1/agent/events", raw_event, headers), "message")


def test_an_event_posted_again_is_stored_once(pxe_env):
    headers = _installing(pxe_env)
    for _ in range(3):
        response = pxe_env.client.post("/api/v1/agent/events", json={**EVENT, "seq": 1}, headers=headers)
        assert response.status_code == 200
    assert response.get_json() == {"accepted": True, "duplicate": True}
    second = pxe_env.client.post("/api/v1/agent/events", json={**EVENT, "bytes_done": 200, "seq": 2}, headers=headers)
    assert second.get_json() == {"accepted": True, "duplicate": False}
    late = pxe_env.client.post("/api/v1/agent/events", json={**EVENT, "seq": 1}, headers=headers)  # after seq 2
    assert late.get_json() == {"accepted": True, "duplicate": True}
    shown = _deployments(pxe_env)[0]
    events = pxe_env.client.get(f"/api/v1/deployments/{shown['id']}", headers=pxe_env.read).get_json()["events"]
    assert [e["bytes_done"] for e in events if e["phase"] == "stream"] == [100, 200]
    _assert_clean_400(pxe_env.client.post("/api/v1/agent/events", json={**EVENT, "seq": 0}, headers=headers), "seq")
