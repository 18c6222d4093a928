"""OpenAPI paths and schemas of /api/v1/image-uploads (merged into pxe.openapi's document)."""
from __future__ import annotations

from .openapi import _ERROR, _op, _path_param

_ID = [{**_path_param("upload_id"), "description": "the upload's id (32 hex digits)"}]
_OFFSET_HEADERS = {
    "Upload-Offset": {"description": "bytes committed so far: the next chunk starts here",
                      "schema": {"type": "integer", "minimum": 0}},
    "Upload-Length": {"description": "the image's size", "schema": {"type": "integer", "minimum": 1}},
}


def _upload_op(summary: str, **kwargs) -> dict:
    op = _op(summary, tag="images", **kwargs)
    for code, response in op["responses"].items():
        if code.startswith("2") and "content" in response:
            op["responses"][code] = {**response, "headers": _OFFSET_HEADERS}
    return op


_CREATE = _upload_op("Start uploading an image (admin): its manifest; answers the upload (201), or the open upload "
                     "of the same name, size and sha256 to resume (200). 409: the name is registered or being "
                     "uploaded with other bytes", body="ImageUploadCreate", ok=("201", "200"), returns="ImageUpload")
for _code in ("201", "200"):
    _CREATE["responses"][_code]["headers"] = {**_OFFSET_HEADERS, "Location": {
        "description": "the upload's URL", "schema": {"type": "string"}}}

_PUT = _upload_op("Send the next chunk (admin): the body holds the bytes START..END of the image's tarball, "
                  "`Content-Range: bytes START-END/SIZE`; START must be the committed offset (409 and "
                  "Upload-Offset otherwise: a gap or an overlap), END inside the image (416 and `Content-Range: "
                  "bytes */SIZE` otherwise). The last chunk checks the sha256 (400 and the upload discarded when "
                  "it differs) and registers the image: 201 with `image`",
                  params=[*_ID, {"name": "Content-Range", "in": "header", "required": True,
                                 "schema": {"type": "string", "pattern": r"^bytes \d+-\d+/(\d+|\*)$"}}],
                  ok=("200", "201"), returns="ImageUpload")
_PUT["requestBody"] = {"required": True, "content": {"application/octet-stream": {
    "schema": {"type": "string", "format": "binary"}}}}
_PUT["responses"]["416"] = {**_ERROR, "headers": {"Content-Range": {"description": "bytes */SIZE",
                                                                    "schema": {"type": "string"}}}}
_PUT["responses"]["409"] = {**_ERROR, "headers": {"Upload-Offset": _OFFSET_HEADERS["Upload-Offset"]}}

_SHOW = _upload_op("An upload's state: the committed offset (also in Upload-Offset; HEAD gives the headers "
                   "alone)", params=_ID, returns="ImageUpload")

PATHS = {
    "/api/v1/image-uploads": {
        "get": _op("Open uploads (unfinished, not expired)", tag="images", returns="ImageUploadList"),
        "post": _CREATE,
    },
    "/api/v1/image-uploads/{upload_id}": {
        "get": _SHOW,
        "put": _PUT,
        "delete": _op("Abandon an upload: its bytes are removed (admin)", ok="204", tag="images", params=_ID),
    },
}

_SHA256 = {"type": "string", "pattern": "^[0-9a-f]{64}$"}
SCHEMAS = {
    "ImageUploadCreate": {
        "type": "object", "additionalProperties": False, "required": ["manifest"],
        "properties": {
            "manifest": {"type": "object", "description": "the image manifest (the content of NAME.json, "
                                                          "metalstream-image/1; docs/contracts.md)"},
            "name": {"type": "string", "description": "if given, must equal manifest.name"},
            "size": {"type": "integer", "minimum": 1, "description": "if given, must equal manifest.size"},
            "sha256": {**_SHA256, "description": "if given, must equal manifest.sha256"},
        },
    },
    "ImageUpload": {
        "type": "object", "required": ["id", "name", "size", "sha256", "offset", "created_at", "expires_at",
                                       "location"],
        "properties": {
            "id": {"type": "string", "pattern": "^[0-9a-f]{32}$"},
            "name": {"type": "string"}, "size": {"type": "integer", "minimum": 1}, "sha256": _SHA256,
            "offset": {"type": "integer", "minimum": 0, "description": "bytes committed"},
            "created_at": {"type": "number"},
            "expires_at": {"type": "number", "description": "removed if not written to before then"},
            "location": {"type": "string"},
            "image": {"type": "object", "description": "the registered image (only when the last chunk is in)"},
        },
    },
    "ImageUploadList": {"type": "object", "required": ["uploads"], "properties": {
        "uploads": {"type": "array", "items": {"$ref": "#/components/schemas/ImageUpload"}}}},
}
