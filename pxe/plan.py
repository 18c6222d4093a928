"""The plan a deployment's agent fetches (docs/contracts.md §2), assembled from what the service holds.

Pure: no Flask, no database. The document is written by the contract (metalstream.contracts.plan),
so the service can only hand out plans the agent's reader accepts.
"""
from __future__ import annotations

from dataclasses import replace

from metalstream.contracts.deployspec import DeploySpec, NetworkDevice
from metalstream.contracts.plan import DiskHints, ImageRef, Plan

from .mirrors import MirrorRule, mirror_urls

EVENTS_PATH = "/api/v1/agent/events"
RESULT_PATH = "/api/v1/agent/result"


def image_ref(image: dict, base_url: str, *, mirrors: tuple[MirrorRule, ...] = (),
              client_address: str | None = None) -> ImageRef:
    """The image with its sources: the mirrors whose rules match the agent's address first (a rack-local
    cache is the nearest copy and spares the service), the service's own URL last (it always has the image)."""
    own = f"{base_url}{image['url_path']}"
    urls = [*mirror_urls(mirrors, client_address, image["url_path"], image["sha256"]), own]
    return ImageRef(name=image["name"], url=urls[0], sha256=image["sha256"], size=image["size"],
                    manifest=image["manifest"], urls=tuple(urls))


def secure_boot_requested(request: dict, storage: dict | None) -> bool:
    """The deployment asked for Secure Boot: its request's `secure_boot` when given (true or false),
    else its deploy-time kickstart's add-on."""
    if "secure_boot" in request:
        return bool(request["secure_boot"])
    return bool(((storage or {}).get("secure_boot") or {}).get("required"))


def build_plan(*, deployment_id: str, request: dict, storage: dict | None, image: dict, base_url: str,
               deploy_public_key: str, mirrors: tuple[MirrorRule, ...] = (), client_address: str | None = None,
               reboot_method: str = "firmware", encryption_passphrase: str | None = None) -> dict:
    """The plan for one deployment. Top-level request values win over the deploy-time kickstart's;
    `client_address` (the agent's, as this request came from it) selects the image mirrors; `reboot_method`
    is the service's default for a request that names none. The plan carries `encryption_passphrase` (a secret):
    it goes to the agent as the answer and nowhere else (not logged, not in events)."""
    spec = DeploySpec.from_dict(storage) if storage else None
    if spec and "secure_boot" in request:  # the agent's reader also honours the kickstart's: the request decided
        spec = replace(spec, secure_boot=None)
    network = [NetworkDevice(**{**device.__dict__, "line": None}) for device in (spec.network if spec else [])]
    if request.get("network") is not None:  # the request's devices win over the kickstart's
        network = [NetworkDevice.from_json(device) for device in request["network"]]
    kernel_args = " ".join(request.get("kernel_args") or [])
    if not kernel_args and spec and spec.bootloader:
        kernel_args = spec.bootloader.append
    ssh_keys = [deploy_public_key, *request.get("ssh_keys", [])]
    ssh_keys += [key.key for key in (spec.ssh_keys if spec else []) if key.user == "root"]
    plan = Plan(
        deployment_id=deployment_id,
        image=image_ref(image, base_url, mirrors=mirrors, client_address=client_address),
        disk_hints=DiskHints(**request["disk_hints"]),
        boot_mode=request["boot_mode"],
        storage=spec,
        hostname=request.get("hostname") or (spec.hostname if spec else None),
        network=network or [NetworkDevice()],
        root_password_hash=request.get("root_password_hash"),
        ssh_keys=list(dict.fromkeys(ssh_keys)),
        kernel_args=kernel_args,
        report={"events_url": f"{base_url}{EVENTS_PATH}", "result_url": f"{base_url}{RESULT_PATH}"},
        secure_boot=secure_boot_requested(request, storage),
        reboot_method=request.get("reboot_method") or reboot_method,
        disks={name: DiskHints(**hints) for name, hints in (request.get("disks") or {}).items()},
        encryption_passphrase=encryption_passphrase,
    )
    return Plan.from_json(plan.to_json()).to_json()  # the agent's reader is the judge of what is sent
