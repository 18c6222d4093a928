"""Which network boot path a UEFI client takes, and forcing one (issue 18). Pure: no database, no sockets.

The network's DHCP names the first-stage loader a UEFI client asks the TFTP server for, site-wide
(`metalstream dnsmasq-config --uefi-loader ipxe|shim`): snponly.efi (or ipxe.efi) starts iPXE over HTTP,
shimx64.efi the signed shim + grub path over TFTP. A deployment's `boot_path`, else the service's default
(`metalstream serve --boot-path`), may force the other path: the TFTP server then answers the asked name
with the forced path's loader. "auto" forces nothing. BIOS clients (undionly.kpxe) are never redirected.
"""
from __future__ import annotations

from dataclasses import dataclass

BOOT_PATH_CHOICES = ("auto", "ipxe", "shim-grub")
# first-stage loader a UEFI firmware asks for → the boot path it starts
UEFI_FIRST_STAGE = {"snponly.efi": "ipxe", "ipxe.efi": "ipxe", "shimx64.efi": "shim-grub"}
# boot path → the loaders that start it, the preferred first
LOADERS_FOR = {"ipxe": ("snponly.efi", "ipxe.efi"), "shim-grub": ("shimx64.efi",)}
# who chose the path (first_stage.chosen_by) → how events and logs say it
CHOSEN_BY = {
    "asked": "the loader DHCP named",
    "deployment": "the deployment's boot_path",
    "service": "metalstream serve --boot-path",
}


@dataclass(frozen=True)
class Choice:
    """The boot path a UEFI client asking for `asked` is sent on, and who chose it (a CHOSEN_BY key)."""

    asked: str
    path: str
    chosen_by: str
    note: str | None = None  # why a wanted path was not forced

    @property
    def redirected(self) -> bool:
        return self.path != UEFI_FIRST_STAGE[self.asked]


def choose(asked: str, deployment_path: str | None, service_default: str, secure_boot: bool = False) -> Choice:
    """The path for a UEFI client asking for first-stage loader `asked` (a UEFI_FIRST_STAGE name):
    its deployment's `boot_path` when that forces one, else the service default. `deployment_path` is None
    for a client no open deployment was found for. The service default never puts a deployment that asked
    for Secure Boot on the unsigned iPXE path (the deployment's own `boot_path` cannot: that is a 400)."""
    natural = UEFI_FIRST_STAGE[asked]
    if deployment_path not in (None, "auto"):
        return Choice(asked, deployment_path, "deployment")
    if service_default == "auto" or service_default == natural:
        return Choice(asked, natural, "asked")
    if service_default == "ipxe" and secure_boot:
        return Choice(asked, natural, "asked", note="the deployment asks for Secure Boot: the service's "
                                                    "--boot-path ipxe is not applied to it")
    return Choice(asked, service_default, "service")


def refusal(boot_path: str, boot_mode: str, secure_boot: bool) -> str | None:
    """Why a deployment cannot force `boot_path`, or None."""
    if boot_path == "shim-grub" and boot_mode == "bios":
        return "shim-grub is a UEFI path and boot_mode is bios (BIOS clients always get iPXE)"
    if boot_path == "ipxe" and secure_boot:
        return ("ipxe cannot boot with Secure Boot on (iPXE is unsigned) and the deployment asks for Secure Boot: "
                "use shim-grub or auto")
    return None


def describe(choice: Choice, served: str) -> str:
    """How an event and the log say which loader a client got for its name, and why."""
    text = f"asked for {choice.asked}, sent {served}: boot path {choice.path} ({CHOSEN_BY[choice.chosen_by]})"
    return f"{text}; {choice.note}" if choice.note else text
