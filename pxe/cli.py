"""CLI commands of the PXE/HTTP service: serve, image, token, dnsmasq-config.

`image` and `token` work on the service's database directly (same --data-dir / --db as `serve`),
so they work before the service runs and need no token; remote clients use the REST API instead.
Heavy imports happen inside the commands: the `metalstream` entry point loads this module always.
"""
from __future__ import annotations

import json
import os
from pathlib import Path

import click

from metalstream.errors import BadInput

DEFAULT_DATA_DIR = Path(os.environ.get("METALSTREAM_DATA_DIR", "/var/lib/metalstream"))

data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
                               show_default=True, help="Service state: database, image store, deploy key.")
db_option = click.option("--db", "db_url", metavar="URL", default=None,
                         help="SQLAlchemy database URL (default: SQLite file in the data directory).")


def _config(data_dir: Path, db_url: str | None, **extra):
    from .config import ServiceConfig
    return ServiceConfig(data_dir=data_dir, db_url=db_url, **extra)


def _engine(data_dir: Path, db_url: str | None):
    from . import db
    config = _config(data_dir, db_url)
    config.prepare()
    return config, db.make_engine(config.db_url)


def _parse_bind(bind: str) -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput("must be HOST:PORT, e.g. 0.0.0.0:8080", location="--bind")
    return host or "0.0.0.0", int(port)


@click.command("serve")
@data_dir_option
@db_option
@click.option("--bind", default="0.0.0.0:8080", show_default=True, help="HOST:PORT for HTTP.")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker (gthread): concurrent requests per process.")
@click.option("--installer", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="installer.json (metalstream-installer/1): the kernel + initramfs pending machines boot.")
@click.option("--public-url", default=None, metavar="URL",
              help="URL machines reach the service at (default: taken from each request's Host header).")
@click.option("--agent-timeout", default=900.0, show_default=True, type=click.FloatRange(1),
              help="Seconds an agent may stay silent before its deployment is marked failed.")
@click.option("--activation-timeout", default=1800.0, show_default=True, type=click.FloatRange(1),
              help="Seconds after `installed` for the SSH activation check to succeed.")
@click.option("--sweep-interval", default=10.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between background sweeps (silence timeouts, activation checks); 0 disables them.")
@click.option("--tftp", "tftp_port", type=click.IntRange(1, 65535), default=None,
              help="Also serve the iPXE binaries over TFTP on this UDP port (69 for real PXE ROMs).")
@click.option("--image-import-dir", "image_import_dirs", multiple=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A directory POST /api/v1/images may read manifests and tarballs from (repeatable). "
                   "Without one, images are registered with `metalstream image add` only.")
def serve(data_dir, db_url, bind, workers, threads, installer, public_url, agent_timeout, activation_timeout,
          sweep_interval, tftp_port, image_import_dirs):
    """Run the PXE/HTTP service under gunicorn: REST API, boot scripts, images, agent endpoints.

    \b
    Example:
      metalstream token create --scope admin --data-dir /srv/ms
      metalstream serve --data-dir /srv/ms --bind 0.0.0.0:8080 --installer out/installer.json --tftp 69
    Point DHCP (or `metalstream dnsmasq-config`) at http://HOST:PORT/boot.ipxe.
    """
    from metalstream import proc

    from . import server, tftp
    from .render import SAFE_URL
    host, _ = _parse_bind(bind)
    if public_url is not None and not SAFE_URL.match(public_url):
        raise BadInput("must be a plain http(s)://host[:port] URL", location="--public-url")
    config = _config(data_dir, db_url, installer=installer, public_url=public_url, agent_timeout=agent_timeout,
                     activation_timeout=activation_timeout, supervisor_interval=sweep_interval,
                     image_import_dirs=image_import_dirs)
    tftp_process = None
    if tftp_port is not None:
        root = config.data_dir / "tftp"
        copied = tftp.populate(root)
        tftp_process = tftp.start(root, host, tftp_port)
        click.echo(f"metalstream: TFTP on udp/{tftp_port} serving {', '.join(copied) or 'nothing'} from {root}",
                   err=True)
    click.echo(f"metalstream: serving on http://{bind} (data {config.data_dir}, {workers} workers x {threads} "
               "threads)", err=True)
    serving_pid = os.getpid()
    try:
        server.serve(config, bind=bind, workers=workers, threads=threads)
    finally:
        # gunicorn workers are forks of this process and unwind through here too when they exit: only the
        # process that started the TFTP server stops it.
        if tftp_process is not None and os.getpid() == serving_pid:
            proc.terminate(tftp_process)


@click.group("image")
def image():
    """Register, list, show and delete images (directly in the service's database)."""


@image.command("add")
@data_dir_option
@db_option
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
def image_add(data_dir, db_url, manifest):
    """Register out/NAME.json (checks the tarball's size and sha256, links it into the store)."""
    from . import imagestore
    config, engine = _engine(data_dir, db_url)
    click.echo(f"checking {manifest} and its tarball ...", err=True)
    record = imagestore.register(engine, config.image_dir, manifest)
    click.echo(f"image {record['name']}: {record['size']} bytes, sha256 {record['sha256']}, "
               f"served at {record['url_path']}")


@image.command("list")
@data_dir_option
@db_option
def image_list(data_dir, db_url):
    """List registered images."""
    from . import imagestore
    _, engine = _engine(data_dir, db_url)
    for record in imagestore.list_images(engine):
        click.echo(f"{record['name']}\t{record['size']}\t{record['sha256']}")


@image.command("show")
@data_dir_option
@db_option
@click.argument("name")
def image_show(data_dir, db_url, name):
    """Print one image's record (with its manifest) as JSON."""
    from . import imagestore
    _, engine = _engine(data_dir, db_url)
    click.echo(json.dumps(imagestore.get(engine, name), indent=2))


@image.command("delete")
@data_dir_option
@db_option
@click.argument("name")
def image_delete(data_dir, db_url, name):
    """Delete an image (refused while an open deployment uses it)."""
    from . import imagestore
    config, engine = _engine(data_dir, db_url)
    imagestore.remove(engine, config.image_dir, name)
    click.echo(f"deleted image {name}")


@click.group("token")
def token():
    """Create, list and revoke API bearer tokens (only their hashes are stored)."""


@token.command("create")
@data_dir_option
@db_option
@click.option("--scope", type=click.Choice(["admin", "read"]), default="admin", show_default=True,
              help="admin may change things; read may only GET.")
@click.option("--comment", default=None, help="Who or what the token is for.")
def token_create(data_dir, db_url, scope, comment):
    """Create a token and print it once (it cannot be shown again)."""
    from . import tokens
    _, engine = _engine(data_dir, db_url)
    click.echo(tokens.create_api_token(engine, scope, comment))


@token.command("list")
@data_dir_option
@db_option
def token_list(data_dir, db_url):
    """List tokens (id, scope, revoked, comment); never the secrets."""
    from . import tokens
    _, engine = _engine(data_dir, db_url)
    for row in tokens.list_api_tokens(engine):
        click.echo(f"{row['id']}\t{row['scope']}\t{'revoked' if row['revoked'] else 'valid'}\t{row['comment'] or ''}")


@token.command("revoke")
@data_dir_option
@db_option
@click.argument("token_id")
def token_revoke(data_dir, db_url, token_id):
    """Revoke a token by its id (the part after `msa_`)."""
    from . import tokens
    _, engine = _engine(data_dir, db_url)
    if not tokens.revoke_api_token(engine, token_id):
        raise BadInput(f"no token {token_id!r}", location="TOKEN_ID")
    click.echo(f"revoked {token_id}")


@click.command("dnsmasq-config")
@click.option("--server-url", required=True, help="The service's URL, e.g. http://10.0.0.5:8080.")
@click.option("--subnet", required=True, help="The PXE clients' network, e.g. 10.0.0.0/24.")
@click.option("--tftp-server", required=True, help="IP address of the TFTP server (`metalstream serve --tftp 69`).")
@click.option("--interface", default=None, help="Listen only on this interface.")
def dnsmasq_config(server_url, subnet, tftp_server, interface):
    """Print a proxy-DHCP dnsmasq configuration that chains PXE clients to the service.

    It hands out no leases: the existing DHCP server keeps doing that. Save it as
    /etc/dnsmasq.d/metalstream.conf (check it with `dnsmasq --test -C FILE`).
    """
    from .dnsmasq import proxy_dhcp_config
    click.echo(proxy_dhcp_config(server_url=server_url, subnet=subnet, tftp_server=tftp_server, interface=interface),
               nl=False)


COMMANDS = [serve, image, token, dnsmasq_config]
