"""The image store: manifests checked and registered, tarballs kept under DATA_DIR/images.

Registering links (or, across filesystems, sparsely copies) `NAME.tar.zst` into the store after
verifying its size and sha256 against the manifest, so a served image never changes under a
client. Served paths are resolved inside the store and refused if a symlink points outside it.
"""
from __future__ import annotations

import hashlib
import json
import os
import time
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from deployer import proc
from deployer.errors import BadInput

from . import db, states
from .errors import Conflict, NotFound
from .validate import check_image_name, check_sha256

IMAGE_FORMAT = "metalstream-image/1"
INSTALLER_FORMAT = "metalstream-installer/1"


def _load_json(path: Path) -> dict:
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        raise BadInput("no such file", location=str(path)) from None
    except (OSError, UnicodeDecodeError) as exc:
        raise BadInput(f"cannot read: {exc}", location=str(path)) from None
    except json.JSONDecodeError as exc:
        raise BadInput(f"not valid JSON: {exc.msg}", location=f"{path}:{exc.lineno}") from None
    if not isinstance(data, dict):
        raise BadInput("must be a JSON object", location=str(path))
    return data


def _plain_file_name(value, where: str) -> str:
    if (not isinstance(value, str) or not value or "/" in value or "\\" in value or "\x00" in value
            or value in (".", "..")):
        raise BadInput("must be a file name beside the manifest (no directories)", location=where)
    return value


def sha256_of(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def _check_file(path: Path, size: int, sha256: str, where: str) -> None:
    if not path.is_file():
        raise BadInput(f"file {path} does not exist", location=where)
    actual_size = path.stat().st_size
    if actual_size != size:
        raise BadInput(f"{path} is {actual_size} bytes, the manifest says {size}", location=where)
    actual = sha256_of(path)
    if actual != sha256:
        raise BadInput(f"{path} has sha256 {actual}, the manifest says {sha256}", location=where)


def read_image_manifest(path: Path) -> tuple[dict, Path]:
    """Parse and check an image manifest and its tarball; return (manifest, tarball path)."""
    path = Path(path)
    manifest = _load_json(path)
    where = lambda field: f"{path}: {field}"  # noqa: E731
    if manifest.get("format") != IMAGE_FORMAT:
        raise BadInput(f"unknown format {manifest.get('format')!r} (want {IMAGE_FORMAT!r})", location=where("format"))
    check_image_name(manifest.get("name"), where("name"))
    tarball = path.parent / _plain_file_name(manifest.get("tarball"), where("tarball"))
    check_sha256(manifest.get("sha256"), where("sha256"))
    size = manifest.get("size")
    if isinstance(size, bool) or not isinstance(size, int) or size < 0:
        raise BadInput("must be a non-negative integer", location=where("size"))
    _check_file(tarball, size, manifest["sha256"], where("sha256"))
    return manifest, tarball


def read_installer_manifest(path: Path) -> dict:
    """Parse and check an installer manifest; return it with absolute `kernel_path` / `initramfs_path`."""
    path = Path(path)
    manifest = _load_json(path)
    if manifest.get("format") != INSTALLER_FORMAT:
        raise BadInput(f"unknown format {manifest.get('format')!r} (want {INSTALLER_FORMAT!r})",
                       location=f"{path}: format")
    for part in ("kernel", "initramfs"):
        entry = manifest.get(part)
        if not isinstance(entry, dict):
            raise BadInput("must be an object with file, sha256, size", location=f"{path}: {part}")
        where = f"{path}: {part}"
        target = path.parent / _plain_file_name(entry.get("file"), f"{where}.file")
        check_sha256(entry.get("sha256"), f"{where}.sha256")
        if isinstance(entry.get("size"), bool) or not isinstance(entry.get("size"), int):
            raise BadInput("must be an integer", location=f"{where}.size")
        _check_file(target, entry["size"], entry["sha256"], where)
        manifest[f"{part}_path"] = str(target.resolve())
    return manifest


def _link_into_store(source: Path, target: Path) -> None:
    tmp = target.with_name(f".{target.name}.tmp{os.getpid()}")
    tmp.unlink(missing_ok=True)
    try:
        os.link(source, tmp)
    except OSError:  # another filesystem: copy, keeping holes (cp knows how)
        proc.run(["cp", "--sparse=auto", "--reflink=auto", source, tmp], timeout=3600)
    os.replace(tmp, target)


def register(engine: Engine, image_dir: Path, manifest_path: Path) -> dict:
    manifest, tarball = read_image_manifest(manifest_path)
    name = manifest["name"]
    filename = f"{name}.tar.zst"
    with engine.connect() as conn:
        existing = conn.execute(select(db.images.c.sha256).where(db.images.c.name == name)).scalar()
    if existing is not None:
        if existing == manifest["sha256"]:
            return get(engine, name)  # registering the same image again changes nothing
        raise Conflict(f"image {name!r} is already registered with another sha256; delete it first",
                       details={"field": "name"})
    _link_into_store(tarball, image_dir / filename)
    try:
        with engine.begin() as conn:
            conn.execute(db.images.insert().values(name=name, sha256=manifest["sha256"], size=manifest["size"],
                                                   filename=filename, manifest=manifest, created_at=time.time()))
    except IntegrityError:
        raise Conflict(f"image {name!r} was registered concurrently", details={"field": "name"}) from None
    return get(engine, name)


def _public(row) -> dict:
    return {"name": row["name"], "sha256": row["sha256"], "size": row["size"], "url_path": f"/images/{row['filename']}",
            "created_at": row["created_at"], "manifest": row["manifest"]}


def list_images(engine: Engine) -> list[dict]:
    with engine.connect() as conn:
        rows = conn.execute(select(db.images).order_by(db.images.c.name)).mappings().all()
    return [_public(r) for r in rows]


def get(engine: Engine, name: str) -> dict:
    with engine.connect() as conn:
        row = conn.execute(select(db.images).where(db.images.c.name == name)).mappings().first()
    if row is None:
        raise NotFound(f"no image named {name!r}", details={"field": "image"})
    return _public(row)


def remove(engine: Engine, image_dir: Path, name: str) -> None:
    check_image_name(name, "name")
    with engine.begin() as conn:
        users = conn.execute(select(db.deployments.c.id).where(
            db.deployments.c.image_name == name, db.deployments.c.state.in_(states.OPEN_STATES))).scalars().all()
        if users:
            raise Conflict(f"image {name!r} is used by open deployment(s) {', '.join(users)}",
                           details={"deployments": users})
        if conn.execute(delete(db.images).where(db.images.c.name == name)).rowcount != 1:
            raise NotFound(f"no image named {name!r}", details={"field": "name"})
    (image_dir / f"{name}.tar.zst").unlink(missing_ok=True)


def served_path(image_dir: Path, filename: str) -> Path | None:
    """The file behind /images/FILENAME, or None if the name is unsafe or the file is not a store entry."""
    if not filename.endswith(".tar.zst"):
        return None
    try:
        check_image_name(filename[: -len(".tar.zst")])
    except BadInput:
        return None
    root = image_dir.resolve()
    path = (image_dir / filename).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path
