"""`metalstream machines ...` and `metalstream webhooks ...` over the REST API (issue 14's routes)."""
from __future__ import annotations

import os
from pathlib import Path

import click

from metalstream.errors import BadInput

from .options import Api, remote_command
from .output import Column, when

MACHINE_COLUMNS = [Column("id", "ID"), Column("name", "Name"), Column("state", "State"),
                   Column("macs", "MACs", ", ".join), Column("power_state", "Power"),
                   Column("bmc", "BMC", lambda bmc: bmc.get("driver") or ""), Column("tags", "Tags", ", ".join)]
WEBHOOK_COLUMNS = [Column("id", "ID"), Column("url", "URL"), Column("event_types", "Events", ", ".join),
                   Column("enabled", "Enabled"), Column("created_at", "Created", when)]
DELIVERY_COLUMNS = [Column("id", "ID"), Column("event_type", "Event"), Column("state", "State"),
                    Column("attempts", "Attempts"), Column("last_status", "Status"), Column("last_error", "Error")]
BMC_PASSWORD_ENV = "METALSTREAM_BMC_PASSWORD"


def _secret(path: Path | None, ask: bool, env: str, prompt: str) -> str | None:
    """A secret from a file (first line), the environment, or a prompt — never from an option's value."""
    if path is not None:
        lines = path.read_text().splitlines()
        return lines[0] if lines else ""
    if ask:
        return click.prompt(prompt, hide_input=True, err=True)
    return os.environ.get(env) or None


def bmc_options(fn):
    for option in reversed([
        click.option("--bmc-driver", type=click.Choice(["redfish", "ipmi", "manual"]), default=None,
                     help="How the service switches its power (manual: it does not)."),
        click.option("--bmc-address", default=None, metavar="ADDRESS",
                     help="Redfish: https://HOST[:PORT]; IPMI: HOST[:PORT]."),
        click.option("--bmc-username", default=None, metavar="USER"),
        click.option("--bmc-password-file", type=click.Path(dir_okay=False, exists=True, path_type=Path),
                     default=None, metavar="FILE",
                     help=f"The BMC password: this file's first line (default: ${BMC_PASSWORD_ENV}, if set)."),
        click.option("--ask-bmc-password", is_flag=True, help="Ask for the BMC password (without echo)."),
        click.option("--bmc-verify-tls/--bmc-no-verify-tls", default=None, help="Redfish: check its certificate."),
        click.option("--bmc-system-id", default=None, metavar="ID", help="Redfish system (default: the only one)."),
    ]):
        fn = option(fn)
    return fn


def _bmc(driver, address, username, password_file, ask_password, verify_tls, system_id) -> dict:
    password = _secret(password_file, ask_password, BMC_PASSWORD_ENV, "BMC password")
    given = {"driver": driver, "address": address, "username": username, "password": password,
             "verify_tls": verify_tls, "system_id": system_id}
    return {key: value for key, value in given.items() if value is not None}


@click.group("machines")
def machines():
    """Machines on a running service (REST API): list, show, add, edit, delete, power."""


@machines.command("list")
@remote_command()
@click.option("--state", default=None, help="new, ready, deploying, deployed or failed.")
@click.option("--tag", default=None)
@click.option("--mac", default=None, metavar="MAC")
@click.option("--firmware", type=click.Choice(["uefi", "bios"]), default=None)
@click.option("--min-memory-mib", type=click.IntRange(0), default=None)
@click.option("--min-cpus", type=click.IntRange(0), default=None)
@click.option("--min-disks", type=click.IntRange(0), default=None)
@click.option("--min-disk-bytes", type=click.IntRange(0), default=None)
def list_machines(api: Api, **filters):
    """List machines (filters by state, tag, MAC and inspected facts)."""
    api.list(api.client.get("/api/v1/machines", **filters)["machines"], MACHINE_COLUMNS)


@machines.command("show")
@remote_command()
@click.argument("ref", metavar="NAME|ID")
def show_machine(api: Api, ref):
    """Show one machine: state, MACs, BMC (never its password), facts, power, deployments."""
    api.one(api.client.get(f"/api/v1/machines/{ref}"), MACHINE_COLUMNS)


@machines.command("add")
@remote_command()
@click.argument("name")
@click.option("--mac", "macs", multiple=True, required=True, metavar="MAC", help="A NIC's MAC (repeatable).")
@click.option("--tag", "tags", multiple=True, help="A tag (repeatable).")
@bmc_options
def add_machine(api: Api, name, macs, tags, bmc_driver, bmc_address, bmc_username, bmc_password_file,
                ask_bmc_password, bmc_verify_tls, bmc_system_id):
    """Register a machine (BMC driver manual unless --bmc-driver)."""
    body = {"name": name, "macs": list(macs), "tags": list(tags)}
    bmc = _bmc(bmc_driver, bmc_address, bmc_username, bmc_password_file, ask_bmc_password, bmc_verify_tls,
               bmc_system_id)
    if bmc:
        body["bmc"] = bmc
    api.one(api.client.post("/api/v1/machines", body), MACHINE_COLUMNS)


@machines.command("edit")
@remote_command()
@click.argument("ref", metavar="NAME|ID")
@click.option("--name", default=None, help="A new name.")
@click.option("--mac", "macs", multiple=True, metavar="MAC", help="Replace the MACs (repeatable).")
@click.option("--tag", "tags", multiple=True, help="Replace the tags (repeatable).")
@click.option("--no-tags", is_flag=True, help="Remove every tag.")
@click.option("--state", default=None, help="Set the state (e.g. ready: take an inspected machine into use).")
@bmc_options
def edit_machine(api: Api, ref, name, macs, tags, no_tags, state, bmc_driver, bmc_address, bmc_username,
                 bmc_password_file, ask_bmc_password, bmc_verify_tls, bmc_system_id):
    """Change a machine: only what is given changes (BMC fields merge with the stored BMC)."""
    body = {key: value for key, value in {"name": name, "state": state}.items() if value is not None}
    if macs:
        body["macs"] = list(macs)
    if tags or no_tags:
        body["tags"] = list(tags)
    bmc = _bmc(bmc_driver, bmc_address, bmc_username, bmc_password_file, ask_bmc_password, bmc_verify_tls,
               bmc_system_id)
    if bmc:
        body["bmc"] = bmc
    if not body:
        raise BadInput("nothing to change: give at least one option", location="REF")
    api.one(api.client.request("PATCH", f"/api/v1/machines/{ref}", json=body).json(), MACHINE_COLUMNS)


@machines.command("delete")
@remote_command(output=False)
@click.argument("ref", metavar="NAME|ID")
def delete_machine(api: Api, ref):
    """Delete a machine (refused, 409, while it has an open deployment)."""
    api.client.delete(f"/api/v1/machines/{ref}")
    click.echo(f"deleted machine {ref}")


@machines.command("power")
@remote_command()
@click.argument("ref", metavar="NAME|ID")
@click.argument("action", type=click.Choice(["on", "off", "cycle", "status"]))
@click.option("--boot-device", type=click.Choice(["network", "disk"]), default=None,
              help="Boot once from this device.")
@click.option("--graceful-timeout", type=click.FloatRange(0, 300), default=None, metavar="SECONDS",
              help="off: seconds to wait for a clean shutdown before forcing it.")
def power_machine(api: Api, ref, action, boot_device, graceful_timeout):
    """Switch a machine's power through its BMC (or read it: status)."""
    body = {"action": action, **({"boot_device": boot_device} if boot_device else {}),
            **({"graceful_timeout": graceful_timeout} if graceful_timeout is not None else {})}
    api.one(api.client.post(f"/api/v1/machines/{ref}/power", body))


@click.group("webhooks")
def webhooks():
    """Webhook subscriptions on a running service (REST API): list, show, add, edit, delete, deliveries."""


@webhooks.command("list")
@remote_command()
def list_webhooks(api: Api):
    """List subscriptions (never their secrets)."""
    api.list(api.client.get("/api/v1/webhooks")["webhooks"], WEBHOOK_COLUMNS)


@webhooks.command("show")
@remote_command()
@click.argument("webhook_id", metavar="ID")
def show_webhook(api: Api, webhook_id):
    """Show one subscription."""
    api.one(api.client.get(f"/api/v1/webhooks/{webhook_id}"), WEBHOOK_COLUMNS)


@webhooks.command("add")
@remote_command()
@click.argument("hook_url", metavar="URL")
@click.option("--event", "events", multiple=True, metavar="TYPE",
              help="An event type, e.g. deployment.active (repeatable; default: every event, \"*\").")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              metavar="FILE", help="The signing secret: this file's first line (default: the service makes one "
                                   "and answers it this once).")
@click.option("--disabled", is_flag=True, help="Create it switched off.")
def add_webhook(api: Api, hook_url, events, secret_file, disabled):
    """Subscribe URL to events; the answer shows the signing secret, this one time only."""
    body = {"url": hook_url, "enabled": not disabled, **({"event_types": list(events)} if events else {})}
    secret = _secret(secret_file, False, "", "")
    if secret is not None:
        body["secret"] = secret
    api.one(api.client.post("/api/v1/webhooks", body), WEBHOOK_COLUMNS)


@webhooks.command("edit")
@remote_command()
@click.argument("webhook_id", metavar="ID")
@click.option("--url", "new_url", default=None, help="A new URL.")
@click.option("--event", "events", multiple=True, metavar="TYPE", help="Replace the event types (repeatable).")
@click.option("--secret-file", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              metavar="FILE", help="A new signing secret: this file's first line.")
@click.option("--enable/--disable", "enabled", default=None)
def edit_webhook(api: Api, webhook_id, new_url, events, secret_file, enabled):
    """Change a subscription: only what is given changes."""
    body = {key: value for key, value in {"url": new_url, "enabled": enabled}.items() if value is not None}
    if events:
        body["event_types"] = list(events)
    if secret_file is not None:
        body["secret"] = _secret(secret_file, False, "", "")
    if not body:
        raise BadInput("nothing to change: give at least one option", location="ID")
    api.one(api.client.request("PATCH", f"/api/v1/webhooks/{webhook_id}", json=body).json(), WEBHOOK_COLUMNS)


@webhooks.command("delete")
@remote_command(output=False)
@click.argument("webhook_id", metavar="ID")
def delete_webhook(api: Api, webhook_id):
    """Delete a subscription (and its pending deliveries)."""
    api.client.delete(f"/api/v1/webhooks/{webhook_id}")
    click.echo(f"deleted webhook {webhook_id}")


@webhooks.command("deliveries")
@remote_command()
@click.argument("webhook_id", metavar="ID")
@click.option("--state", default=None, help="Only deliveries in this state.")
@click.option("--limit", type=click.IntRange(1, 1000), default=None, help="At most this many (default 100).")
def list_deliveries(api: Api, webhook_id, state, limit):
    """A subscription's deliveries, newest first: state, attempts, the last answer or error."""
    api.list(api.client.get(f"/api/v1/webhooks/{webhook_id}/deliveries", state=state, limit=limit)["deliveries"],
             DELIVERY_COLUMNS)


COMMANDS = [machines, webhooks]
