"""/api/v1/images."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from metalstream.errors import BadInput

from .base import Request, shape


class ImageAdd(Request):
    manifest: str = Field(description="the absolute path of a NAME.json manifest on the server")

    @shape
    def _whole(cls, data: Any) -> Any:
        if not isinstance(data, dict):
            raise BadInput("must be a JSON object", location="body")
        unknown = sorted(set(data) - {"manifest"})
        if unknown:
            raise BadInput("unknown field (allowed: manifest)", location=unknown[0])
        manifest = data.get("manifest")
        if not isinstance(manifest, str) or not manifest.startswith("/") or "\x00" in manifest:
            raise BadInput("must be the absolute path of a NAME.json manifest on the server", location="manifest")
        return data


class Image(BaseModel):
    name: str
    sha256: str
    size: int
    url_path: str = Field(description="where machines fetch it (/images/FILE)")
    created_at: float
    manifest: dict = Field(description="the image's manifest (docs/contracts.md)")


class ImageList(BaseModel):
    images: list[Image]
