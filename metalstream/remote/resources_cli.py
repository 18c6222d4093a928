"""`metalstream images ...` and `metalstream tokens ...`: the service's images and API tokens over its REST API.

The singular `image` and `token` commands do the same directly on the server's data directory.
"""
from __future__ import annotations

import click

from .options import Api, remote_command
from .output import Column, size, when

IMAGE_COLUMNS = [Column("name", "Name"), Column("size", "Size", size), Column("sha256", "SHA256"),
                 Column("created_at", "Created", when)]
TOKEN_COLUMNS = [Column("id", "ID"), Column("scope", "Scope"), Column("revoked", "Revoked"),
                 Column("comment", "Comment"), Column("created_at", "Created", when)]


@click.group("images")
def images():
    """Images on a running service (REST API): list, show, register, delete.

    There is no upload over HTTP yet: build or copy NAME.json and NAME.tar.zst onto the server, then
    `images register /abs/path/NAME.json` (needs `serve --image-import-dir`) or `metalstream image add` there.
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
