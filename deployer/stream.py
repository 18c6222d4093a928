"""Stream an image into a directory: HTTP (or file) → zstd → GNU tar, hashing the compressed bytes on the fly.

Interface agreed between the agent's halves; the implementation lands with the streaming work.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Callable

from .errors import OperationFailed


class ImageVerificationError(OperationFailed):
    """The image's sha256 or size did not match the plan: nothing bootable may be written."""


@dataclass(frozen=True)
class StreamResult:
    bytes_read: int  # compressed bytes hashed
    sha256: str
    etag: str | None
    resumes: int  # how many times a dropped connection was resumed


ProgressCallback = Callable[[int, int | None], None]  # (bytes_done, bytes_total)


def stream_image(
    source: str,
    dest: Path,
    *,
    sha256: str,
    size: int | None = None,
    progress: ProgressCallback | None = None,
) -> StreamResult:
    """Extract the tar.zst at `source` (http(s):// URL, file:// URL or path) into `dest`.

    Raises ImageVerificationError when the hash/size differs from the plan, OperationFailed (or
    CommandError) when the download or a pipeline stage fails. Memory use does not grow with the image.
    """
    raise OperationFailed("stream_image is not implemented yet (issue #5)")
