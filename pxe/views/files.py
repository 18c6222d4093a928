"""Image and installer files: Range (206), strong ETag (the sha256), If-Range, sendfile via wsgi.file_wrapper."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, abort, send_file

from .. import imagestore, metrics
from ..errors import NotFound
from .common import service

bp = Blueprint("files", __name__)


def _send(path: Path, etag: str, kind: str, mimetype: str):
    # send_file with a path hands the open file to wsgi.file_wrapper (sendfile under gunicorn);
    # conditional=True adds Range/If-Range/If-None-Match handling.
    response = send_file(path, mimetype=mimetype, conditional=True, etag=etag, max_age=0)
    metrics.served(kind, response.content_length if response.status_code in (200, 206) else None)
    return response


@bp.get("/images/<path:filename>")
def image_file(filename: str):
    svc = service()
    path = imagestore.served_path(svc.config.image_dir, filename)
    if path is None:
        abort(404, description=f"no image file {filename!r}")
    try:
        image = imagestore.get(svc.engine, filename[: -len(".tar.zst")])
    except NotFound:
        abort(404, description=f"no image file {filename!r}")
    return _send(path, image["sha256"], "image", "application/zstd")


@bp.get("/installer/<any(vmlinuz, 'initrd.img'):part>")
def installer_file(part: str):
    installer = service().installer
    if installer is None:
        abort(404, description="no installer environment configured (metalstream serve --installer)")
    entry = "kernel" if part == "vmlinuz" else "initramfs"
    return _send(Path(installer[f"{entry}_path"]), installer[entry]["sha256"], "installer",
                 "application/octet-stream")
