"""The plan a deployment's agent fetches (docs/contracts.md §2), assembled from what the service holds.

Pure: no Flask, no database. The document is written by the contract (metalstream.contracts.plan),
so the service can only hand out plans the agent's reader accepts.
"""
from __future__ import annotations

from metalstream.contracts.deployspec import DeploySpec, NetworkDevice
from metalstream.contracts.plan import DiskHints, ImageRef, Plan

EVENTS_PATH = "/api/v1/agent/events"
RESULT_PATH = "/api/v1/agent/result"


def build_plan(*, deployment_id: str, request: dict, storage: dict | None, image: dict, base_url: str,
               deploy_public_key: str) -> dict:
    """The plan for one deployment. Top-level request values win over the deploy-time kickstart's."""
    spec = DeploySpec.from_dict(storage) if storage else None
    network = [NetworkDevice(**{**device.__dict__, "line": None}) for device in (spec.network if spec else [])]
    kernel_args = " ".join(request.get("kernel_args") or [])
    if not kernel_args and spec and spec.bootloader:
        kernel_args = spec.bootloader.append
    ssh_keys = [deploy_public_key, *request.get("ssh_keys", [])]
    ssh_keys += [key.key for key in (spec.ssh_keys if spec else []) if key.user == "root"]
    plan = Plan(
        deployment_id=deployment_id,
        image=ImageRef(name=image["name"], url=f"{base_url}{image['url_path']}", sha256=image["sha256"],
                       size=image["size"], manifest=image["manifest"]),
        disk_hints=DiskHints(**request["disk_hints"]),
        boot_mode=request["boot_mode"],
        storage=spec,
        hostname=request.get("hostname") or (spec.hostname if spec else None),
        network=network or [NetworkDevice()],
        root_password_hash=request.get("root_password_hash"),
        ssh_keys=list(dict.fromkeys(ssh_keys)),
        kernel_args=kernel_args,
        report={"events_url": f"{base_url}{EVENTS_PATH}", "result_url": f"{base_url}{RESULT_PATH}"},
    )
    return Plan.from_json(plan.to_json()).to_json()  # the agent's reader is the judge of what is sent
