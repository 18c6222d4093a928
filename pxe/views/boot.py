"""Boot configs: the iPXE chain script, per-MAC iPXE scripts, and GRUB network-boot configs.

The views parse the MAC, ask pxe.boot which boot it gets, and render that. Rendering failures are
500s (see app.py); nothing here falls back to local boot on an error.
"""
from __future__ import annotations

import logging

from flask import Blueprint, Response, abort, request

from metalstream.contracts import rules

from .. import httpboot
from ..boot import InstallerBoot, InstallerMissing, select_boot
from ..inspection import mint_token
from ..tftpboot import read_neighbours
from .common import base_url, service

bp = Blueprint("boot", __name__)
log = logging.getLogger("metalstream.pxe.boot")
client_neighbours = read_neighbours  # IPv4 address → MAC: how an HTTP boot client's MAC is known


def _text(body: str, status: int = 200) -> Response:
    return Response(body, status=status, mimetype="text/plain", headers={"Cache-Control": "no-store"})


def _select(mac_text: str, boot_path: str):
    svc = service()
    minter = (lambda mac: mint_token(svc.secrets, mac)) if svc.config.discovery else None
    return select_boot(svc.engine, rules.mac(mac_text, "mac"), base_url=base_url(),
                       installer_available=svc.installer is not None, boot_path=boot_path, inspection_token=minter)


@bp.errorhandler(InstallerMissing)
def installer_missing(exc: InstallerMissing):
    return _text(f"metalstream: {exc}\n", exc.http_status)  # shown on the machine's console by iPXE/GRUB


@bp.get("/boot.ipxe")
def chain_ipxe():
    return _text(service().renderer.chain_ipxe(base_url()))


def _head_answer(mac_text: str) -> Response | None:
    """HEAD asks whether the script exists; answering must not mint a token or move a deployment."""
    if request.method != "HEAD":
        return None
    rules.mac(mac_text, "mac")
    return _text("")


@bp.get("/boot/<mac>.ipxe")
def host_ipxe(mac: str):
    if (head := _head_answer(mac)) is not None:
        return head
    boot = _select(mac, "ipxe")
    renderer = service().renderer
    return _text(renderer.installer_ipxe(boot) if isinstance(boot, InstallerBoot) else renderer.local_ipxe(boot.mac))


@bp.get("/boot/grub.cfg")
def chain_grub():
    return _text(service().renderer.chain_grub(base_url()))


@bp.get("/boot/grub/<mac>.cfg")
def host_grub(mac: str):
    if (head := _head_answer(mac)) is not None:
        return head
    boot = _select(mac, "grub-http")
    renderer = service().renderer
    return _text(renderer.installer_grub(boot) if isinstance(boot, InstallerBoot)
                 else renderer.local_grub(boot.mac, boot.root_uuid))


@bp.get(f"/boot/{httpboot.IMAGE_NAME}")
def secure_boot_image():
    """UEFI HTTP boot under Secure Boot: the RAM disk image (pxe.httpboot) with this machine's GRUB config, the
    machine known by its MAC in the neighbour table (the service must be on its network)."""
    svc = service()
    if not httpboot.carries_signed_loaders(svc.installer):
        abort(404, description="no UEFI HTTP boot image: the installer carries no signed shim and grub "
                               "(metalstream serve --installer)")
    image = httpboot.boot_image(svc.installer, svc.config.data_dir / "httpboot")
    headers = {"Content-Length": str(image.size), "Cache-Control": "no-store"}
    if request.method == "HEAD":  # the firmware asks for the size first: no token for that
        return Response(status=200, mimetype=httpboot.MEDIA_TYPE, headers=headers)
    config = _http_boot_config(request.remote_addr)
    return Response(image.chunks(config), mimetype=httpboot.MEDIA_TYPE, headers=headers, direct_passthrough=True)


def _http_boot_config(client: str | None) -> str:
    """As over TFTP: a pending deployment's installer, else the local disk (no inspection of unknown MACs)."""
    svc = service()
    renderer = svc.renderer
    mac = client_neighbours().get(client or "")
    if mac is None:
        log.warning("UEFI HTTP boot client %s: no MAC for it in the neighbour table (is it behind a router?): "
                    "it is sent to its local disk", client)
        return renderer.local_grub(None)
    boot = select_boot(svc.engine, mac, base_url=base_url(), installer_available=True, boot_path="shim-grub-http")
    if isinstance(boot, InstallerBoot):
        return renderer.installer_tftp_grub(boot, source="over UEFI HTTP boot, from its RAM disk")
    return renderer.local_grub(boot.mac, boot.root_uuid)
