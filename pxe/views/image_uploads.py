"""/api/v1/image-uploads: upload an image over HTTP in chunks, resumable (admin token; pxe.imageupload)."""
from __future__ import annotations

from flask import Blueprint, g, jsonify, request

from .. import imageupload
from ..schemas.base import parse
from ..schemas.uploads import ImageUploadCreate
from .common import json_body, require_api_token, service

bp = Blueprint("image_uploads", __name__, url_prefix="/api/v1/image-uploads")
bp.before_request(require_api_token)


def _answer(upload: dict, status: int = 200, **headers):
    return jsonify(upload), status, {"Upload-Offset": str(upload["offset"]), "Upload-Length": str(upload["size"]),
                                     "Cache-Control": "no-store", **headers}


@bp.get("")
def list_uploads():
    data_dir = service().config.data_dir
    imageupload.sweep(data_dir)
    return jsonify({"uploads": imageupload.list_uploads(data_dir)})


@bp.post("")
def create_upload():
    manifest = parse(ImageUploadCreate, json_body()).manifest
    svc = service()
    upload, created = imageupload.create(svc.engine, svc.config.data_dir, manifest)
    g.audit_target = upload["name"]
    return _answer(upload, 201 if created else 200, Location=upload["location"])


@bp.get("/<upload_id>")
def show_upload(upload_id: str):
    return _answer(imageupload.get(service().config.data_dir, upload_id))


@bp.put("/<upload_id>")
def put_chunk(upload_id: str):
    svc = service()
    upload, image = imageupload.write_chunk(svc.engine, svc.config.data_dir, svc.config.image_dir, upload_id,
                                            request.headers.get("Content-Range"), request.stream,
                                            request.content_length)
    if image is None:
        return _answer(upload)
    g.audit_target = image["name"]
    return _answer({**upload, "image": image}, 201, Location=f"/api/v1/images/{image['name']}")


@bp.delete("/<upload_id>")
def delete_upload(upload_id: str):
    imageupload.delete(service().config.data_dir, upload_id)
    return "", 204
