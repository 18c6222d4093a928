"""`metalstream login URL` and `metalstream logout`: the profile the remote commands fall back on."""
from __future__ import annotations

import os

import click

from .client import Client
from .profile import TOKEN_ENV, Target, check_url, profile_path, save_profile


@click.command("login")
@click.argument("url")
@click.option("--token", default=None, metavar="TOKEN",
              help=f"The API token (default: ${TOKEN_ENV}, else asked for without echo).")
@click.option("--ca", default=None, type=click.Path(dir_okay=False, exists=True), metavar="FILE",
              help="Verify an https service with this CA certificate while checking the token.")
def login(url, token, ca):
    """Check a token against the service at URL and store both in the profile.

    The profile is $XDG_CONFIG_HOME/metalstream/profile.json (else ~/.config/...), mode 0600. Remote
    commands use it when neither --url/--token nor METALSTREAM_URL/METALSTREAM_TOKEN say otherwise; its
    token is sent only to its URL.

    \b
    Example:
      metalstream login http://10.0.0.5:8080      # asks for the msa_... token
    """
    url = check_url(url, "URL")
    source = "--token" if token else TOKEN_ENV if os.environ.get(TOKEN_ENV) else "the prompt"
    token = token or os.environ.get(TOKEN_ENV) or click.prompt("API token", hide_input=True, err=True)
    client = Client(Target(url, token, "URL", source), verify=ca or True)
    client.get("/api/v1/deployments", state="active")  # any read: 401 here means the token is no good
    path = save_profile(url, token)
    click.echo(f"logged in to {url}; profile {path} (mode 0600)")


@click.command("logout")
def logout():
    """Remove the profile written by `metalstream login`."""
    path = profile_path()
    try:
        path.unlink()
    except FileNotFoundError:
        click.echo(f"no profile at {path}")
        return
    click.echo(f"removed {path}")


COMMANDS = [login, logout]
