"""`metalstream images ...` and `metalstream tokens ...`: the service's images and API tokens over its REST API.

The singular `image` and `token` commands do the same directly on the server's data directory.
"""
from __future__ import annotations

from pathlib import Path

import click

from . import upload
from .options import Api, remote_command
from .output import Column, size, when

IMAGE_COLUMNS = [Column("name", "Name"), Column("size", "Size", size), Column("sha256", "SHA256"),
                 Column("created_at", "Created", when)]
TOKEN_COLUMNS = [Column("id", "ID"), Column("scope", "Scope"), Column("revoked", "Revoked"),
                 Column("comment", "Comment"), Column("created_at", "Created", when)]


@click.group("images")
def images():
    """Images on a running service (REST API): list, show, upload, register, delete.

    `images upload NAME.json` sends the NAME.tar.zst beside it over HTTP (resumable: run it again after an
    interruption). `images register /abs/path/NAME.json` registers files already on the server (needs
    `serve --image-import-dir`).
    """


@images.command("list")
@remote_command()
def list_images(api: Api):
    """List registered images."""
    api.list(api.client.get("/api/v1/images")["images"], IMAGE_COLUMNS)


@images.command("show")
@remote_command()
@click.argument("name")
def show_image(api: Api, name):
    """Show one image (with its manifest)."""
    api.one(api.client.get(f"/api/v1/images/{name}"), IMAGE_COLUMNS)


@images.command("upload")
@remote_command()
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path), metavar="NAME.json")
@click.option("--chunk-size", type=click.IntRange(1, 16 << 20), default=upload.CHUNK, show_default=True,
              metavar="BYTES", help="Bytes per request (the service takes up to 16 MiB).")
def upload_image(api: Api, manifest, chunk_size):
    """Upload an image: NAME.json and the NAME.tar.zst beside it, in chunks with a progress bar (admin).

    Interrupted? Run it again: it goes on from the bytes the service already holds (for a day)."""
    local, tarball = upload.read_local(manifest)
    uploader = upload.Uploader(api.client, local, tarball, chunk_size)
    image = uploader.registered()
    if image is not None:
        click.echo(f"image {local['name']} is already registered with this sha256", err=True)
    else:
        started = uploader.start()
        if started["offset"]:
            click.echo(f"resuming upload {started['id']} at byte {started['offset']} of {started['size']}",
                       err=True)
        image = upload.upload_with_progress(uploader, started)
        click.echo(f"sent {uploader.sent} of {started['size']} bytes", err=True)
    api.one(image, IMAGE_COLUMNS)


@images.command("register")
@remote_command()
@click.argument("manifest", metavar="/PATH/ON/SERVER/NAME.json")
def register_image(api: Api, manifest):
    """Register an image whose manifest and tarball are already on the server, under a directory the
    service was started with `--image-import-dir`."""
    api.one(api.client.post("/api/v1/images", {"manifest": manifest}), IMAGE_COLUMNS)


@images.command("delete")
@remote_command(output=False)
@click.argument("name")
def delete_image(api: Api, name):
    """Delete an image (refused, 409, while an open deployment uses it)."""
    api.client.delete(f"/api/v1/images/{name}")
    click.echo(f"deleted image {name}")


@click.group("tokens")
def tokens():
    """API tokens on a running service (REST API, admin token): list, create, revoke."""


@tokens.command("list")
@remote_command()
def list_tokens(api: Api):
    """List tokens (never their secrets)."""
    api.list(api.client.get("/api/v1/tokens")["tokens"], TOKEN_COLUMNS)


@tokens.command("create")
@remote_command()
@click.option("--scope", type=click.Choice(["admin", "read"]), default="read", show_default=True,
              help="admin may change things; read may only GET.")
@click.option("--comment", default=None, help="Who or what the token is for.")
def create_token(api: Api, scope, comment):
    """Create a token; its secret is printed once (it cannot be shown again)."""
    body = {"scope": scope, **({"comment": comment} if comment is not None else {})}
    api.one(api.client.post("/api/v1/tokens", body))


@tokens.command("revoke")
@remote_command(output=False)
@click.argument("token_id", metavar="ID")
def revoke_token(api: Api, token_id):
    """Revoke a token by its id (the part after `msa_`, as `tokens list` shows)."""
    api.client.delete(f"/api/v1/tokens/{token_id}")
    click.echo(f"revoked {token_id}")


COMMANDS = [images, tokens]
