"""Checks of a deployment request against its image and kickstart (after the request model, pxe.schemas.deployments,
has checked its fields): Secure Boot, a forced boot path the deployment can take, the LUKS passphrase an encrypted
layout needs and the disk names its per-disk hints use."""
from __future__ import annotations

from metalstream.contracts import secureboot
from metalstream.errors import BadInput

from . import bootpath
from .plan import secure_boot_requested


def check_secure_boot(request: dict, storage: dict | None, image: dict) -> None:
    """A deployment that asks for Secure Boot (its `secure_boot`, else its kickstart's deploy add-on) needs a
    UEFI boot mode and an image with the distribution's signed shim, grub and kernel; else BadInput
    located at the field that asked (`secure_boot`, or `kickstart:LINE`)."""
    if not secure_boot_requested(request, storage):
        return
    from_kickstart = (storage or {}).get("secure_boot") or {}
    if "secure_boot" in request:
        location = "secure_boot"
    else:
        location = f"kickstart:{from_kickstart['line']}" if from_kickstart.get("line") else "kickstart"
    secureboot.check_boot_mode(request["boot_mode"], location)
    refusal = secureboot.image_refusal(image["name"], image["manifest"])
    if refusal:
        raise BadInput(refusal, location=location)


def check_boot_path(request: dict, storage: dict | None) -> None:
    """A forced boot path the deployment cannot take (shim-grub on BIOS, iPXE under Secure Boot): BadInput at
    `boot_path`."""
    refusal = bootpath.refusal(request.get("boot_path", "auto"), request["boot_mode"],
                               secure_boot_requested(request, storage))
    if refusal:
        raise BadInput(refusal, location="boot_path")


def _kickstart_lines(lines: list[int | None]) -> str:
    known = sorted({line for line in lines if line})
    return f" (kickstart line{'s' if len(known) > 1 else ''} {', '.join(map(str, known))})" if known else ""


def encrypted_lines(storage: dict | None) -> list[int | None]:
    """The kickstart lines of the devices its storage section encrypts (`--encrypted`); empty: none."""
    storage = storage or {}
    devices = [*storage.get("partitions", []), *storage.get("logvols", []), *storage.get("raids", []),
               *([storage["autopart"]] if storage.get("autopart") else [])]
    return [device.get("line") for device in devices if device.get("encrypted")]


def check_encryption(storage: dict | None, passphrase: str | None) -> None:
    """An encrypted layout needs the passphrase; a layout that encrypts nothing is given none (a passphrase there is
    a mistake: the disks would be plaintext). BadInput at `encryption_passphrase`; its value is never quoted.
    A layout with a deferred `%include` is only known on the machine: a passphrase is then accepted (the agent's
    planner refuses an encrypted layout without one, before any write)."""
    lines = encrypted_lines(storage)
    if lines and passphrase is None:
        raise BadInput(f"is required: the kickstart encrypts devices with --encrypted{_kickstart_lines(lines)}, and "
                       "their LUKS passphrase comes from here, never from the kickstart",
                       location="encryption_passphrase")
    if passphrase is not None and not lines and not deferred_layout(storage):
        raise BadInput("the deployment's layout encrypts nothing (no --encrypted in its kickstart): leave the "
                       "passphrase out, or encrypt a device", location="encryption_passphrase")


def deferred_layout(storage: dict | None) -> bool:
    """Part of the layout is in a `%include` the machine's %pre writes: the service cannot see all of it."""
    return bool((storage or {}).get("deferred_includes"))


def named_disks(storage: dict | None) -> set[str]:
    """The disk names a kickstart's storage section uses: `part --ondisk`, `clearpart --drives`, `ignoredisk
    --only-use/--drives`, `bootloader --boot-drive`."""
    storage = storage or {}
    ignoredisk, clearpart = storage.get("ignoredisk") or {}, storage.get("clearpart") or {}
    names = {part.get("ondisk") for part in storage.get("partitions", [])}
    names |= {*ignoredisk.get("only_use", []), *ignoredisk.get("ignore", []), *clearpart.get("drives", [])}
    names.add((storage.get("bootloader") or {}).get("boot_drive"))
    return {name for name in names if name}


def check_disk_names(request: dict, storage: dict | None) -> None:
    """Per-disk hints (`disks`) only for disk names the kickstart uses (a layout without disk names goes to the disk
    `disk_hints` selects). BadInput at `disks.NAME`."""
    hinted = request.get("disks") or {}
    if not hinted or deferred_layout(storage):  # the deferred part may name the disks: the agent's choice checks
        return
    named = named_disks(storage)
    for name in hinted:
        if name not in named:
            used = f"it names {', '.join(sorted(named))}" if named else "it names no disk: use disk_hints"
            raise BadInput(f"the kickstart's storage section does not use this disk name ({used})",
                           location=f"disks.{name}")
