"""The `metalstream` command: one entry point, subcommands contributed by each component.

Each component keeps its subcommands in its own module and exposes them as `COMMANDS`; this
module only assembles them and turns errors into exit codes: 0 ok, 1 operation failed,
2 bad input, 130 interrupted. Tracebacks are shown only with --debug.
"""
from __future__ import annotations

import importlib
import logging
import os
import signal
import sys

import click

from . import __version__
from .errors import EXIT_FAILED, EXIT_INTERRUPTED, MetalstreamError

# Each command is imported only when it is run (or listed by --help): `metalstream install` must not pay
# for the builder's or the service's imports. The installer environment ships only this core package and
# the agent (deployer); the commands of components that are not there are simply not offered.
COMPONENT_COMMANDS = {
    "ks": "tarball_builder.ks_cli", "build": "tarball_builder.build_cli",
    "serve": "pxe.cli", "image": "pxe.cli", "token": "pxe.cli", "db": "pxe.cli",
    "dnsmasq-config": "pxe.cli", "machine": "pxe.machine_cli",
    "agent": "deployer.agent_cli", "install": "deployer.install_cli",
    "vm": "lab.cli", "demo": "lab.cli",
    # the remote CLI (REST API of a running service); plural names, the singular ones work on a data directory
    "login": "metalstream.remote.login_cli", "logout": "metalstream.remote.login_cli",
    "deploy": "metalstream.remote.deployments_cli", "deployments": "metalstream.remote.deployments_cli",
    "images": "metalstream.remote.resources_cli", "tokens": "metalstream.remote.resources_cli",
    "machines": "metalstream.remote.machines_cli", "webhooks": "metalstream.remote.machines_cli",
}
# Other names a command answers to (not listed by --help): `deployment watch` reads as well as `deployments watch`.
ALIASES = {"deployment": "deployments"}


class ComponentGroup(click.Group):
    """Subcommands contributed by the components' modules (their `COMMANDS`), imported on first use."""

    def list_commands(self, ctx: click.Context) -> list[str]:
        return sorted(name for name in COMPONENT_COMMANDS if self.get_command(ctx, name) is not None)

    def get_command(self, ctx: click.Context, name: str) -> click.Command | None:
        name = ALIASES.get(name, name)
        module_name = COMPONENT_COMMANDS.get(name)
        if module_name is None:
            return None
        try:
            module = importlib.import_module(module_name)
        except ModuleNotFoundError as exc:
            if exc.name and module_name.startswith(exc.name):
                return None  # that component is not installed here (the installer environment)
            raise
        return next((command for command in module.COMMANDS if command.name == name), None)


@click.group(cls=ComponentGroup, context_settings={"help_option_names": ["-h", "--help"], "max_content_width": 100})
@click.version_option(__version__, "-V", "--version", prog_name="metalstream")
@click.option("-v", "--verbose", count=True, help="More log output (-v info, -vv debug incl. every command run).")
@click.option("--debug", is_flag=True, envvar="METALSTREAM_DEBUG", help="Show tracebacks for unexpected errors.")
@click.pass_context
def cli(ctx: click.Context, verbose: int, debug: bool) -> None:
    """metalstream: put an operating system on bare-metal machines in seconds.

    Build an image once from a kickstart (`ks`, `build`), serve it with the PXE/HTTP service
    (`serve`, `image`, `token`), and let the deployer agent stream it onto each machine's disk
    (`agent`, `install`).

    Drive a running service from anywhere with the remote commands (its REST API): `login`, `deploy`,
    `deployments` (or `deployment`), `images`, `tokens`, `machines`, `webhooks`. Plural names talk to a
    service (--url/--token, $METALSTREAM_URL/$METALSTREAM_TOKEN, or the `login` profile); the singular
    `image`, `token` and `db` work on the server's data directory. See docs/cli.md.

    Exit codes: 0 success, 1 the operation failed, 2 bad input (nothing was changed).
    """
    level = logging.WARNING - 10 * verbose
    logging.basicConfig(level=max(level, logging.DEBUG), format="%(asctime)s %(name)s %(levelname)s %(message)s")
    ctx.obj = {"debug": debug}


def _terminate(signum, frame) -> None:
    raise KeyboardInterrupt(f"signal {signum}")


def main(argv: list[str] | None = None) -> int:
    """Console entry point; returns (and exits with) the process exit code."""
    # SIGTERM unwinds like Ctrl-C, so context managers stop VMs, unmount and detach loop devices.
    signal.signal(signal.SIGTERM, _terminate)
    debug = os.environ.get("METALSTREAM_DEBUG") == "1" or "--debug" in (argv if argv is not None else sys.argv)
    try:
        returned = cli.main(args=argv, prog_name="metalstream", standalone_mode=False)
    except (click.exceptions.Abort, KeyboardInterrupt):
        # click turns Ctrl-C (and our SIGTERM) inside a command into Abort; both mean "interrupted".
        click.echo("metalstream: interrupted", err=True)
        code = EXIT_INTERRUPTED
    except click.ClickException as exc:
        exc.show()
        code = exc.exit_code
    except click.exceptions.Exit as exc:
        code = exc.exit_code
    except MetalstreamError as exc:
        click.echo(f"metalstream: error: {exc}", err=True)
        code = exc.exit_code
    except Exception as exc:  # an unexpected bug: say so plainly, never a bare traceback unless asked
        if debug:
            raise
        click.echo(f"metalstream: internal error: {type(exc).__name__}: {exc} (run with --debug for a traceback)", err=True)
        code = EXIT_FAILED
    else:
        # A command may return an int exit code (e.g. `ks lint` returns 2 when it found problems).
        code = returned if isinstance(returned, int) else 0
    if argv is None:
        sys.exit(code)
    return code

