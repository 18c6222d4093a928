"""Upload NAME.json and the NAME.tar.zst beside it over /api/v1/image-uploads, resuming where the server is.

The service keeps an unfinished upload (per name, size and sha256) for a day: starting again finds it and
sends only the bytes after its committed offset.
"""
from __future__ import annotations

import json
import sys
from pathlib import Path

from metalstream.errors import BadInput, OperationFailed

from .client import ApiError, Client

CHUNK = 8 << 20  # the service refuses request bodies over 16 MiB
MAX_OFFSET_RETRIES = 5


def read_local(manifest_path: Path) -> tuple[dict, Path]:
    try:
        manifest = json.loads(manifest_path.read_text())
    except (OSError, ValueError) as exc:
        raise BadInput(f"cannot read the manifest: {exc}", location=str(manifest_path)) from None
    if not isinstance(manifest, dict) or not isinstance(manifest.get("tarball"), str):
        raise BadInput("not an image manifest (no `tarball`)", location=str(manifest_path))
    tarball = manifest_path.parent / Path(manifest["tarball"]).name
    if not tarball.is_file():
        raise BadInput(f"the tarball {tarball} is not beside the manifest", location=str(manifest_path))
    if tarball.stat().st_size != manifest.get("size"):
        raise BadInput(f"{tarball} is {tarball.stat().st_size} bytes, the manifest says {manifest.get('size')}",
                       location=str(manifest_path))
    return manifest, tarball


class Uploader:
    """Sends the chunks; `progress(done)` is called after each; `resumed_from` and `sent` say what happened."""

    def __init__(self, client: Client, manifest: dict, tarball: Path, chunk: int = CHUNK):
        self.client, self.manifest, self.tarball, self.chunk = client, manifest, tarball, chunk
        self.resumed_from = 0
        self.sent = 0

    def registered(self) -> dict | None:
        """The image if it is already registered with these bytes (a rerun after success)."""
        try:
            image = self.client.get(f"/api/v1/images/{self.manifest['name']}")
        except ApiError as exc:
            if exc.status == 404:
                return None
            raise
        if image["sha256"] != self.manifest["sha256"]:
            raise OperationFailed(f"image {self.manifest['name']!r} is registered on {self.client.target.url} with "
                                  f"another sha256; `metalstream images delete {self.manifest['name']}` first")
        return image

    def start(self) -> dict:
        upload = self.client.post("/api/v1/image-uploads", {"manifest": self.manifest})
        self.resumed_from = upload["offset"]
        return upload

    def run(self, upload: dict, progress=lambda done: None) -> dict:
        offset, size = upload["offset"], upload["size"]
        retries = 0
        with open(self.tarball, "rb") as f:
            while True:
                f.seek(offset)
                data = f.read(min(self.chunk, size - offset))
                headers = {"Content-Range": f"bytes {offset}-{offset + len(data) - 1}/{size}",
                           "Content-Type": "application/octet-stream"}
                try:
                    answer = self.client.request("PUT", upload["location"], data=data, headers=headers).json()
                except ApiError as exc:
                    committed = exc.body.get("offset") if exc.status == 409 and isinstance(exc.body, dict) else None
                    if committed is None or retries >= MAX_OFFSET_RETRIES:
                        raise
                    retries += 1
                    offset = committed  # the server holds more (or less) than we thought: go on from there
                    continue
                self.sent += len(data)
                offset = answer["offset"]
                progress(offset)
                if "image" in answer:
                    return answer["image"]


def upload_with_progress(uploader: Uploader, upload: dict) -> dict:
    """Run the upload with a rich progress bar on a terminal's stderr, quietly otherwise."""
    if not sys.stderr.isatty():
        return uploader.run(upload)
    from rich.console import Console
    from rich.progress import BarColumn, DownloadColumn, Progress, TextColumn, TimeRemainingColumn, TransferSpeedColumn
    with Progress(TextColumn("{task.description}"), BarColumn(), DownloadColumn(binary_units=True),
                  TransferSpeedColumn(), TimeRemainingColumn(), console=Console(stderr=True)) as progress:
        task = progress.add_task(uploader.manifest["name"], total=upload["size"], completed=upload["offset"])
        return uploader.run(upload, lambda done: progress.update(task, completed=done))
