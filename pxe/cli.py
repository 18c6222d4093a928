"""CLI commands of the PXE/HTTP service: serve, image, token, db, dnsmasq-config.

`image`, `token` and `db` work on the service's database directly (same --data-dir / --db as `serve`),
so they work before the service runs and need no token; remote clients use the REST API instead.
Every command that opens the database first brings its schema to this release's revision.
Heavy imports happen inside the commands: the `metalstream` entry point loads this module always.
"""
from __future__ import annotations

import json
import os
import shutil
from pathlib import Path

import click

from metalstream.errors import BadInput

from .bootpath import BOOT_PATH_CHOICES

DEFAULT_DATA_DIR = Path(os.environ.get("METALSTREAM_DATA_DIR", "/var/lib/metalstream"))

data_dir_option = click.option("--data-dir", type=click.Path(file_okay=False, path_type=Path), default=DEFAULT_DATA_DIR,
                               show_default=True, help="Service state: database, image store, deploy key.")
db_option = click.option("--db", "db_url", metavar="URL", default=None,
                         help="SQLAlchemy database URL (default: SQLite file in the data directory).")
create_option = click.option("--create", is_flag=True,
                             help="Make a new, empty database (and the data directory) if there is none yet; "
                                  "without it a data directory or --db holding no metalstream database is refused.")


def _config(data_dir: Path, db_url: str | None, **extra):
    from .config import ServiceConfig
    return ServiceConfig(data_dir=data_dir, db_url=db_url, **extra)


def _engine(data_dir: Path, db_url: str | None, *, create: bool = False):
    """The admin commands' database: an existing metalstream database unless `create` (a mistyped --data-dir
    must not silently make a new, empty service)."""
    from . import db
    config = _config(data_dir, db_url)
    if not create:
        _require_database(config, db_url)
    config.prepare()
    return config, db.make_engine(config.db_url)


def _require_database(config, db_url: str | None) -> None:
    """BadInput (exit 2, nothing created) unless the configured database holds metalstream's schema."""
    from sqlalchemy.engine import make_url

    from . import db
    url = make_url(config.db_url)
    location = "--db" if db_url else "--data-dir"
    where = url.render_as_string(hide_password=True) if db_url else str(config.data_dir)
    refusal = BadInput(f"{where} holds no metalstream database; check the path (a new service starts with "
                       "`metalstream serve`), or add --create to make a new, empty one", location=location)
    if url.get_backend_name() == "sqlite" and not (url.database and Path(url.database).is_file()):
        raise refusal  # before connecting: opening a missing SQLite file creates it
    engine = db.make_engine(config.db_url, upgrade_schema=False)
    try:
        with engine.connect() as conn:
            revision, legacy = db.current_revision(conn)
    finally:
        engine.dispose()
    if revision is None and legacy is None:
        raise refusal


def _upgrade_database(config) -> str:
    """Bring the configured database to this release's schema revision; say what happened, in one line."""
    from . import db
    if config.db_url.startswith("sqlite"):
        config.prepare()  # the database file lives in the data directory
    engine = db.make_engine(config.db_url, upgrade_schema=False)
    try:
        result = db.upgrade(engine)
    finally:
        engine.dispose()
    where = engine.url.render_as_string(hide_password=True)
    if result.legacy_version is not None:
        return (f"database {where}: schema_version {result.legacy_version} from before migrations (revision "
                f"{result.before}) upgraded to revision {result.after}")
    if result.before is None:
        return f"database {where}: empty; schema created at revision {result.after}"
    if result.before != result.after:
        return f"database {where}: upgraded from revision {result.before} to {result.after}"
    return f"database {where}: already at revision {result.after} (this release's newest); nothing to do"


def _parse_bind(bind: str, location: str = "--bind") -> tuple[str, int]:
    host, sep, port = bind.rpartition(":")
    if not sep or not port.isdigit() or not 0 < int(port) < 65536:
        raise BadInput("must be HOST:PORT, e.g. 0.0.0.0:8080", location=location)
    return host or "0.0.0.0", int(port)


def _check_tls(tls_cert: Path | None, tls_key: Path | None, public_url: str | None) -> None:
    """Both files or neither; they load and belong together; the agent is told an https URL."""
    if (tls_cert is None) != (tls_key is None):
        raise BadInput("give --tls-cert and --tls-key together",
                       location="--tls-key" if tls_key is None else "--tls-cert")
    if tls_cert is None:
        return
    from metalstream.tls import check_server_pair
    check_server_pair(tls_cert, tls_key)
    if public_url is not None and not public_url.startswith("https://"):
        raise BadInput("must be an https:// URL when serve has --tls-cert (it is what the agent is told)",
                       location="--public-url")


def _boot_url(boot_url: str | None, boot_bind: str | None, *, bind: str, public_url: str | None,
              tls: bool) -> str | None:
    """Where firmware fetches boot files: --boot-url, else the plain boot listener at the public host."""
    from urllib.parse import urlparse

    from .render import SAFE_URL
    if boot_url is not None and not SAFE_URL.match(boot_url):
        raise BadInput("must be a plain http(s)://host[:port] URL", location="--boot-url")
    if boot_bind is None:
        return boot_url
    if not tls:
        raise BadInput("the plain-HTTP boot listener goes beside an HTTPS service: add --tls-cert and --tls-key "
                       "(without them --bind is plain HTTP already)", location="--boot-bind")
    boot_host, boot_port = _parse_bind(boot_bind, "--boot-bind")
    if (boot_host, boot_port) == _parse_bind(bind):
        raise BadInput("must differ from --bind", location="--boot-bind")
    if public_url is None:
        raise BadInput("--boot-bind needs --public-url https://HOST:PORT: a boot script fetched over plain HTTP "
                       "must still hand the agent the https URL", location="--public-url")
    return boot_url or f"http://{urlparse(public_url).hostname}:{boot_port}"


@click.command("serve")
@data_dir_option
@db_option
@click.option("--bind", default="0.0.0.0:8080", show_default=True, help="HOST:PORT for HTTP (HTTPS with --tls-cert).")
@click.option("--workers", default=2, show_default=True, type=click.IntRange(1, 64), help="gunicorn worker processes.")
@click.option("--threads", default=8, show_default=True, type=click.IntRange(1, 256),
              help="Threads per worker (gthread): concurrent requests per process.")
@click.option("--installer", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              help="installer.json (metalstream-installer/1): the kernel + initramfs pending machines boot.")
@click.option("--public-url", default=None, metavar="URL",
              help="URL machines reach the service at (default: taken from each request's Host header).")
@click.option("--agent-timeout", default=900.0, show_default=True, type=click.FloatRange(1),
              help="Seconds an agent may stay silent before its deployment is marked failed; also how long a "
                   "machine that fetched a first-stage loader over TFTP may then ask for nothing.")
@click.option("--activation-timeout", default=1800.0, show_default=True, type=click.FloatRange(1),
              help="Seconds after `installed` for the SSH activation check to succeed.")
@click.option("--sweep-interval", default=10.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between background sweeps (silence timeouts, activation checks); 0 disables them.")
@click.option("--tftp", "tftp_port", type=click.IntRange(1, 65535), default=None,
              help="Also serve TFTP on this UDP port (69 for real PXE ROMs): the iPXE binaries and, when the "
                   "installer carries them, the signed shim + grub path for Secure Boot.")
@click.option("--image-import-dir", "image_import_dirs", multiple=True,
              type=click.Path(file_okay=False, exists=True, path_type=Path),
              help="A directory POST /api/v1/images may read manifests and tarballs from (repeatable). "
                   "Without one, images are registered with `metalstream image add` only.")
@click.option("--tls-cert", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              metavar="FILE", help="PEM certificate (with its chain): serve HTTPS on --bind. Needs --tls-key.")
@click.option("--tls-key", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              metavar="FILE",
              help="The certificate's unencrypted PEM private key (keep it readable by the service only).")
@click.option("--boot-bind", default=None, metavar="HOST:PORT",
              help="With --tls-cert: also listen with plain HTTP here, for boot scripts and the installer's kernel "
                   "and initramfs only (iPXE and GRUB cannot verify the certificate); every other path is 403 "
                   "there. Needs --public-url https://...")
@click.option("--boot-url", default=None, metavar="URL",
              help="URL firmware fetches boot scripts, kernel and initramfs from (put into boot scripts). "
                   "Default: http://PUBLIC-HOST:PORT of --boot-bind, else the public URL. Behind a TLS proxy: "
                   "its plain http URL.")
@click.option("--auth-max-failures", default=10, show_default=True, type=click.IntRange(0, 10_000),
              help="Wrong tokens from one address within a minute before it is refused (429) for 5 minutes; "
                   "0 turns the guard off (behind a reverse proxy every client has the proxy's address).")
@click.option("--image-mirror", "image_mirrors", multiple=True, metavar="CIDR=URL",
              help="Agents in CIDR fetch images from URL/images/NAME.tar.zst first, the service last (repeatable).")
@click.option("--reboot-method", type=click.Choice(["firmware", "kexec"]), default="firmware", show_default=True,
              help="How agents boot the installed system when a deployment does not say (its `reboot_method`): "
                   "a firmware reboot, or kexec into the installed kernel (skips the firmware's POST; a firmware "
                   "reboot still where kexec is not possible, e.g. Secure Boot lockdown).")
@click.option("--bmc-timeout", default=20.0, show_default=True, type=click.FloatRange(1, 600),
              help="Seconds one call to a machine's BMC (Redfish request, ipmitool run) may take (docs/power.md).")
@click.option("--bmc-retries", default=3, show_default=True, type=click.IntRange(1, 10),
              help="Attempts of one BMC operation, with exponential backoff between them; refused credentials "
                   "are never retried.")
@click.option("--bmc-concurrency", default=2, show_default=True, type=click.IntRange(1, 64),
              help="BMC calls at once to one BMC address, per service process.")
@click.option("--power-refresh-interval", default=300.0, show_default=True, type=click.FloatRange(0),
              help="Seconds between reads of each machine's power state from its BMC; 0 turns them off.")
@click.option("--boot-timeout", default=600.0, show_default=True, type=click.FloatRange(1),
              help="Seconds after the service powered a machine on for it to network-boot (fetch its boot "
                   "script) before its deployment fails.")
@click.option("--webhook-timeout", default=10.0, show_default=True, type=click.FloatRange(0.5, 300),
              help="Seconds a webhook receiver has to accept the connection and to answer (docs/webhooks.md).")
@click.option("--webhook-retry-for", default=6 * 3600.0, show_default=True, type=click.FloatRange(3600),
              help="Seconds after an event during which a failing webhook delivery is retried (exponential "
                   "backoff with jitter, at least an hour); then it is given up.")
@click.option("--boot-path", type=click.Choice(BOOT_PATH_CHOICES), default="auto", show_default=True,
              help="With --tftp: the boot path of UEFI clients whose deployment forces none (its `boot_path`), "
                   "and of clients with no deployment: auto = the loader DHCP names; ipxe or shim-grub = that "
                   "path's loader under whichever first-stage name the client asks for (docs/service.md).")
@click.option("--discovery/--no-discovery", default=False, show_default=True,
              help="An unknown MAC that network-boots gets the installer in inspection mode: its agent reports "
                   "the hardware and powers off, and the machine appears in state `new` (docs/inspection.md).")
def serve(data_dir, db_url, bind, workers, threads, installer, public_url, agent_timeout, activation_timeout,
          sweep_interval, tftp_port, image_import_dirs, tls_cert, tls_key, boot_bind, boot_url, auth_max_failures,
          image_mirrors, reboot_method, boot_path, discovery, **power_settings):
    """Run the PXE/HTTP service under gunicorn: REST API, boot scripts, images, agent endpoints.

    \b
    Example:
      metalstream token create --scope admin --data-dir /srv/ms --create
      metalstream serve --data-dir /srv/ms --bind 0.0.0.0:8080 --installer out/installer.json --tftp 69
    Point DHCP (or `metalstream dnsmasq-config`) at http://HOST:PORT/boot.ipxe.

    \b
    With TLS (agent, API and images over HTTPS; boot files over plain HTTP on a second port):
      metalstream serve --data-dir /srv/ms --bind 0.0.0.0:8443 --tls-cert svc.pem --tls-key svc.key \\
          --public-url https://10.0.0.5:8443 --boot-bind 0.0.0.0:8080 --installer out/installer.json
    Build that installer with `metalstream build ... --format installer --ca ca.pem` (docs/service.md).
    """
    from metalstream import proc
    from metalstream.contracts import manifests

    from . import server, tftp
    from .render import SAFE_URL
    host, _ = _parse_bind(bind)
    if public_url is not None and not SAFE_URL.match(public_url):
        raise BadInput("must be a plain http(s)://host[:port] URL", location="--public-url")
    _check_tls(tls_cert, tls_key, public_url)
    boot_url = _boot_url(boot_url, boot_bind, bind=bind, public_url=public_url, tls=tls_cert is not None)
    config = _config(data_dir, db_url, installer=installer, public_url=public_url, agent_timeout=agent_timeout,
                     activation_timeout=activation_timeout, supervisor_interval=sweep_interval,
                     image_import_dirs=image_import_dirs, tls_cert=tls_cert, tls_key=tls_key, boot_url=boot_url,
                     auth_max_failures=auth_max_failures, image_mirrors=image_mirrors, reboot_method=reboot_method,
                     discovery=discovery, **power_settings)
    # Before the TFTP child and the workers start: one process migrates, and a database written by a
    # newer metalstream stops serve here (exit 1).
    # The installer's files are checked (sha256) by the TFTP child and the service as they open it; here only
    # its manifest is read, for what serve says about the boot paths.
    installer_manifest = (manifests.read_installer_manifest(manifests.load_document(config.installer),
                                                            str(config.installer)) if config.installer else None)
    if tftp_port is not None and public_url is None and _carries_signed_loaders(installer_manifest):
        _refuse_loopback_agent_url(host)
    _check_boot_path(boot_path, installer_manifest, tftp_port)
    click.echo(f"metalstream: {_upgrade_database(config)}", err=True)
    server.prepare_metrics_dir(config.data_dir)  # before the TFTP child starts: it counts its requests there too
    scheme = "https" if tls_cert else "http"
    tftp_process = None
    if tftp_port is not None:
        root = config.data_dir / "tftp"
        copied = tftp.populate(root)
        tftp_process = tftp.start(root, host, tftp_port, boot=tftp.BootOptions(
            db_url=config.db_url, installer=config.installer, public_url=public_url, http_scheme=scheme,
            http_host=host, http_port=_parse_bind(bind)[1], boot_path=boot_path))
        click.echo(f"metalstream: TFTP on udp/{tftp_port} serving {', '.join(copied) or 'nothing'} from {root}",
                   err=True)
    click.echo(f"metalstream: serving on {scheme}://{bind} (data {config.data_dir}, {workers} workers x {threads} "
               "threads)", err=True)
    _describe_boot_transport(tls_cert is not None, boot_bind, boot_url)
    for line in _boot_paths(installer_manifest, tftp_port, boot_path):
        click.echo(f"metalstream: {line}", err=True)
    serving_pid = os.getpid()
    try:
        server.serve(config, bind=bind, workers=workers, threads=threads, boot_bind=boot_bind)
    finally:
        # gunicorn workers are forks of this process and unwind through here too when they exit: only the
        # process that started the TFTP server stops it.
        if tftp_process is not None and os.getpid() == serving_pid:
            proc.terminate(tftp_process)


def _carries_signed_loaders(installer: dict | None) -> bool:
    """Whether an installer manifest document names the signed shim and grub (the Secure Boot path)."""
    from metalstream.contracts.manifests import SECURE_BOOT_LOADERS
    return installer is not None and all(key in installer.get("secure_boot", {}) for key in SECURE_BOOT_LOADERS)


def _refuse_loopback_agent_url(bind_host: str) -> None:
    """Without --public-url the TFTP path hands the agent the --bind address, which machines must reach."""
    import ipaddress
    host = bind_host.strip("[]")
    try:
        loopback = ipaddress.ip_address(host).is_loopback
    except ValueError:
        loopback = host == "localhost"
    if loopback:
        raise BadInput(f"is needed with --tftp and an installer carrying shim and grub when --bind is a loopback "
                       f"address ({bind_host}): the agent of a machine booted over TFTP is told the service's URL, "
                       "and machines cannot reach this host's loopback address; give the URL they reach it at",
                       location="--public-url")


def _check_boot_path(boot_path: str, installer: dict | None, tftp_port: int | None) -> None:
    """A --boot-path other than auto needs the TFTP server that answers the first-stage loaders, and shim-grub
    an installer carrying the signed shim and grub."""
    if boot_path == "auto":
        return
    if tftp_port is None:
        raise BadInput("needs --tftp: the TFTP server is what answers a UEFI client's first-stage loader",
                       location="--boot-path")
    if boot_path == "shim-grub" and not _carries_signed_loaders(installer):
        raise BadInput("shim-grub needs an --installer that carries the signed shim and grub", location="--boot-path")


def _boot_paths(installer: dict | None, tftp_port: int | None, boot_path: str = "auto") -> list[str]:
    """What `serve` says at start about the network boot paths it offers (`installer`: its manifest document)."""
    lines = ["boot path iPXE over HTTP: iPXE (from the NIC, or undionly.kpxe / snponly.efi over TFTP) fetches "
             "/boot.ipxe, then /boot/MAC.ipxe; a GRUB with http fetches /boot/grub.cfg, then /boot/grub/MAC.cfg"]
    if installer is None:
        lines.append("no installer (--installer): machines with a pending deployment cannot be installed, and the "
                     "signed shim + grub path (Secure Boot) is off")
    elif not _carries_signed_loaders(installer):
        lines.append("no signed shim + grub path (Secure Boot): the installer carries no signed shim and grub "
                     "(build it with the distribution's signed loaders); UEFI firmware with Secure Boot on refuses "
                     "the unsigned iPXE loaders")
    elif tftp_port is None:
        lines.append("no signed shim + grub path (Secure Boot): the installer carries signed shim and grub but TFTP "
                     "is off (add --tftp 69)")
    else:
        lines.append(f"boot path signed shim + grub over TFTP (Secure Boot): udp/{tftp_port} serves shimx64.efi, "
                     "grubx64.efi, grub/grub.cfg, grub/MAC.cfg, installer/vmlinuz and installer/initrd.img "
                     "(metalstream dnsmasq-config --uefi-loader shim)")
    if _carries_signed_loaders(installer):
        lines.append("boot path signed shim + grub over UEFI HTTP boot (Secure Boot): /boot/secureboot.img is a RAM "
                     "disk image with shim, grub, the machine's config (by its MAC in this host's neighbour table) "
                     "and the installer (metalstream dnsmasq-config --uefi-loader shim --dhcp-range ...)"
                     + ("" if shutil.which("mcopy") else "; mtools is not installed: the image cannot be built"))
    if tftp_port is not None:
        lines.append(_uefi_default_line(boot_path))
    return lines


def _uefi_default_line(boot_path: str) -> str:
    forcing = "a deployment's boot_path (ipxe, shim-grub) forces its machine's path"
    if boot_path == "auto":
        return (f"UEFI clients take the path of the loader DHCP names (snponly.efi: ipxe, shimx64.efi: shim-grub; "
                f"--boot-path auto); {forcing}")
    return (f"UEFI clients take the {boot_path} path whatever first-stage loader they ask for (--boot-path "
            f"{boot_path}), unless {forcing}" + ("; a deployment asking for Secure Boot keeps the loader DHCP names"
                                               if boot_path == "ipxe" else ""))


def _describe_boot_transport(tls: bool, boot_bind: str | None, boot_url: str | None) -> None:
    if boot_bind:
        click.echo(f"metalstream: plain HTTP on http://{boot_bind} for boot scripts and the installer only "
                   f"(firmware is sent to {boot_url})", err=True)
    elif tls and not boot_url:
        click.echo("metalstream: warning: boot scripts, kernel and initramfs are served over HTTPS only; firmware "
                   "must trust this certificate (or add --boot-bind HOST:PORT for a plain-HTTP boot listener)",
                   err=True)


@click.group("image")
def image():
    """Register, list, show and delete images (directly in the service's database).

    These work on the server host's data directory and refuse one holding no metalstream database
    (`image add --create` makes it). From elsewhere use `metalstream images ...` (the REST API).
    """


@image.command("add")
@data_dir_option
@db_option
@create_option
@click.argument("manifest", type=click.Path(dir_okay=False, path_type=Path))
def image_add(data_dir, db_url, create, manifest):
    """Register out/NAME.json (checks the tarball's size and sha256, links it into the store)."""
    from . import imagestore
    config, engine = _engine(data_dir, db_url, create=create)
    click.echo(f"checking {manifest} and its tarball ...", err=True)
    record = imagestore.register(engine, config.image_dir, manifest)
    click.echo(f"image {record['name']}: {record['size']} bytes, sha256 {record['sha256']}, "
               f"served at {record['url_path']}")


@image.command("list")
@data_dir_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the records (as GET /api/v1/images) as JSON.")
def image_list(data_dir, db_url, as_json):
    """List registered images: name, size, sha256 (tab-separated), or --json."""
    from . import imagestore
    _, engine = _engine(data_dir, db_url)
    records = imagestore.list_images(engine)
    if as_json:
        click.echo(json.dumps(records, indent=2))
        return
    for record in records:
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
    """Create, list and revoke API bearer tokens (only their hashes are stored).

    These work on the server host's data directory and refuse one holding no metalstream database
    (`token create --create` makes it). From elsewhere use `metalstream tokens ...` (the REST API).
    """


@token.command("create")
@data_dir_option
@db_option
@create_option
@click.option("--scope", type=click.Choice(["admin", "read"]), default="admin", show_default=True,
              help="admin may change things; read may only GET.")
@click.option("--comment", default=None, help="Who or what the token is for.")
def token_create(data_dir, db_url, create, scope, comment):
    """Create a token and print it once (it cannot be shown again)."""
    from . import tokens
    _, engine = _engine(data_dir, db_url, create=create)
    click.echo(tokens.create_api_token(engine, scope, comment))


@token.command("list")
@data_dir_option
@db_option
@click.option("--json", "as_json", is_flag=True, help="Print the records (as GET /api/v1/tokens) as JSON.")
def token_list(data_dir, db_url, as_json):
    """List tokens (id, scope, revoked, comment; tab-separated, or --json); never the secrets."""
    from . import tokens
    _, engine = _engine(data_dir, db_url)
    if as_json:
        click.echo(json.dumps(tokens.list_api_tokens(engine), indent=2))
        return
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


@click.group("db")
def db_group():
    """The service's database schema (Alembic migrations in pxe/migrations)."""


@db_group.command("upgrade")
@data_dir_option
@db_option
def db_upgrade(data_dir, db_url):
    """Bring the database to this release's schema revision and print from which revision to which.

    `serve` (and `image`/`token`) do the same on start; this does it explicitly, e.g. before starting
    several replicas on one PostgreSQL, or to check a database. A database from before migrations is
    recognised by its schema_version and upgraded; one written by a newer metalstream is refused
    (exit 1) and left unchanged. Running it again changes nothing.

    \b
    Examples:
      metalstream db upgrade --data-dir /srv/ms
      metalstream db upgrade --db postgresql+psycopg://metalstream@db.example/metalstream
    """
    click.echo(_upgrade_database(_config(data_dir, db_url)))


@click.command("dnsmasq-config")
@click.option("--server-url", required=True, metavar="URL",
              help="The service's URL, e.g. http://10.0.0.5:8080: iPXE fetches URL/boot.ipxe.")
@click.option("--subnet", required=True, metavar="CIDR", help="The PXE clients' network, e.g. 10.0.0.0/24.")
@click.option("--tftp-server", required=True, metavar="IP",
              help="IP address of the TFTP server that serves the first-stage loaders (`metalstream serve --tftp 69`).")
@click.option("--interface", default=None, metavar="NAME",
              help="Listen only on this interface (default: every interface with an address in --subnet).")
@click.option("--uefi-loader", type=click.Choice(["ipxe", "shim"]), default="ipxe", show_default=True,
              help="What UEFI x86-64 PXE clients (DHCP client architecture 7 and 9) boot first, over TFTP: "
                   "ipxe = iPXE (snponly.efi; refused by firmware that enforces Secure Boot); shim = the "
                   "distribution's signed shim (shimx64.efi), which loads grubx64.efi and grub/grub.cfg from the "
                   "same TFTP server (needs an installer built with the signed loaders). BIOS clients get "
                   "undionly.kpxe either way. The service's TFTP server can send the other path's loader under "
                   "this name: a deployment's boot_path, else serve --boot-path.")
@click.option("--dhcp-range", default=None, metavar="START,END",
              help="Hand out addresses START to END (inside --subnet, 12 h leases) instead of proxy DHCP: only on an "
                   "isolated provisioning network with no other DHCP server.")
def dnsmasq_config(server_url, subnet, tftp_server, interface, uefi_loader, dhcp_range):
    """Print a dnsmasq configuration that chains PXE clients to the service.

    By default it is proxy DHCP: it hands out no leases, the existing DHCP server keeps doing that and
    dnsmasq only adds the PXE boot answer. With --dhcp-range, dnsmasq is the network's DHCP server.
    UEFI HTTP boot clients (client architecture 16) get the service's Secure Boot RAM disk image
    (SERVER_URL/boot/secureboot.img: signed shim, signed GRUB, the machine's config and the installer) with
    --uefi-loader shim --dhcp-range; otherwise they are offered nothing and fall back to PXE. Save it as
    /etc/dnsmasq.d/metalstream.conf (check it with `dnsmasq --test -C FILE`).

    \b
    Examples:
      metalstream dnsmasq-config --server-url http://10.0.0.5:8080 --subnet 10.0.0.0/24 --tftp-server 10.0.0.5
      metalstream dnsmasq-config --server-url http://10.0.0.5:8080 --subnet 10.0.0.0/24 --tftp-server 10.0.0.5 \\
          --uefi-loader shim --dhcp-range 10.0.0.100,10.0.0.199 --interface eth1
    """
    from .dnsmasq import dnsmasq_config as render
    click.echo(render(server_url=server_url, subnet=subnet, tftp_server=tftp_server, interface=interface,
                      uefi_loader=uefi_loader, dhcp_range=dhcp_range), nl=False)


COMMANDS = [serve, image, token, db_group, dnsmasq_config]
