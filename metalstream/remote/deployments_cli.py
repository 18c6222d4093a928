"""`metalstream deploy` and `metalstream deployments list|show|watch|cancel|logs` (also `deployment ...`)."""
from __future__ import annotations

from pathlib import Path

import click

from metalstream.contracts.plan import DISK_HINT_FIELDS, HINT_SIZE_FIELDS, DiskHints, read_passphrase
from metalstream.errors import BadInput
from metalstream.secret_input import read_secret_line

from .options import Api, remote_command
from .output import Column, seconds, size, when
from .watch import watch

COLUMNS = [Column("id", "ID"), Column("mac", "MAC"), Column("hostname", "Hostname"), Column("image", "Image"),
           Column("state", "State"), Column("phase", "Phase"), Column("created_at", "Created", when)]
DETAIL = [Column("id", "id"), Column("state", "state"), Column("phase", "phase"), Column("message", "message"),
          Column("error", "error"), Column("mac", "mac"), Column("hostname", "hostname"), Column("image", "image"),
          Column("bytes_done", "bytes_done", size), Column("bytes_total", "bytes_total", size),
          Column("eta_seconds", "eta_seconds", seconds), Column("created_at", "created_at", when),
          Column("updated_at", "updated_at", when), Column("last_seen_at", "last_seen_at", when),
          Column("events", "events", lambda events: "\n".join(_event_line(e) for e in events))]

interval_option = click.option("--interval", default=2.0, show_default=True, type=click.FloatRange(0.2, 60),
                               help="Seconds between polls of each deployment.")
timeout_option = click.option("--timeout", default=None, type=click.FloatRange(1), metavar="SECONDS",
                              help="Give up (exit 1) when not every deployment has ended by then.")


def _event_line(event: dict) -> str:
    progress = f" {size(event['bytes_done'])}/{size(event['bytes_total'])}" if event.get("bytes_total") else ""
    return (f"{when(event['time'])} {event.get('state') or ''} {event.get('phase') or '-'}"
            f"{progress} {event.get('message') or ''}").rstrip()


def _lines(path: Path) -> list[str]:
    return [line.strip() for line in path.read_text().splitlines() if line.strip() and not line.startswith("#")]


def _hint_value(key: str, value: str, location: str):
    if key in HINT_SIZE_FIELDS:
        try:
            number = float(value)
        except ValueError:
            raise BadInput(f"{key} must be a number of GiB, got {value!r}", location=location) from None
        return int(number) if number.is_integer() else number
    if key == "rotational":
        if value.lower() not in ("true", "false", "yes", "no", "1", "0"):
            raise BadInput(f"rotational must be true or false, got {value!r}", location=location)
        return value.lower() in ("true", "yes", "1")
    return value


def parse_disk_option(text: str) -> tuple[str, dict]:
    """`--disk NAME=KEY=VALUE[,KEY=VALUE...]` → (NAME, its hints as the API takes them), checked by the plan's rule
    (BadInput at `--disk NAME...`)."""
    name, _, hints = text.partition("=")
    if not name or not hints:
        raise BadInput(f"{text!r} is not NAME=KEY=VALUE[,KEY=VALUE...] (keys: {', '.join(DISK_HINT_FIELDS)})",
                       location="--disk")
    location = f"--disk {name}"
    given = {}
    for item in hints.split(","):
        key, equals, value = item.partition("=")
        if not equals or key not in DISK_HINT_FIELDS:
            raise BadInput(f"{item!r} is not KEY=VALUE with KEY one of {', '.join(DISK_HINT_FIELDS)}",
                           location=location)
        given[key] = _hint_value(key, value, location)
    DiskHints.from_json(given, location)
    return name, given


def _disks(options: tuple[str, ...]) -> dict:
    disks = {}
    for text in options:
        name, hints = parse_disk_option(text)
        if name in disks:
            raise BadInput(f"disk {name} is given twice", location=f"--disk {name}")
        disks[name] = hints
    return disks


@click.command("deploy")
@remote_command()
@click.option("--image", required=True, metavar="NAME", help="A registered image (`metalstream images list`).")
@click.option("--mac", default=None, metavar="MAC", help="The machine's boot NIC, e.g. 52:54:00:12:34:56.")
@click.option("--machine", default=None, metavar="NAME|ID",
              help="A registered machine (its first MAC unless --mac names another of its MACs).")
@click.option("--hostname", default=None, help="Host name of the installed system.")
@click.option("--kickstart", type=click.Path(dir_okay=False, exists=True, path_type=Path), default=None,
              metavar="FILE", help="A deploy-time kickstart (storage, network, bootloader; docs/service.md).")
@click.option("--ssh-key", "ssh_key_files", multiple=True, type=click.Path(dir_okay=False, exists=True,
              path_type=Path), metavar="FILE", help="Public keys for root's authorized_keys, one a line (repeatable).")
@click.option("--boot-mode", type=click.Choice(["bios", "uefi", "both"]), default=None, help="Default: both.")
@click.option("--kernel-arg", "kernel_args", multiple=True, metavar="ARG", help="Extra kernel argument (repeatable).")
@click.option("--reboot-method", type=click.Choice(["firmware", "kexec"]), default=None,
              help="Default: the service's (`serve --reboot-method`).")
@click.option("--boot-path", type=click.Choice(["auto", "ipxe", "shim-grub"]), default=None,
              help="The network boot path of a UEFI machine: ipxe or shim-grub (signed shim + grub over TFTP) "
                   "whatever loader DHCP names. Default: auto (the service's `serve --boot-path`).")
@click.option("--ssh-address", default=None, metavar="HOST:PORT",
              help="Where the service's activation check reaches the installed system (default: the address "
                   "its agent called from, port 22).")
@click.option("--disk", "disk_options", multiple=True, metavar="NAME=KEY=VALUE[,KEY=VALUE]",
              help="Hints for a disk the kickstart names (--ondisk=NAME ...): serial, wwn, by_path, model, name, "
                   "min_size_gib, max_size_gib, rotational; e.g. sdb=serial=ABC,min_size_gib=10 (repeatable).")
@click.option("--encryption-passphrase-file", default=None, type=click.Path(dir_okay=False, allow_dash=True),
              metavar="FILE|-", help="The LUKS passphrase of the kickstart's --encrypted devices: this file's first "
                                     "line (-: stdin). Never on the command line.")
@click.option("--idempotency-key", default=None, metavar="KEY",
              help="Sent as Idempotency-Key: running the command again with the same key answers the deployment "
                   "the first run made instead of making another (safe retries from scripts).")
@click.option("--wait", is_flag=True, help="Then watch it like `deployments watch` and exit as that does.")
@interval_option
@timeout_option
def deploy(api: Api, image, mac, machine, hostname, kickstart, ssh_key_files, boot_mode, kernel_args, reboot_method,
           boot_path, ssh_address, disk_options, encryption_passphrase_file, idempotency_key, wait, interval, timeout):
    """Deploy IMAGE to a machine: create a deployment the machine's next network boot installs.

    \b
    Examples:
      metalstream deploy --image debian-minimal --mac 52:54:00:12:34:56 --hostname node1 --wait
      metalstream deploy --image debian-minimal --machine db1 --kickstart luks-raid.ks \
          --disk sda=serial=S1 --disk sdb=serial=S2 --encryption-passphrase-file ~/db1.passphrase
      id=$(metalstream deploy --image debian-minimal --machine rack1-07 -o value -c id)
      metalstream deployment watch "$id"
    """
    if mac is None and machine is None:
        raise BadInput("give --mac MAC or --machine NAME", location="--mac")
    body = {"image": image}
    optional = {"mac": mac, "machine": machine, "hostname": hostname, "boot_mode": boot_mode,
                "reboot_method": reboot_method, "boot_path": boot_path, "ssh_address": ssh_address}
    body.update({k: v for k, v in optional.items() if v is not None})
    if kickstart is not None:
        body["kickstart"] = kickstart.read_text()
    keys = [key for path in ssh_key_files for key in _lines(path)]
    if keys:
        body["ssh_keys"] = keys
    if kernel_args:
        body["kernel_args"] = list(kernel_args)
    if disk_options:
        body["disks"] = _disks(disk_options)
    if encryption_passphrase_file is not None:
        location = "--encryption-passphrase-file"
        body["encryption_passphrase"] = read_passphrase(read_secret_line(encryption_passphrase_file, location),
                                                        location)
    headers = {"Idempotency-Key": idempotency_key} if idempotency_key else None
    deployment = api.client.post("/api/v1/deployments", body, headers=headers)
    if not wait:
        api.one(deployment, DETAIL)
        return 0
    click.echo(f"metalstream: deployment {deployment['id']} created; watching it", err=True)
    return watch(api.client, [deployment["id"]], interval=interval, timeout=timeout)


@click.group("deployments")
def deployments():
    """Deployments on a running service (REST API): list, show, watch, cancel, logs.

    `metalstream deployment ...` is the same group. Connection: --url/--token, else $METALSTREAM_URL/
    $METALSTREAM_TOKEN, else the profile written by `metalstream login URL`.
    """


@deployments.command("list")
@remote_command()
@click.option("--state", default=None, help="Only deployments in this state (pending, ..., active, failed).")
@click.option("--mac", default=None, metavar="MAC", help="Only this machine's deployments.")
def list_deployments(api: Api, state, mac):
    """List deployments, newest first."""
    api.list(api.client.get("/api/v1/deployments", state=state, mac=mac)["deployments"], COLUMNS)


@deployments.command("show")
@remote_command()
@click.argument("dep_id", metavar="ID")
def show_deployment(api: Api, dep_id):
    """Show one deployment with its events."""
    api.one(api.client.get(f"/api/v1/deployments/{dep_id}"), DETAIL)


@deployments.command("watch")
@remote_command(output=False)
@click.argument("dep_ids", metavar="ID...", nargs=-1, required=True)
@interval_option
@timeout_option
def watch_deployments(api: Api, dep_ids, interval, timeout):
    """Follow deployments until each ends: progress bars (phase, bytes, rate, ETA) on a terminal, a line per
    change otherwise. Exit 0 only if every one ends `active`; else 1, printing each failure's message."""
    return watch(api.client, list(dep_ids), interval=interval, timeout=timeout)


@deployments.command("cancel")
@remote_command()
@click.argument("dep_id", metavar="ID")
def cancel_deployment(api: Api, dep_id):
    """Cancel a deployment that has not been installed yet (409 once it has)."""
    api.one(api.client.delete(f"/api/v1/deployments/{dep_id}"), DETAIL)


@deployments.command("logs")
@remote_command(output=False)
@click.argument("dep_id", metavar="ID")
def deployment_logs(api: Api, dep_id):
    """Print the agent's log (sent with its result; empty until then)."""
    click.echo(api.client.get_text(f"/api/v1/deployments/{dep_id}/log"), nl=False)


COMMANDS = [deploy, deployments]
