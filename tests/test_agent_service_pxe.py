"""`metalstream agent` against the REAL service (`metalstream serve`, gunicorn) on loopback.

The contract between them (docs/contracts.md §2–4) is exercised end to end: deployment created
through the REST API, the agent token taken from the machine's iPXE script, the plan fetched, the
image streamed from the service's image store, events and the result accepted by its validators,
and the deployment ending `installed` with the agent's root UUID and log.
"""
from __future__ import annotations

import json
import subprocess

import pytest
import requests

from conftest import METALSTREAM, REPO, require_root, require_tools
from fixtures_pxe import cli_admin_token

GiB = 1 << 30
MAC = "52:54:00:aa:bb:17"


@pytest.fixture
def real_service(tmp_path, pxe_installer, debian_image):
    """`metalstream serve` with the Debian test image registered; yields (url, admin headers)."""
    from lab.service_proc import ServiceProcess

    data_dir = tmp_path / "data"
    subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, debian_image], check=True,
                   capture_output=True)
    admin = cli_admin_token(data_dir)
    service = ServiceProcess(data_dir, installer=pxe_installer, workers=1, options=["--sweep-interval", "0"])
    service.public_url = service.url
    with service:
        yield service.url, admin


@pytest.mark.root
def test_agent_installs_through_the_real_service(real_service, sparse_disk, tmp_path):
    require_root()
    require_tools("sfdisk", "mkfs.ext4", "zstd", "tar", "mtools", "grub-mkimage")
    url, admin = real_service
    created = requests.post(f"{url}/api/v1/deployments", headers=admin, timeout=30,
                            json={"mac": MAC, "image": "debian", "hostname": "node-real", "boot_mode": "uefi"})
    assert created.status_code == 201, created.text
    deployment_id = created.json()["id"]
    script = requests.get(f"{url}/boot/{MAC}.ipxe", timeout=30).text
    cmdline = next(line for line in script.splitlines() if "metalstream.token=" in line)
    (tmp_path / "cmdline").write_text(cmdline.split(None, 1)[1] + "\n")  # what /proc/cmdline would hold

    disk = sparse_disk(4 * GiB)
    done = subprocess.run([*METALSTREAM, "agent", "--no-reboot", "--disk", str(disk),
                           "--cmdline", str(tmp_path / "cmdline")],
                          capture_output=True, text=True, cwd=REPO, timeout=900)
    assert done.stdout.splitlines()[0] == f"metalstream-agent: starting (server={url})"
    assert done.returncode == 0, done.stdout[-3000:] + done.stderr[-3000:]

    record = requests.get(f"{url}/api/v1/deployments/{deployment_id}", headers=admin, timeout=30).json()
    assert record["state"] == "installed", json.dumps(record)[:2000]
    assert record["root_uuid"]
    log = requests.get(f"{url}/api/v1/deployments/{deployment_id}/log", headers=admin, timeout=30)
    assert log.status_code == 200 and "metalstream.install" in log.text
    # The token is spent: a second agent run is turned away (never an install loop).
    again = subprocess.run([*METALSTREAM, "agent", "--no-reboot", "--disk", str(disk), "--plan-wait", "0",
                            "--cmdline", str(tmp_path / "cmdline")],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    assert again.returncode == 1 and "rejected the agent token" in again.stderr
