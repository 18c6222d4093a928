"""Checks of a deployment request against its image and kickstart (after the request model, pxe.schemas.deployments,
has checked its fields): Secure Boot and a forced boot path the deployment can take."""
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
