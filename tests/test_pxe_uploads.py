"""Resumable image uploads (/api/v1/image-uploads) against the real `metalstream serve` (pxe_server)."""
from __future__ import annotations

import json
import os
import socket
import time
from pathlib import Path
from urllib.parse import urlsplit

import pytest
import requests

from fixtures_pxe import pxe_write_image

UPLOADS = "/api/v1/image-uploads"


def _image(directory: Path, name: str, size: int = 3 << 20) -> tuple[dict, bytes]:
    """A NAME.tar.zst of random bytes (served as is) and its manifest."""
    directory.mkdir(parents=True, exist_ok=True)
    data = os.urandom(size)
    (directory / f"{name}.tar.zst").write_bytes(data)
    manifest_path = pxe_write_image(directory, name, tarball=directory / f"{name}.tar.zst")
    return json.loads(manifest_path.read_text()), data


def _call(server, method: str, path: str, **kwargs) -> requests.Response:
    headers = {**server.admin, **kwargs.pop("headers", {})}
    return requests.request(method, server.url + path, headers=headers, timeout=60, **kwargs)


def _put(server, location: str, data: bytes, start: int, size: int, last: int | None = None) -> requests.Response:
    last = start + len(data) - 1 if last is None else last
    return _call(server, "PUT", location, data=data, headers={"Content-Range": f"bytes {start}-{last}/{size}"})


def _start(server, manifest: dict) -> dict:
    response = _call(server, "POST", UPLOADS, json={"manifest": manifest})
    assert response.status_code in (200, 201), response.text
    return response.json()


def _no_secrets(response: requests.Response, server) -> None:
    assert str(server.data_dir) not in response.text and "Traceback" not in response.text


def test_upload_in_chunks_registers_the_image(pxe_server, tmp_path):
    manifest, data = _image(tmp_path, "upload-chunks")
    size = len(data)
    created = _call(pxe_server, "POST", UPLOADS, json={"manifest": manifest, "name": "upload-chunks",
                                                       "size": size, "sha256": manifest["sha256"]})
    assert created.status_code == 201, created.text
    upload = created.json()
    assert created.headers["Location"] == upload["location"] == f"{UPLOADS}/{upload['id']}"
    assert created.headers["Upload-Offset"] == "0" and upload["offset"] == 0
    half = size // 2
    first = _put(pxe_server, upload["location"], data[:half], 0, size)
    assert first.status_code == 200 and first.json()["offset"] == half
    head = _call(pxe_server, "HEAD", upload["location"])
    assert head.status_code == 200 and head.headers["Upload-Offset"] == str(half)
    assert head.headers["Upload-Length"] == str(size)
    assert [u["id"] for u in _call(pxe_server, "GET", UPLOADS).json()["uploads"]].count(upload["id"]) == 1
    last = _put(pxe_server, upload["location"], data[half:], half, size)
    assert last.status_code == 201, last.text
    assert last.headers["Location"] == "/api/v1/images/upload-chunks"
    assert last.json()["image"]["sha256"] == manifest["sha256"]
    image = _call(pxe_server, "GET", "/api/v1/images/upload-chunks").json()
    assert image["size"] == size and image["manifest"]["name"] == "upload-chunks"
    assert requests.get(pxe_server.url + image["url_path"], timeout=60).content == data
    assert _call(pxe_server, "GET", upload["location"]).status_code == 404
    assert not list((pxe_server.data_dir / "uploads").glob(f"{upload['id']}.*"))
    again = _call(pxe_server, "POST", UPLOADS, json={"manifest": manifest})
    assert again.status_code == 409 and again.json()["field"] == "name"
    assert _call(pxe_server, "DELETE", "/api/v1/images/upload-chunks").status_code == 204


def _interrupted_put(server, location: str, data: bytes, sent: int) -> None:
    """A PUT announcing all of `data` whose client goes away after `sent` bytes."""
    parts = urlsplit(server.url)
    head = (f"PUT {location} HTTP/1.1\r\nHost: {parts.netloc}\r\nAuthorization: {server.admin['Authorization']}\r\n"
            f"Content-Range: bytes 0-{len(data) - 1}/{len(data)}\r\nContent-Length: {len(data)}\r\n\r\n")
    with socket.create_connection((parts.hostname, parts.port), timeout=30) as sock:
        sock.sendall(head.encode() + data[:sent])
        time.sleep(0.5)


def _settled_offset(server, location: str) -> int:
    previous, deadline = -1, time.monotonic() + 30
    while time.monotonic() < deadline:
        offset = int(_call(server, "HEAD", location).headers["Upload-Offset"])
        if offset == previous:
            return offset
        previous = offset
        time.sleep(0.5)
    raise AssertionError("the offset kept moving")


def test_an_interrupted_upload_resumes_from_the_committed_offset(pxe_server, tmp_path):
    manifest, data = _image(tmp_path, "upload-resume")
    upload = _start(pxe_server, manifest)
    _interrupted_put(pxe_server, upload["location"], data, 2 << 20)
    committed = _settled_offset(pxe_server, upload["location"])
    assert 0 < committed <= 2 << 20
    resumed = _start(pxe_server, manifest)  # the same name, size and sha256: the open upload, not a new one
    assert resumed["id"] == upload["id"] and resumed["offset"] == committed
    rest = data[committed:]
    done = _put(pxe_server, upload["location"], rest, committed, len(data))
    assert done.status_code == 201, done.text
    assert len(rest) < len(data)
    served = requests.get(pxe_server.url + done.json()["image"]["url_path"], timeout=60).content
    assert served == data
    _call(pxe_server, "DELETE", "/api/v1/images/upload-resume")


def test_a_wrong_sha256_is_refused_and_nothing_registered(pxe_server, tmp_path):
    manifest, data = _image(tmp_path, "upload-badsum", size=100_000)
    upload = _start(pxe_server, {**manifest, "sha256": "0" * 64})
    answer = _put(pxe_server, upload["location"], data, 0, len(data))
    assert answer.status_code == 400 and answer.json()["field"] == "manifest.sha256"
    _no_secrets(answer, pxe_server)
    assert _call(pxe_server, "GET", "/api/v1/images/upload-badsum").status_code == 404
    assert _call(pxe_server, "GET", upload["location"]).status_code == 404
    assert not (pxe_server.data_dir / "images" / "upload-badsum.tar.zst").exists()
    assert not list((pxe_server.data_dir / "uploads").glob(f"{upload['id']}.*"))


def test_gaps_overlaps_and_ranges_outside_the_image(pxe_server, tmp_path):
    manifest, data = _image(tmp_path, "upload-ranges", size=200_000)
    size = len(data)
    upload = _start(pxe_server, manifest)
    location = upload["location"]
    assert _put(pxe_server, location, data[:1000], 0, size).status_code == 200
    for start in (1500, 500):  # a gap, an overlap
        answer = _put(pxe_server, location, data[start:start + 1000], start, size)
        assert answer.status_code == 409 and answer.headers["Upload-Offset"] == "1000"
        assert answer.json()["offset"] == 1000 and answer.json()["field"] == "Content-Range"
    beyond = _put(pxe_server, location, data[1000:2000], 1000, size, last=size + 5)
    assert beyond.status_code == 416 and beyond.headers["Content-Range"] == f"bytes */{size}"
    other_total = _put(pxe_server, location, data[1000:2000], 1000, size + 1)
    assert other_total.status_code == 416 and other_total.headers["Content-Range"] == f"bytes */{size}"
    for bad in ("bytes 1000-/200000", "1000-1999/200000", "bytes 1999-1000/200000", ""):
        answer = _call(pxe_server, "PUT", location, data=data[1000:2000], headers={"Content-Range": bad})
        assert answer.status_code == 400 and answer.json()["field"] == "Content-Range", bad
    short = _put(pxe_server, location, data[1000:1500], 1000, size, last=1999)
    assert short.status_code == 400 and short.json()["field"] == "Content-Length"
    assert _call(pxe_server, "HEAD", location).headers["Upload-Offset"] == "1000"
    assert _call(pxe_server, "DELETE", location).status_code == 204
    assert _call(pxe_server, "HEAD", location).status_code == 404
    assert _call(pxe_server, "GET", "/api/v1/images/upload-ranges").status_code == 404


def test_bad_requests_are_located_400s_and_register_nothing(pxe_server, tmp_path):
    manifest, _ = _image(tmp_path, "upload-bad", size=1000)
    cases = [
        ({"manifest": {k: v for k, v in manifest.items() if k != "sha256"}}, "manifest.sha256"),
        ({"manifest": {**manifest, "name": "../../etc/passwd"}}, "manifest.name"),
        ({"manifest": {**manifest, "size": 0}}, "manifest.size"),
        ({"manifest": manifest, "size": 999}, "size"),
        ({"manifest": manifest, "name": "other"}, "name"),
        ({"manifest": manifest, "extra": 1}, "extra"),
        ({}, "manifest"),
        ([], "body"),
    ]
    for body, field in cases:
        answer = _call(pxe_server, "POST", UPLOADS, json=body)
        assert answer.status_code == 400 and answer.json()["field"] == field, (body, answer.text)
        _no_secrets(answer, pxe_server)
    assert _call(pxe_server, "GET", "/api/v1/images/upload-bad").status_code == 404
    assert all(u["name"] != "upload-bad" for u in _call(pxe_server, "GET", UPLOADS).json()["uploads"])
    for upload_id in ("../../metalstream.db", "0" * 32, "x"):
        answer = _call(pxe_server, "PUT", f"{UPLOADS}/{upload_id}", data=b"x", headers={"Content-Range": "bytes 0-0/1"})
        assert answer.status_code == 404, upload_id


def test_other_bytes_under_an_uploading_name_conflict_and_read_tokens_cannot_upload(pxe_server, tmp_path):
    manifest, _ = _image(tmp_path, "upload-conflict", size=1000)
    upload = _start(pxe_server, manifest)
    other = _call(pxe_server, "POST", UPLOADS, json={"manifest": {**manifest, "sha256": "1" * 64}})
    assert other.status_code == 409 and other.json()["upload"] == upload["id"]
    token = requests.post(pxe_server.url + "/api/v1/tokens", json={"scope": "read"}, headers=pxe_server.admin,
                          timeout=30).json()["token"]
    read = {"Authorization": f"Bearer {token}"}
    assert requests.post(pxe_server.url + UPLOADS, json={"manifest": manifest}, headers=read,
                         timeout=30).status_code == 403
    assert requests.get(pxe_server.url + upload["location"], headers=read, timeout=30).status_code == 200
    _call(pxe_server, "DELETE", upload["location"])


def test_an_abandoned_upload_expires(pxe_server, tmp_path):
    manifest, data = _image(tmp_path, "upload-expired", size=1000)
    upload = _start(pxe_server, manifest)
    assert _put(pxe_server, upload["location"], data[:10], 0, len(data)).status_code == 200
    part = pxe_server.data_dir / "uploads" / f"{upload['id']}.part"
    long_ago = time.time() - 2 * 24 * 3600
    os.utime(part, (long_ago, long_ago))
    assert _call(pxe_server, "HEAD", upload["location"]).status_code == 404
    assert not part.exists() and not part.with_suffix(".json").exists()
    assert _start(pxe_server, manifest)["id"] != upload["id"]


@pytest.fixture(autouse=True)
def _no_leftover_uploads(pxe_server):
    yield
    for upload in _call(pxe_server, "GET", UPLOADS).json()["uploads"]:
        if upload["name"].startswith("upload-"):
            _call(pxe_server, "DELETE", upload["location"])
