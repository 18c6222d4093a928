"""Boot configs: the iPXE chain script, per-MAC iPXE scripts, and GRUB network-boot configs.

A MAC with a pending (or booting) deployment gets the installer with a freshly minted agent token;
every other MAC — unknown, installed, finished — gets the local-disk answer. Rendering failures
are 500s (see app.py); nothing here falls back to local boot on an error.
"""
from __future__ import annotations

from flask import Blueprint, Response

from deployer.errors import BadInput

from .. import deployments
from ..render import InstallerBoot
from ..validate import normalize_mac
from .common import base_url, service

bp = Blueprint("boot", __name__)


def _text(body: str) -> Response:
    return Response(body, mimetype="text/plain", headers={"Cache-Control": "no-store"})


def _installer_boot(mac_text: str) -> tuple[str, InstallerBoot | None]:
    try:
        mac = normalize_mac(mac_text)
    except BadInput as exc:
        raise BadInput(exc.reason, location="mac") from None
    svc = service()
    deployments.reap_silent(svc.engine, svc.config.agent_timeout)
    row = deployments.open_for_mac(svc.engine, mac)
    if row is None or row["state"] not in ("pending", "booting"):
        return mac, None
    if svc.installer is None:
        raise InstallerMissing("a deployment is pending for this MAC but no installer is configured "
                               "(metalstream serve --installer)")
    url = base_url()
    token = deployments.mint_boot_token(svc.engine, row["id"])
    if token is None:  # cancelled or advanced between the read and the update
        return mac, None
    request = row["request"]
    return mac, InstallerBoot(base_url=url, token=token, deployment_id=row["id"], mac=mac, image=row["image_name"],
                              hostname=request.get("hostname"), kernel_args=tuple(request.get("kernel_args", [])))


class InstallerMissing(Exception):
    pass


@bp.errorhandler(InstallerMissing)
def installer_missing(exc):
    return Response(f"metalstream: {exc}\n", status=503, mimetype="text/plain")


@bp.get("/boot.ipxe")
def chain_ipxe():
    return _text(service().renderer.chain_ipxe(base_url()))


@bp.get("/boot/<mac>.ipxe")
def host_ipxe(mac: str):
    mac, boot = _installer_boot(mac)
    renderer = service().renderer
    return _text(renderer.installer_ipxe(boot) if boot else renderer.local_ipxe(mac))


@bp.get("/boot/grub.cfg")
def chain_grub():
    return _text(service().renderer.chain_grub(base_url()))


@bp.get("/boot/grub/<mac>.cfg")
def host_grub(mac: str):
    mac, boot = _installer_boot(mac)
    renderer = service().renderer
    return _text(renderer.installer_grub(boot) if boot else renderer.local_grub(mac))
