"""`metalstream install`: the same install the agent does, onto a block device or a disk image file."""
from __future__ import annotations

import os
import re
import sys

import click

from metalstream.errors import BadInput
from metalstream.secret_input import read_secret_line

from .remote import run_ssh_install, ssh_options

_SIZE = re.compile(r"(\d+(?:\.\d+)?)\s*([KMGT]?)(i?B)?", re.IGNORECASE)


def parse_size(text: str) -> int:
    """'4G', '512M', '4GiB', '1073741824' -> bytes (binary units)."""
    match = _SIZE.fullmatch(text.strip())
    if not match:
        raise BadInput(f"{text!r} is not a size (e.g. 4G, 512M)", location="--size")
    number, unit = float(match.group(1)), match.group(2).upper()
    size = int(number * (1 << (10 * "_KMGT".index(unit))) if unit else number)
    if size < (1 << 20):
        raise BadInput(f"{text!r} is smaller than 1 MiB", location="--size")
    return size


def _print_dry_run(result, out) -> None:
    from .partition import describe

    if result.stacked:
        from .partition import render_sfdisk
        from .storage.describe import describe as describe_storage

        out.write("storage plan:\n" + describe_storage(result.storage) + "\n\n")
        for disk in result.storage.disks:
            out.write(f"partition plan of {disk.key or disk.path} ({disk.path}):\n" + describe(disk.layout) + "\n\n")
            out.write("sfdisk script:\n" + render_sfdisk(disk.layout) + "\n")
    else:
        t = result.target
        out.write(f"disk: {t.path} ({t.size} bytes, {t.size / (1 << 30):.1f} GiB"
                  f"{', disk image file' if t.is_file else ', block device'})\n\n")
        out.write("partition plan:\n" + describe(result.layout) + "\n\n")
        out.write("sfdisk script:\n" + result.sfdisk_script + "\n")
    if result.uefi_loader:
        out.write(f"UEFI loader chain: {result.uefi_loader}\n\n")
    out.write("dry run: nothing was written\n")


_NAMED = re.compile(r"([A-Za-z0-9_.:-]+)=(.+)")


def _targets(given: tuple[str, ...]) -> str | dict[str, str]:
    """One --to PATH, or several --to NAME=PATH (the storage section's disk names)."""
    if len(given) == 1 and not (_NAMED.fullmatch(given[0]) and not os.path.exists(given[0])):
        return given[0]
    named = {}
    for value in given:
        match = _NAMED.fullmatch(value)
        if match is None:
            raise BadInput(f"{value!r}: with several disks give each as NAME=PATH", location="--to")
        if match.group(1) in named:
            raise BadInput(f"disk {match.group(1)} is given twice", location="--to")
        named[match.group(1)] = match.group(2)
    return named


@click.command("install")
@click.argument("image", required=False, metavar="IMAGE.json|URL")
@click.option("--to", "targets", required=True, multiple=True, metavar="DEVICE|FILE|NAME=DEVICE|FILE",
              help="Block device (/dev/sdX) or disk image file to install onto; for a layout on several disks, "
                   "each as NAME=PATH with the name the plan's storage uses (repeatable).")
@click.option("--plan", "plan_file", type=click.Path(dir_okay=False), metavar="PLAN.json",
              help="A deploy plan (docs/contracts.md); then IMAGE may be omitted.")
@click.option("--boot", type=click.Choice(["bios", "uefi", "both"]), default=None,
              help="Boot mode: BIOS boot partition, ESP, or both (default: the plan's, else both).")
@click.option("--size", metavar="SIZE", help="Create the disk image file sparse with this size (e.g. 4G) "
                                            "if it does not exist, or grow it to this size.")
@click.option("--wipe", is_flag=True, help="Allow destroying the partitions already on the target.")
@click.option("--hostname", help="Host name of the installed system.")
@click.option("--ssh-key", "ssh_keys", multiple=True, metavar="KEY",
              help="Public key line for root's authorized_keys (repeatable).")
@click.option("--root-password-hash", metavar="HASH", help="crypt(3) hash for root, e.g. from `openssl passwd -6`.")
@click.option("--kernel-args", default=None, metavar="ARGS",
              help="Extra kernel command line (e.g. 'console=ttyS0,115200').")
@click.option("--encryption-passphrase-file", default=None, metavar="FILE|-",
              help="The LUKS passphrase of the layout's --encrypted devices: this file's first line (-: stdin); "
                   "replaces the plan's. Never on the command line.")
@click.option("--dry-run", is_flag=True, help="Print the chosen disk, the partition plan and the sfdisk script; "
                                             "write nothing.")
@click.option("--json", "as_json", is_flag=True,
              help="Print one JSON document on stdout (progress goes to stderr): the target, the image (name, sha256, "
                   "size), the partition plan and sfdisk script, and the target's current partition table and "
                   "filesystems — `to_be_destroyed` with --dry-run, `destroyed` after an install.")
@click.option("--ca", metavar="FILE",
              help="Verify https manifest and image URLs with this CA certificate only, and refuse plain http "
                   "(default: https is checked against the system trust store). A server that fails the check is "
                   "refused before the target is touched.")
@ssh_options
def install_command(image: str | None, targets: tuple[str, ...], plan_file: str | None, boot: str | None,
                    size: str | None, wipe: bool, hostname: str | None, ssh_keys: tuple[str, ...],
                    root_password_hash: str | None, kernel_args: str | None, encryption_passphrase_file: str | None,
                    dry_run: bool, as_json: bool, ca: str | None, ssh_target: str | None,
                    ssh_identity: str | None, ssh_known_hosts: str | None) -> int:
    """Install an image onto a block device or a disk image file on this machine.

    IMAGE is an image manifest (NAME.json beside NAME.tar.zst), as a path or an http(s) URL. The
    install partitions the target (GPT: BIOS boot partition and/or ESP, root growing to fill),
    streams and verifies the image, configures it and installs grub. A target that already holds
    partitions is overwritten only with --wipe (or clearpart/zerombr in the plan).

    With --ssh USER@HOST the same install runs on that machine (e.g. a rescue system) instead.

    \b
    Examples:
      metalstream install out/debian.json --to disk.img --size 4G --boot uefi
      metalstream install http://server:8080/images/debian.json --to /dev/sdb --wipe --dry-run
      metalstream install out/debian.json --to /dev/sdb --wipe --dry-run --json   # what would be destroyed
      metalstream install https://server/images/debian.json --ca site-ca.pem --to /dev/sdb --wipe
      metalstream install out/debian.json --to /dev/sda --wipe --ssh root@rescue-host
    """
    from .blockdev import open_target
    from .deferred import front_end_resolver
    from .install import run_install
    from .plan import load_plan_file, local_plan, with_options
    from .report import ConsoleReporter
    from .tls import ca_option_path, check_source_trusted, require_https, trust

    if plan_file is None and image is None:
        raise BadInput("give an image manifest (IMAGE.json or URL) or --plan PLAN.json", location="IMAGE")
    pinned = ca_option_path(ca)
    passphrase = None if encryption_passphrase_file is None else read_secret_line(
        encryption_passphrase_file, "--encryption-passphrase-file")
    target = _targets(targets)
    if ssh_target:
        if isinstance(target, dict):
            raise BadInput("--ssh installs onto one disk: give one --to", location="--to")
        forwarded = [*(["--boot", boot] if boot else []), *(["--size", size] if size else []),
                     *(["--wipe"] if wipe else []), *(["--hostname", hostname] if hostname else []),
                     *[a for k in ssh_keys for a in ("--ssh-key", k)],
                     *(["--root-password-hash", root_password_hash] if root_password_hash else []),
                     *(["--kernel-args", kernel_args] if kernel_args is not None else []),
                     *(["--dry-run"] if dry_run else []), *(["--json"] if as_json else [])]
        return run_ssh_install(ssh_target, ssh_identity, ssh_known_hosts, image, target, plan_file, forwarded,
                               ca=pinned, passphrase=passphrase)
    if plan_file and image:
        raise BadInput("give either IMAGE or --plan (the plan names its image)", location="IMAGE")
    verify = trust(pinned)
    if image:
        require_https(image, "IMAGE", pinned)
    plan = with_options(load_plan_file(plan_file) if plan_file else local_plan(image, verify=verify), boot_mode=boot,
                        hostname=hostname, ssh_keys=ssh_keys, root_password_hash=root_password_hash,
                        kernel_args=kernel_args, wipe=wipe, encryption_passphrase=passphrase)
    for n, url in enumerate(plan.image.urls):
        require_https(url, f"plan.image.urls[{n}]", pinned)
    check_source_trusted(plan.image.url, verify)  # before the target is created or opened
    resolver = front_end_resolver() if plan.storage and plan.storage.deferred_includes else None
    create_size = parse_size(size) if size else None
    if isinstance(target, dict):
        if as_json:
            raise BadInput("--json reports one disk: give one --to", location="--json")
        given = {name: open_target(path, create_size=create_size) for name, path in target.items()}
        result = run_install(plan, given, ConsoleReporter(sys.stdout), dry_run=dry_run, tls_verify=verify,
                             resolve_includes=resolver)
        if dry_run:
            _print_dry_run(result, sys.stdout)
        return 0
    resolved = open_target(target, create_size=create_size)
    if as_json:
        import json

        from .existing import read_existing
        from .install_json import install_report
        existing = read_existing(resolved)  # before the install wipes it
        result = run_install(plan, resolved, ConsoleReporter(sys.stderr), dry_run=dry_run, tls_verify=verify,
                             resolve_includes=resolver)
        click.echo(json.dumps(install_report(plan, result, existing), indent=2))
        return 0
    result = run_install(plan, resolved, ConsoleReporter(sys.stdout), dry_run=dry_run, tls_verify=verify,
                         resolve_includes=resolver)
    if dry_run:
        _print_dry_run(result, sys.stdout)
    return 0


COMMANDS = [install_command]
