"""Deploy plan assembly (docs/contracts.md §2). Pure: no Flask, no database."""
from __future__ import annotations

PLAN_FORMAT = "metalstream-plan/1"


def build_plan(*, deployment_id: str, request: dict, storage: dict | None, image: dict, base_url: str,
               deploy_public_key: str) -> dict:
    """The plan the agent fetches. Top-level request values win over the deploy-time kickstart's."""
    storage = storage or None
    hostname = request.get("hostname") or (storage or {}).get("hostname")
    network = [{key: value for key, value in dev.items() if key != "line"} for dev in (storage or {}).get("network", [])]
    if not network:
        network = [{"device": None, "bootproto": "dhcp"}]
    kernel_args = " ".join(request.get("kernel_args") or [])
    if not kernel_args and storage and storage.get("bootloader"):
        kernel_args = storage["bootloader"].get("append") or ""
    ssh_keys = [deploy_public_key, *request.get("ssh_keys", [])]
    ssh_keys += [key["key"] for key in (storage or {}).get("ssh_keys", []) if key.get("user") == "root"]
    return {
        "format": PLAN_FORMAT,
        "deployment_id": deployment_id,
        "image": {
            "name": image["name"],
            "url": f"{base_url}{image['url_path']}",
            "sha256": image["sha256"],
            "size": image["size"],
            "manifest": image["manifest"],
        },
        "disk_hints": request["disk_hints"],
        "boot_mode": request["boot_mode"],
        "storage": storage,
        "hostname": hostname,
        "network": network,
        "root_password_hash": request.get("root_password_hash"),
        "ssh_keys": list(dict.fromkeys(ssh_keys)),
        "kernel_args": kernel_args,
        "report": {"events_url": f"{base_url}/api/v1/agent/events",
                   "result_url": f"{base_url}/api/v1/agent/result"},
    }
