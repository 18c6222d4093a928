"""`metalstream machine list|show|add|edit|delete`: the machine registry, on the service's database directly
(same --data-dir / --db as `serve`; no token), as `image` and `token` do. Remote clients use
/api/v1/machines instead.

A BMC password is never taken on the command line (it would sit in shell history and in `ps`): it comes
from --bmc-password-file, from a prompt (--bmc-password-prompt), or from the environment variable
METALSTREAM_BMC_PASSWORD, in that order.
"""
from __future__ import annotations

import json
import os
import re
from pathlib import Path

import click

from metalstream.errors import BadInput

from .cli import _engine, create_option, data_dir_option, db_option

PASSWORD_ENVIRONMENT = "METALSTREAM_BMC_PASSWORD"
# API field → the option that sets it, so a refusal names what the user typed
_OPTIONS = {"name": "NAME", "macs": "--mac", "tags": "--tag", "state": "--state", "bmc": "--bmc-driver",
            "bmc.driver": "--bmc-driver", "bmc.address": "--bmc-address", "bmc.username": "--bmc-username",
            "bmc.password": "--bmc-password-file", "bmc.verify_tls": "--bmc-verify-tls/--bmc-no-verify-tls",
            "bmc.system_id": "--bmc-system-id"}


def _option_for(location: str | None) -> str | None:
    if location is None:
        return None
    match = re.fullmatch(r"(macs|tags)\[(\d+)\]", location)
    if match:
        return f"{_OPTIONS[match[1]]} #{int(match[2]) + 1}"
    return _OPTIONS.get(location, location)


def _relocated(exc: BadInput) -> BadInput:
    return exc.relocated(_option_for(exc.location)) if exc.location else exc


def _open(data_dir: Path, db_url: str | None, create: bool = False):
    from .secretbox import SecretBox
    config, engine = _engine(data_dir, db_url, create=create)
    return engine, SecretBox.for_data_dir(config.data_dir)


def _password(password_file: Path | None, prompt: bool) -> str | None:
    if password_file is not None:
        lines = password_file.read_text().splitlines()
        if not lines or not lines[0]:
            raise BadInput("the file's first line (the password) is empty", location="--bmc-password-file")
        return lines[0]
    if prompt:
        return click.prompt("BMC password", hide_input=True, confirmation_prompt=True)
    return os.environ.get(PASSWORD_ENVIRONMENT) or None


def _summary(machine: dict) -> str:
    current = machine["current_deployment"]
    return "\t".join([machine["name"], machine["state"], ",".join(machine["macs"]), machine["bmc"]["driver"],
                      machine["power_state"] or "-", ",".join(machine["tags"]) or "-",
                      f"{current['id']} ({current['state']})" if current else "-"])


def _echo(machine: dict, as_json: bool) -> None:
    click.echo(json.dumps(machine, indent=2) if as_json else _summary(machine))


bmc_options = [
    click.option("--bmc-driver", type=click.Choice(["redfish", "ipmi", "manual"]), default=None,
                 help="How the service powers the machine (manual: it does not)."),
    click.option("--bmc-address", default=None, metavar="ADDRESS",
                 help="redfish: http(s)://HOST[:PORT]; ipmi: HOST or HOST:PORT."),
    click.option("--bmc-username", default=None, metavar="USER"),
    click.option("--bmc-password-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
                 help=f"Read the BMC password from this file's first line (else --bmc-password-prompt, else "
                      f"${PASSWORD_ENVIRONMENT}). It is stored encrypted."),
    click.option("--bmc-password-prompt", is_flag=True, help="Ask for the BMC password (not echoed)."),
    click.option("--bmc-verify-tls/--bmc-no-verify-tls", default=None,
                 help="redfish: check the BMC's TLS certificate (default: check)."),
    click.option("--bmc-system-id", default=None, metavar="ID", help="redfish: the system's id or path."),
]


def with_bmc_options(function):
    for option in reversed(bmc_options):
        function = option(function)
    return function


def _bmc_fields(driver, address, username, password, verify_tls, system_id) -> dict:
    fields = {"driver": driver, "address": address, "username": username, "password": password,
              "verify_tls": verify_tls, "system_id": system_id}
    return {key: value for key, value in fields.items() if value is not None}


@click.group("machine")
def machine():
    """Register, list, change and delete machines (name, MACs, BMC, tags); BMC passwords are stored encrypted."""


@machine.command("list")
@data_dir_option
@db_option
@click.option("--state", default=None, help="Only machines in this state (new, ready, deploying, deployed, failed).")
@click.option("--tag", default=None, help="Only machines with this tag.")
@click.option("--mac", default=None, help="Only the machine with this MAC.")
@click.option("--json", "as_json", is_flag=True, help="Print the machines as a JSON list.")
def machine_list(data_dir, db_url, state, tag, mac, as_json):
    """List machines: name, state, MACs, BMC driver, power state, tags, current deployment (tab-separated)."""
    from . import machines
    from .schemas.base import parse
    from .schemas.machines import MachineFilters
    args = {key: value for key, value in (("state", state), ("tag", tag), ("mac", mac)) if value is not None}
    try:
        filters = parse(MachineFilters, args).given()
    except BadInput as exc:
        raise exc.relocated(f"--{exc.location}") from None
    engine, _ = _open(data_dir, db_url)
    found = machines.list_all(engine, filters)
    if as_json:
        click.echo(json.dumps(found, indent=2))
        return
    for item in found:
        click.echo(_summary(item))


@machine.command("show")
@data_dir_option
@db_option
@click.argument("name")
def machine_show(data_dir, db_url, name):
    """Print one machine (by name or id) as JSON: never its BMC password."""
    from . import machines
    engine, _ = _open(data_dir, db_url)
    click.echo(json.dumps(machines.get(engine, name), indent=2))


@machine.command("add")
@data_dir_option
@db_option
@create_option
@click.argument("name")
@click.option("--mac", "macs", multiple=True, required=True, help="A MAC of the machine (repeat for each NIC).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeat for more).")
@with_bmc_options
@click.option("--json", "as_json", is_flag=True, help="Print the machine as JSON.")
def machine_add(data_dir, db_url, create, name, macs, tags, bmc_driver, bmc_address, bmc_username, bmc_password_file,
                bmc_password_prompt, bmc_verify_tls, bmc_system_id, as_json):
    """Register a machine.

    \b
    Examples:
      metalstream machine add node-01 --mac 52:54:00:12:34:56 --tag rack1
      metalstream machine add node-02 --mac 52:54:00:12:34:57 --bmc-driver redfish \\
          --bmc-address https://10.0.0.20 --bmc-username admin --bmc-password-file /root/bmc-node-02.pw
    """
    from . import machines
    from .schemas.base import parse
    from .schemas.machines import MachineCreate
    password = _password(bmc_password_file, bmc_password_prompt)
    body = {"name": name, "macs": list(macs), "tags": list(tags)}
    bmc = _bmc_fields(bmc_driver, bmc_address, bmc_username, password, bmc_verify_tls, bmc_system_id)
    if bmc:
        if "driver" not in bmc:
            raise BadInput("is required with the other --bmc-* options", location="--bmc-driver")
        body["bmc"] = bmc
    try:
        spec = parse(MachineCreate, body).spec()
    except BadInput as exc:
        raise _relocated(exc) from None
    engine, secrets = _open(data_dir, db_url, create)
    _echo(machines.create(engine, secrets, **spec), as_json)


@machine.command("edit")
@data_dir_option
@db_option
@click.argument("name")
@click.option("--rename", default=None, metavar="NEW_NAME", help="A new name.")
@click.option("--mac", "macs", multiple=True, help="Replace the MACs with these (repeat for each NIC).")
@click.option("--tag", "tags", multiple=True, help="Replace the tags with these (repeat for more).")
@click.option("--no-tags", is_flag=True, help="Remove every tag.")
@click.option("--ready", is_flag=True, help="Set the state to ready (a new machine taken into use, a failure cleared).")
@with_bmc_options
@click.option("--json", "as_json", is_flag=True, help="Print the machine as JSON.")
def machine_edit(data_dir, db_url, name, rename, macs, tags, no_tags, ready, bmc_driver, bmc_address, bmc_username,
                 bmc_password_file, bmc_password_prompt, bmc_verify_tls, bmc_system_id, as_json):
    """Change a machine (by name or id): only what is given changes; the BMC password stays unless a new one is
    given (another --bmc-driver starts the BMC from nothing)."""
    from . import machines
    from .schemas.base import parse
    from .schemas.machines import MachinePatch
    body: dict = {}
    if rename is not None:
        body["name"] = rename
    if macs:
        body["macs"] = list(macs)
    if tags or no_tags:
        body["tags"] = [] if no_tags else list(tags)
    if ready:
        body["state"] = "ready"
    bmc = _bmc_fields(bmc_driver, bmc_address, bmc_username, _password(bmc_password_file, bmc_password_prompt),
                      bmc_verify_tls, bmc_system_id)
    if bmc:
        body["bmc"] = bmc
    try:
        change = parse(MachinePatch, body).change()
        engine, secrets = _open(data_dir, db_url)
        _echo(machines.update_machine(engine, secrets, name, change), as_json)
    except BadInput as exc:
        raise (exc.relocated("--rename") if exc.location == "name" else _relocated(exc)) from None


@machine.command("delete")
@data_dir_option
@db_option
@click.argument("name")
def machine_delete(data_dir, db_url, name):
    """Delete a machine (refused while it has an open deployment)."""
    from . import machines
    engine, _ = _open(data_dir, db_url)
    machines.delete_machine(engine, name)
    click.echo(f"deleted machine {name}")


COMMANDS = [machine]
