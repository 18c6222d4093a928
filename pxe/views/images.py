"""/api/v1/images: register, list, show, delete images."""
from __future__ import annotations

from pathlib import Path

from flask import Blueprint, g, jsonify

from .. import imagestore
from ..schemas.base import parse
from ..schemas.images import ImageAdd
from .common import json_body, require_api_token, service

bp = Blueprint("images", __name__, url_prefix="/api/v1/images")
bp.before_request(require_api_token)


@bp.get("")
def list_images():
    return jsonify({"images": imagestore.list_images(service().engine)})


@bp.post("")
def add_image():
    manifest = parse(ImageAdd, json_body()).manifest
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
