"""Image and installer files: Range (206), strong ETag (the sha256), If-Range, sendfile via wsgi.file_wrapper."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, Response, abort, request, send_file
from werkzeug.http import parse_date, parse_etags

from .. import imagestore, metrics
from ..errors import NotFound
from .common import service

bp = Blueprint("files", __name__)


def _precondition_failed(etag: str, modified: int) -> bool:
    """RFC 9110 13.2.2 steps 1-2: If-Match (strong comparison), else If-Unmodified-Since."""
    if_match = request.headers.get("If-Match")
    if if_match is not None:
        return not parse_etags(if_match).contains(etag)  # strong tags only; `*` matches
    since = parse_date(request.headers.get("If-Unmodified-Since"))
    return since is not None and modified > since.timestamp()


def _range_applies(etag: str, modified: int) -> bool:
    """If-Range: only a strong ETag equal to ours, or our exact Last-Modified date, keeps the Range."""
    if_range = request.headers.get("If-Range")
    if if_range is None:
        return True
    if if_range.startswith('"'):
        return if_range == f'"{etag}"'
    date = parse_date(if_range)
    return date is not None and int(date.timestamp()) == modified


def _send(path: Path, etag: str, kind: str, mimetype: str):
    modified = int(path.stat().st_mtime)
    if _precondition_failed(etag, modified):
        return Response(status=412, headers={"ETag": f'"{etag}"'})
    range_applies = _range_applies(etag, modified)
    # Checked here by the rules werkzeug does not follow; what is left (If-None-Match,
    # If-Modified-Since, Range) send_file's conditional=True handles.
    for header in ("HTTP_IF_MATCH", "HTTP_IF_UNMODIFIED_SINCE", "HTTP_IF_RANGE"):
        request.environ.pop(header, None)
    if not range_applies:
        request.environ.pop("HTTP_RANGE", None)
    # send_file with a path hands the open file to wsgi.file_wrapper (sendfile under gunicorn).
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
