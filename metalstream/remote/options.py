"""Options every remote command takes (--url, --token, --ca, -o, -c) and the object they make."""
from __future__ import annotations

import functools
from dataclasses import dataclass

import click

from .client import Client, require_token
from .output import FORMATS, Column, emit_list, emit_one
from .profile import resolve


@dataclass
class Api:
    """What a remote command works with: the client and how to print."""
    client: Client
    fmt: str | None
    columns: tuple[str, ...]

    def list(self, records: list[dict], columns: list[Column]) -> None:
        emit_list(records, columns, self.fmt, self.columns)

    def one(self, record: dict, columns: list[Column] | None = None) -> None:
        emit_one(record, columns, self.fmt, self.columns)


def remote_command(output: bool = True):
    """Decorate a click command: adds the connection (and output) options and passes `api` first."""
    def decorate(fn):
        @click.option("--url", default=None, metavar="URL",
                      help="The service, e.g. http://10.0.0.5:8080 (default: $METALSTREAM_URL, else the profile "
                           "from `metalstream login`).")
        @click.option("--token", default=None, metavar="TOKEN",
                      help="API token msa_... (default: $METALSTREAM_TOKEN, else the profile's). Prefer the "
                           "environment or the profile: options show in `ps`.")
        @click.option("--ca", default=None, type=click.Path(dir_okay=False, exists=True), metavar="FILE",
                      help="Verify an https service with this CA certificate (default: the system trust store).")
        @functools.wraps(fn)
        def wrapper(*args, url, token, ca, output_format=None, columns=(), **kwargs):
            target = resolve(url, token)
            require_token(target)
            api = Api(Client(target, verify=ca or True), output_format, tuple(columns))
            return fn(api, *args, **kwargs)
        if output:
            wrapper = click.option("-c", "--column", "columns", multiple=True, metavar="COLUMN",
                                   help="Print only this column or field (repeatable).")(wrapper)
            wrapper = click.option("-o", "--output", "output_format", type=click.Choice(FORMATS), default=None,
                                   help="Output format (default: table on a terminal, json otherwise).")(wrapper)
        return wrapper
    return decorate
