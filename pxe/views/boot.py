"""Boot configs: the iPXE chain script, per-MAC iPXE scripts, and GRUB network-boot configs.

The views parse the MAC, ask pxe.boot which boot it gets, and render that. Rendering failures are
500s (see app.py); nothing here falls back to local boot on an error.
"""
from __future__ import annotations

from flask import Blueprint, Response, request

from metalstream.contracts import rules

from ..boot import InstallerBoot, InstallerMissing, select_boot
from ..inspection import mint_token
from .common import base_url, service

bp = Blueprint("boot", __name__)


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
