"""`metalstream build`: kickstart in, image (or installer environment) out."""
from __future__ import annotations

import os
import signal
from pathlib import Path

import click

from metalstream.errors import BadInput, OperationFailed
from metalstream.tls import read_ca_certificate

from .context import BuildOptions
from .kickstart import KickstartError, parse_kickstart
from .ks_cli import FAMILY_OPTION, RELEASE_OPTION, TEMPLATE_OPTION
from .pipeline import Progress, build
from .templating import parse_vars, without_template_suffix


@click.command("build")
@click.argument("kickstart", type=click.Path(exists=True, dir_okay=False, path_type=Path))
@click.option("-o", "--output", "output_dir", required=True, type=click.Path(file_okay=False, path_type=Path),
              help="Directory for NAME.tar.zst and NAME.json (created if missing; the build root is made here too).")
@click.option("--name", help="Image name (default: the kickstart's file name without .j2 and .ks).")
@click.option("--format", "image_format", type=click.Choice(["tarball", "installer"]), default="tarball",
              show_default=True, help="tarball: an OS image; installer: the installer kernel + initramfs.")
@click.option("--zstd-level", type=click.IntRange(1, 22), default=10, show_default=True,
              help="zstd compression level (20-22 use --ultra).")
@click.option("--zstd-threads", type=click.IntRange(0, 256), default=0, show_default=True,
              help="zstd worker threads (0: one per core).")
@click.option("--source-date-epoch", type=click.IntRange(0), default=None,
              help="Timestamp every file is clamped to and the manifest's `created` "
                   "(default: derived from the kickstart's sha256, so the same kickstart gives the same image).")
@click.option("--cache-dir", type=click.Path(file_okay=False, path_type=Path), default=Path("/var/cache/metalstream"),
              show_default=True, help="Where downloaded packages are kept between builds.")
@click.option("--no-cache", is_flag=True,
              help="A clean build: neither read nor fill the package cache, and never reuse a previous build.")
@click.option("--rebuild", is_flag=True,
              help="Build even when the previous build in -o has the same inputs (the package cache is still used).")
@click.option("--keep-root", is_flag=True, help="Keep the build root directory after a successful build (debugging).")
@click.option("--var", "var_pairs", multiple=True, metavar="NAME=VALUE",
              help="Template variable (repeatable); only for templates (*.j2, or --template).")
@TEMPLATE_OPTION
@FAMILY_OPTION
@RELEASE_OPTION
@click.option("--ca", "ca_file", type=click.Path(dir_okay=False, path_type=Path), default=None, metavar="FILE",
              help="--format installer only: the service's CA certificate (PEM, no key), baked into the initramfs. "
                   "The agent then verifies the service with it and talks https only.")
def build_command(kickstart: Path, output_dir: Path, name: str | None, image_format: str, zstd_level: int,
                  zstd_threads: int, source_date_epoch: int | None, cache_dir: Path, no_cache: bool,
                  rebuild: bool, keep_root: bool, var_pairs: tuple[str, ...], template: bool, family: str | None,
                  release: str | None, ca_file: Path | None) -> int:
    """Build an OS image (NAME.tar.zst + NAME.json manifest) or the installer environment from a KICKSTART.

    Stages (each shown with its duration): install packages with the distribution's own tool
    (mmdebstrap or dnf), configure (lang, keyboard, timezone, services, firewall), accounts,
    %post scripts, a generic initramfs for every kernel, cleanup of caches and machine identity,
    a reproducible tar.zst and its manifest. The same kickstart and packages give the same sha256.

    An unchanged image is not built again: when the previous build in the output directory had the
    same expanded kickstart, options, builder (version and source) and repository metadata (Debian
    InRelease/Release, RPM repomd.xml), and its NAME.tar.zst and NAME.json are intact, they are
    reused (NAME.cache-key.json records the key). --rebuild builds anyway; --no-cache also skips the
    package cache. A repository that cannot be read, or a --mirrorlist/--metalink, means no reuse.

    The distribution comes from, first that says: --family/--release, the kickstart's
    `%addon org_metalstream_image`, its `url`/`repo` lines (a /releases/N/ path: rpm N; see
    kickstarts/README.md); a flag that differs from the add-on is a warning naming both. A KICKSTART
    named *.j2 is a Jinja2 template (values from --var); other files are never rendered.

    Needs root. Exit codes: 0 built, 1 the build failed, 2 the kickstart is wrong
    (messages name FILE:LINE). On failure the partial build root is removed.
    """
    if ca_file is not None:
        if image_format != "installer":
            raise BadInput("a CA certificate goes into the installer only: add --format installer", location="--ca")
        read_ca_certificate(ca_file, location="--ca")  # checked before a build that takes minutes
    try:
        split = parse_kickstart(kickstart, variables=parse_vars(var_pairs), template=template, family=family,
                                release=release)
    except KickstartError as exc:
        for diagnostic in exc.diagnostics:
            click.echo(str(diagnostic), err=True)
        raise
    if os.geteuid() != 0:
        raise OperationFailed("metalstream build needs root (package installs into a root, mounts in private "
                              "namespaces); run it with sudo")
    for warning in split.warnings:
        click.echo(str(warning), err=True)
    options = BuildOptions(output_dir=output_dir.resolve(), name=name or without_template_suffix(kickstart.name).removesuffix(".ks"),
                           image_format=image_format, cache_dir=cache_dir.resolve(), use_cache=not no_cache,
                           reuse=not (no_cache or rebuild),
                           zstd_level=zstd_level, zstd_threads=zstd_threads, source_date_epoch=source_date_epoch,
                           keep_root=keep_root, ca_file=ca_file.resolve() if ca_file else None)
    previous = signal.signal(signal.SIGTERM, _terminate)
    try:
        manifest = build(split, options, progress=Progress())
    finally:
        signal.signal(signal.SIGTERM, previous)
    click.echo(str(manifest))
    return 0


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt  # unwinds like Ctrl-C: the pipeline removes the partial root


COMMANDS = [build_command]
