"""/api/v1/image-uploads: an image's tarball sent over HTTP in chunks (pxe.imageupload)."""
from __future__ import annotations

from typing import Any

from pydantic import BaseModel, Field

from ..imageupload import check_request
from .base import Request, shape
from .images import Image

SHA256 = "^[0-9a-f]{64}$"


class ImageUploadCreate(Request):
    manifest: dict = Field(description="the image manifest (the content of NAME.json, metalstream-image/1; "
                                       "docs/contracts.md)")
    name: str | None = Field(None, description="if given, must equal manifest.name")
    size: int | None = Field(None, ge=1, description="if given, must equal manifest.size")
    sha256: str | None = Field(None, pattern=SHA256, description="if given, must equal manifest.sha256")

    @shape
    def _whole(cls, data: Any) -> Any:
        return {"manifest": check_request(data)}


class ImageUpload(BaseModel):
    id: str = Field(pattern="^[0-9a-f]{32}$")
    name: str
    size: int = Field(ge=1)
    sha256: str = Field(pattern=SHA256)
    offset: int = Field(ge=0, description="bytes committed")
    created_at: float
    expires_at: float = Field(description="removed if not written to before then")
    location: str
    image: Image | None = Field(None, description="the registered image (only when the last chunk is in)")


class ImageUploadList(BaseModel):
    uploads: list[ImageUpload]
