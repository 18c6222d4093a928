"""/api/v1/images: register, list, show, delete images."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, g, jsonify

from metalstream.errors import BadInput

from .. import imagestore
from .common import json_body, require_api_token, service

bp = Blueprint("images", __name__, url_prefix="/api/v1/images")
bp.before_request(require_api_token)


@bp.get("")
def list_images():
    return jsonify({"images": imagestore.list_images(service().engine)})


@bp.post("")
def add_image():
    body = json_body()
    if not isinstance(body, dict):
        raise BadInput("must be a JSON object", location="body")
    unknown = sorted(set(body) - {"manifest"})
    if unknown:
        raise BadInput("unknown field (allowed: manifest)", location=unknown[0])
    manifest = body.get("manifest")
    if not isinstance(manifest, str) or not manifest.startswith("/") or "\x00" in manifest:
        raise BadInput("must be the absolute path of a NAME.json manifest on the server", location="manifest")
    svc = service()
    path = imagestore.importable_path(Path(manifest), svc.config.image_import_dirs)
    image = imagestore.register(svc.engine, svc.config.image_dir, path)
    g.audit_target = image["name"]
    return jsonify(image), 201


@bp.get("/<name>")
def show_image(name: str):
    return jsonify(imagestore.get(service().engine, name))


@bp.delete("/<name>")
def delete_image(name: str):
    svc = service()
    imagestore.remove(svc.engine, svc.config.image_dir, name)
    return "", 204
