"""Resumable image uploads: a staging file per upload under DATA_DIR/uploads, registered when complete.

An upload is `ID.json` (the checked manifest, when it was made) beside `ID.part` (the bytes received so
far: its length is the committed offset). A chunk is written at the committed offset only, under an
exclusive lock on `ID.part`, so two workers never write one upload. When the last byte arrives the
sha256 is checked against the manifest and the file is registered through the image store, which links
it into DATA_DIR/images. Uploads not written to for `TTL` seconds are removed.
"""
from __future__ import annotations

import errno
import fcntl
import hashlib
import json
import os
import re
import secrets
import time
from contextlib import contextmanager
from pathlib import Path
from typing import BinaryIO

from sqlalchemy.engine import Engine

from metalstream.contracts import manifests
from metalstream.errors import BadInput

from . import imagestore
from .errors import Conflict, NotFound, ServiceError

TTL = 24 * 3600
PIECE = 1 << 20
_ID = re.compile(r"^[0-9a-f]{32}$")


class RangeNotSatisfiable(ServiceError):
    http_status = 416

    def __init__(self, message: str, size: int):
        super().__init__(message, details={"field": "Content-Range"})
        self.headers = {"Content-Range": f"bytes */{size}"}


class OffsetMismatch(Conflict):
    """A chunk that does not start at the committed offset (a gap or an overlap)."""

    def __init__(self, message: str, offset: int):
        super().__init__(message, details={"field": "Content-Range", "offset": offset})
        self.headers = {"Upload-Offset": str(offset)}


class Busy(Conflict):
    def __init__(self):
        super().__init__("another request is writing this upload; retry once it ends",
                         details={"field": "upload"})
        self.headers = {"Retry-After": "1"}


def _dir(data_dir: Path) -> Path:
    directory = data_dir / "uploads"
    directory.mkdir(mode=0o700, exist_ok=True)
    return directory


def _paths(data_dir: Path, upload_id: str) -> tuple[Path, Path]:
    if not isinstance(upload_id, str) or not _ID.match(upload_id):
        raise NotFound("no such upload", details={"field": "upload"})
    directory = _dir(data_dir)
    return directory / f"{upload_id}.json", directory / f"{upload_id}.part"


def _public(upload_id: str, meta: dict, offset: int, mtime: float) -> dict:
    manifest = meta["manifest"]
    return {"id": upload_id, "name": manifest["name"], "size": manifest["size"], "sha256": manifest["sha256"],
            "offset": offset, "created_at": meta["created_at"], "expires_at": mtime + TTL,
            "location": f"/api/v1/image-uploads/{upload_id}"}


def _load(data_dir: Path, upload_id: str) -> tuple[dict, Path, Path]:
    meta_path, part = _paths(data_dir, upload_id)
    try:
        meta = json.loads(meta_path.read_text())
        stat = part.stat()
    except (FileNotFoundError, ValueError):
        raise NotFound("no such upload (finished, deleted or expired)", details={"field": "upload"}) from None
    if stat.st_mtime + TTL < time.time():
        _remove(meta_path, part)
        raise NotFound("no such upload (expired)", details={"field": "upload"})
    return meta, meta_path, part


def _remove(meta_path: Path, part: Path) -> None:
    part.unlink(missing_ok=True)
    meta_path.unlink(missing_ok=True)


def check_request(body: object) -> dict:
    """The manifest of a create request {manifest, name?, size?, sha256?}; the optional fields must agree with it."""
    if not isinstance(body, dict):
        raise BadInput("must be a JSON object", location="body")
    unknown = sorted(set(body) - {"manifest", "name", "size", "sha256"})
    if unknown:
        raise BadInput("unknown field (allowed: manifest, name, size, sha256)", location=unknown[0])
    if "manifest" not in body:
        raise BadInput("required: the image manifest (the content of NAME.json)", location="manifest")
    manifest = manifests.read_image_manifest(body["manifest"], "manifest", sep=".")
    for key in ("name", "size", "sha256"):
        if key in body and body[key] != manifest[key]:
            raise BadInput(f"does not match manifest.{key}", location=key)
    return manifest


@contextmanager
def _directory_lock(data_dir: Path):
    with open(_dir(data_dir) / ".lock", "a") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        yield


def create(engine: Engine, data_dir: Path, manifest: dict) -> tuple[dict, bool]:
    """A new upload, or the open one of the same name, size and sha256 (so a client resumes); (upload, created)."""
    name = manifest["name"]
    try:
        existing = imagestore.get(engine, name)
    except NotFound:
        existing = None
    if existing is not None:
        same = existing["sha256"] == manifest["sha256"]
        raise Conflict(f"image {name!r} is already registered" + ("" if same else " with another sha256; "
                                                                   "delete it first"),
                       details={"field": "name", "image": name})
    with _directory_lock(data_dir):
        sweep(data_dir)
        for upload in list_uploads(data_dir):
            if upload["name"] != name:
                continue
            if upload["sha256"] == manifest["sha256"] and upload["size"] == manifest["size"]:
                return upload, False
            raise Conflict(f"image {name!r} is being uploaded with another sha256 or size (upload "
                           f"{upload['id']}); delete that upload first",
                           details={"field": "name", "upload": upload["id"]})
        upload_id = secrets.token_hex(16)
        meta_path, part = _paths(data_dir, upload_id)
        meta = {"manifest": manifest, "created_at": time.time()}
        part.touch(mode=0o600)
        tmp = meta_path.with_suffix(".tmp")
        tmp.write_text(json.dumps(meta))
        os.replace(tmp, meta_path)
    return _public(upload_id, meta, 0, part.stat().st_mtime), True


def get(data_dir: Path, upload_id: str) -> dict:
    meta, _, part = _load(data_dir, upload_id)
    stat = part.stat()
    return _public(upload_id, meta, stat.st_size, stat.st_mtime)


def list_uploads(data_dir: Path) -> list[dict]:
    uploads = []
    for meta_path in sorted(_dir(data_dir).glob("*.json")):
        try:
            uploads.append(get(data_dir, meta_path.stem))
        except NotFound:
            continue
    return uploads


def sweep(data_dir: Path) -> None:
    """Remove uploads not written to for TTL seconds, and parts whose description is gone."""
    now = time.time()
    directory = _dir(data_dir)
    for part in directory.glob("*.part"):
        meta_path = part.with_suffix(".json")
        try:
            stale = part.stat().st_mtime + TTL < now or not meta_path.exists()
        except FileNotFoundError:
            continue
        if stale and _ID.match(part.stem):
            _remove(meta_path, part)


def delete(data_dir: Path, upload_id: str) -> None:
    _, meta_path, part = _load(data_dir, upload_id)
    with _locked(part):
        _remove(meta_path, part)


@contextmanager
def _locked(part: Path):
    with open(part, "r+b") as f:
        try:
            fcntl.flock(f, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except OSError as exc:
            if exc.errno in (errno.EAGAIN, errno.EACCES):
                raise Busy() from None
            raise
        yield f


def parse_content_range(header: str | None, size: int) -> tuple[int, int]:
    """`bytes START-END/SIZE` → (start, end exclusive); 400 when malformed, 416 when outside the image."""
    match = re.fullmatch(r"bytes (\d{1,19})-(\d{1,19})/(\d{1,19}|\*)", (header or "").strip())
    if not match:
        raise BadInput("required: bytes START-END/SIZE (END inclusive)", location="Content-Range")
    start, last = int(match[1]), int(match[2])
    if last < start:
        raise BadInput("END is before START", location="Content-Range")
    if match[3] != "*" and int(match[3]) != size:
        raise RangeNotSatisfiable(f"the upload is {size} bytes, not {match[3]}", size)
    if last >= size:
        raise RangeNotSatisfiable(f"the upload is {size} bytes: the last byte is {size - 1}", size)
    return start, last + 1


def write_chunk(engine: Engine, data_dir: Path, image_dir: Path, upload_id: str, content_range: str | None,
                body: BinaryIO, length: int | None) -> tuple[dict, dict | None]:
    """Write one chunk at the committed offset; (upload, the registered image once the last byte is in)."""
    meta, meta_path, part = _load(data_dir, upload_id)
    manifest = meta["manifest"]
    size = manifest["size"]
    start, end = parse_content_range(content_range, size)
    if length is not None and length != end - start:
        raise BadInput(f"the body is {length} bytes, the range {end - start}", location="Content-Length")
    with _locked(part) as f:
        offset = os.fstat(f.fileno()).st_size
        if start != offset:
            what = "a gap" if start > offset else "an overlap"
            raise OffsetMismatch(f"{what}: the next chunk must start at byte {offset}", offset)
        f.seek(offset)
        received = _copy(body, f, end - start)
        f.flush()
        os.fsync(f.fileno())
        if received != end - start:
            raise BadInput(f"the body ended after {received} of {end - start} bytes (those are kept: resume "
                           f"at {offset + received})", location="body")
        if end < size:
            return get(data_dir, upload_id), None
        image = _finish(engine, image_dir, manifest, part)
        _remove(meta_path, part)
    return {**_public(upload_id, meta, size, time.time()), "offset": size}, image


def _copy(body: BinaryIO, f: BinaryIO, limit: int) -> int:
    """Copy up to `limit` bytes; what arrived before a client went away stays (it is the committed offset)."""
    received = 0
    try:
        while received < limit:
            piece = body.read(min(PIECE, limit - received))
            if not piece:
                break
            f.write(piece)
            received += len(piece)
    except Exception:  # the client went away mid-chunk (werkzeug's ClientDisconnected, a reset socket)
        f.flush()
        raise
    if received == limit and body.read(1):
        f.truncate(f.tell() - received)
        raise BadInput(f"the body is longer than the range's {limit} bytes", location="body")
    return received


def _finish(engine: Engine, image_dir: Path, manifest: dict, part: Path) -> dict:
    digest = hashlib.sha256()
    with open(part, "rb") as f:
        while piece := f.read(PIECE):
            digest.update(piece)
    if digest.hexdigest() != manifest["sha256"]:
        part.unlink(missing_ok=True)
        part.with_suffix(".json").unlink(missing_ok=True)
        raise BadInput(f"the uploaded bytes have sha256 {digest.hexdigest()}; the manifest says "
                       f"{manifest['sha256']} (the upload is discarded)", location="manifest.sha256")
    return imagestore.register_checked(engine, image_dir, manifest, part)
