"""Which boot a machine gets when its firmware asks: the installer, or its own disk.

Selection is a function of the deployment store (matchbox's way): the boot views only render
what `select_boot` returns. A MAC with a pending or booting deployment gets the installer with a
freshly minted agent token (the deployment moves to `booting`); every other MAC — unknown,
installing, installed, finished — gets its local disk. Silent deployments are failed by the
background sweeper (pxe.supervisor), never by a boot request.

Each boot path a machine can take records itself on the deployment as its config is served
(`BOOT_PATHS`): iPXE's per-MAC script over HTTP, GRUB's per-MAC config over HTTP, or GRUB's
per-MAC config over TFTP after the signed shim and grub (the Secure Boot path), or the Secure Boot path's RAM disk
image over UEFI HTTP boot (pxe.httpboot).
"""
from __future__ import annotations

from dataclasses import dataclass
from typing import Callable

from sqlalchemy.engine import Engine

from . import deployments, firststage_store, inspection, states
from .errors import ServiceError
from .render import InstallerBoot


@dataclass(frozen=True)
class LocalBoot:
    """Boot the machine's own disk: the root filesystem of its last install when known (`root_uuid`)."""

    mac: str
    root_uuid: str | None = None


# boot path (deployments.boot_path) → how it is described in the deployment's events
BOOT_PATHS = {
    "ipxe": "iPXE over HTTP",
    "grub-http": "GRUB over HTTP",
    "shim-grub": "signed shim + grub over TFTP",
    "shim-grub-http": "signed shim + grub over UEFI HTTP boot (RAM disk image)",
}


class InstallerMissing(ServiceError):
    """A deployment waits for this machine but the service has no installer to offer it."""

    http_status = 503


def select_boot(engine: Engine, mac: str, *, base_url: str, installer_available: bool,
                boot_path: str, inspection_token: Callable[[str], str] | None = None) -> InstallerBoot | LocalBoot:
    """`inspection_token` (discovery on): mints an inspection token for a MAC; an unknown MAC with no deployment
    then gets the installer in inspection mode (pxe.inspection)."""
    row = deployments.open_for_mac(engine, mac)
    if (row is None and inspection_token is not None and installer_available
            and inspection.wants_inspection(engine, mac)):
        return inspection.installer_boot(base_url, mac, inspection_token(mac))
    if row is None or row["state"] not in states.INSTALLER_STATES:
        return _local(engine, mac)
    if not installer_available:
        firststage_store.record_config_without_installer(engine, row["id"], BOOT_PATHS[boot_path])
        raise InstallerMissing("a deployment is pending for this MAC but no installer is configured "
                               "(metalstream serve --installer)")
    token = deployments.mint_boot_token(engine, row["id"], boot_path=boot_path, path_label=BOOT_PATHS[boot_path])
    if token is None:  # cancelled or advanced between the read and the update
        return _local(engine, mac)
    request = row["request"]
    return InstallerBoot(base_url=base_url, token=token, deployment_id=row["id"], mac=mac, image=row["image_name"],
                         hostname=request.get("hostname"), kernel_args=tuple(request.get("kernel_args", [])))


def _local(engine: Engine, mac: str) -> LocalBoot:
    return LocalBoot(mac, deployments.installed_root_uuid(engine, mac))
