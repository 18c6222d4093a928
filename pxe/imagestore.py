"""The image store: manifests checked and registered, tarballs kept under DATA_DIR/images.

Registering links (or, across filesystems, sparsely copies) `NAME.tar.zst` into the store after
verifying its size and sha256 against the manifest, so a served image never changes under a
client. Served paths are resolved inside the store and refused if a symlink points outside it.
"""
from __future__ import annotations

import os
import time
from pathlib import Path

from sqlalchemy import delete, select
from sqlalchemy.engine import Engine
from sqlalchemy.exc import IntegrityError

from metalstream import proc
from metalstream.contracts import manifests, rules
from metalstream.contracts.manifests import file_sha256
from metalstream.errors import BadInput

from . import db, states
from .errors import Conflict, Forbidden, NotFound


def _check_file(path: Path, size: int, sha256: str, where: str) -> None:
    if not path.is_file():
        raise BadInput(f"file {path} does not exist", location=where)
    actual_size = path.stat().st_size
    if actual_size != size:
        raise BadInput(f"{path} is {actual_size} bytes, the manifest says {size}", location=where)
    actual = file_sha256(path)
    if actual != sha256:
        raise BadInput(f"{path} has sha256 {actual}, the manifest says {sha256}", location=where)


def read_image_manifest(path: Path) -> tuple[dict, Path]:
    """Parse and check an image manifest and its tarball; return (manifest, tarball path)."""
    path = Path(path)
    manifest = manifests.read_image_manifest(manifests.load_document(path), str(path))
    tarball = path.parent / manifest["tarball"]
    _check_file(tarball, manifest["size"], manifest["sha256"], f"{path}: sha256")
    return manifest, tarball


def read_installer_manifest(path: Path) -> dict:
    """Parse and check an installer manifest and its files; return it with absolute `kernel_path` /
    `initramfs_path` added, and `shim_path` / `grub_path` when it carries signed loaders (`secure_boot`)."""
    path = Path(path)
    manifest = manifests.read_installer_manifest(manifests.load_document(path), str(path))
    parts = [(part, manifest[part], part) for part in ("kernel", "initramfs")]
    parts += [(f"secure_boot.{key}", entry, key) for key, entry in manifest.get("secure_boot", {}).items()
              if key in manifests.SECURE_BOOT_LOADERS]
    for where, entry, key in parts:
        target = path.parent / entry["file"]
        _check_file(target, entry["size"], entry["sha256"], f"{path}: {where}")
        manifest[f"{key}_path"] = str(target.resolve())
    return manifest


def importable_path(manifest: Path, import_dirs: tuple[Path, ...]) -> Path:
    """The manifest's real path if it lies inside an import directory; Forbidden otherwise.

    Checked before the file is touched, so the API tells nothing about files elsewhere."""
    if not import_dirs:
        raise Forbidden("registering images through the API is off: start the service with "
                        "--image-import-dir DIR, or use `metalstream image add` on the server",
                        details={"field": "manifest"})
    real = Path(os.path.realpath(manifest))
    if not any(real.is_relative_to(directory) for directory in import_dirs):
        raise Forbidden("not inside an image import directory (metalstream serve --image-import-dir)",
                        details={"field": "manifest"})
    return real


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
    return register_checked(engine, image_dir, manifest, tarball)


def register_checked(engine: Engine, image_dir: Path, manifest: dict, tarball: Path) -> dict:
    """Register a manifest whose tarball has been checked against its size and sha256."""
    name = manifest["name"]
    filename = f"{name}.tar.zst"
    with engine.connect() as conn:
        existing = conn.execute(select(db.images.c.sha256).where(db.images.c.name == name)).scalar()
    if existing is not None:
        if existing == manifest["sha256"]:
            if not (image_dir / filename).is_file():  # another replica's registration: give this store its copy
                _link_into_store(tarball, image_dir / filename)
            return get(engine, name)  # registering the same image again changes nothing else
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
        row = (conn.execute(select(db.images).where(db.images.c.name == name)).mappings().first()
               if db.matchable(name) else None)
    if row is None:
        raise NotFound(f"no image named {name!r}", details={"field": "image"})
    return _public(row)


def remove(engine: Engine, image_dir: Path, name: str) -> None:
    rules.image_name(name, "name")
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
        rules.image_name(filename[: -len(".tar.zst")], "filename")
    except BadInput:
        return None
    root = image_dir.resolve()
    path = (image_dir / filename).resolve()
    if path.parent != root or not path.is_file():
        return None
    return path
