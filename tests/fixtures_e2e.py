"""Fixtures and helpers for the end-to-end tests (tests/test_e2e_deploy.py): a running service with the
installer and the Debian image registered, an admin API client, lab VMs that always stop, and disk inspection
that needs no loop device (sfdisk reads the GPT of the image file, mtools reads the ESP at `disk@@OFFSET`).
"""
from __future__ import annotations

import json
import os
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

from metalstream.contracts import manifests

DEPLOY_TIMEOUT = 15 * 60
ESP_TYPE = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"


@dataclass
class E2eLab:
    service: object  # lab.service_proc.ServiceProcess
    api: object  # lab.demo.ApiClient
    engine: object
    image_dir: Path
    image: dict
    lab_dir: Path
    installer_manifest: Path
    image_manifest: Path


@pytest.fixture(scope="session")
def e2e_lab(tmp_path_factory, debian_minimal_image, installer_build):
    """The real service (`metalstream serve` child process) serving the session's installer, with the session's
    debian-minimal image registered and an admin token; stopped at the end of the session, even on failure."""
    from lab.demo import ApiClient
    from lab.service_proc import ServiceProcess
    from lab.vm import OVMF_CODE
    from conftest import require_root, require_tools

    require_root()
    require_tools("qemu-system-x86_64", "sfdisk", "mdir")
    if not OVMF_CODE.exists():
        pytest.fail(f"{OVMF_CODE} is missing: run `bash .ci/setup`, which installs ovmf")
    _, installer_out, _ = installer_build
    installer_manifest = installer_out / "installer.json"
    base = tmp_path_factory.mktemp("e2e")
    data_dir, lab_dir = base / "data", base / "lab"
    config, engine, image, token = service_with_image(data_dir, debian_minimal_image, "e2e tests")
    try:
        with ServiceProcess(data_dir, installer=installer_manifest) as service:
            yield E2eLab(service=service, api=ApiClient(service.url, token), engine=engine,
                         image_dir=Path(config.image_dir), image=image, lab_dir=lab_dir,
                         installer_manifest=installer_manifest, image_manifest=debian_minimal_image)
    finally:
        # The VMs' disks hold gigabytes; their serial logs stay in the test's temp dir for post-mortems.
        for disk in lab_dir.glob("*/disk.img"):
            disk.unlink()
        shutil.rmtree(config.image_dir, ignore_errors=True)


def service_with_image(data_dir: Path, image_manifest: Path, purpose: str):
    """A service data directory holding `image_manifest`'s image and an admin API token for `purpose`:
    (config, engine, image, token)."""
    from pxe import imagestore, tokens
    from pxe.cli import _engine

    config, engine = _engine(data_dir, None, create=True)
    image = imagestore.register(engine, config.image_dir, image_manifest)
    return config, engine, image, tokens.create_api_token(engine, "admin", purpose)


def create_deployment(lab: E2eLab, spec, image_name: str, ssh_port: int) -> dict:
    return lab.api.post("/api/v1/deployments", {
        "mac": spec.mac, "image": image_name, "hostname": spec.name, "boot_mode": "both",
        "kernel_args": ["console=ttyS0,115200"], "ssh_address": f"127.0.0.1:{ssh_port}",
    })


def wait_terminal(lab: E2eLab, dep_id: str, vm, *, timeout: float = DEPLOY_TIMEOUT) -> dict:
    """Poll the deployment until active/failed/cancelled (the demo's watcher, printing to the test log)."""
    from lab.demo import PhaseClock, watch_deployment

    clock = PhaseClock()
    clock.mark("vm_power_on")
    return watch_deployment(lab.api, dep_id, clock, vm, timeout=timeout, echo=print)


def deployments_for(lab: E2eLab, mac: str) -> list[dict]:
    return lab.api.get(f"/api/v1/deployments?mac={mac}")["deployments"]


def gpt_partitions(disk: Path) -> list[dict]:
    """Partitions of a disk image's table (sfdisk reads the file directly); [] when it has no table."""
    result = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True)
    if result.returncode != 0 or not result.stdout.strip():
        return []
    table = json.loads(result.stdout)["partitiontable"]
    return table.get("partitions", [])


def esp_entries(disk: Path, path: str = "::/EFI/BOOT") -> str | None:
    """`mdir` of PATH on the disk's ESP (mtools at the partition's byte offset), or None when there is no ESP
    or no such directory."""
    sector = 512
    for part in gpt_partitions(disk):
        if part.get("type", "").upper() == ESP_TYPE:
            image = f"{disk}@@{part['start'] * sector}"
            result = subprocess.run(["mdir", "-b", "-i", image, path], capture_output=True, text=True,
                                    env={**os.environ, "MTOOLS_SKIP_CHECK": "1"})
            return result.stdout if result.returncode == 0 else None
    return None


def corrupted_copy(lab: E2eLab, name: str, work: Path) -> tuple[dict, Path, str]:
    """Register a copy of the session image under NAME, then flip one byte in the middle of the store's file.
    The copy is a new file (not a hard link of the build output), so the original stays intact: returns
    (registered image, stored path, the original tarball's sha256 for the caller to re-check)."""
    from pxe import imagestore

    manifest = manifests.read_image_manifest(manifests.load_document(lab.image_manifest), str(lab.image_manifest))
    original = lab.image_manifest.parent / manifest["tarball"]
    work.mkdir(parents=True, exist_ok=True)
    copy = work / f"{name}.tar.zst"
    shutil.copyfile(original, copy)
    manifests.write_document(work / f"{name}.json", {**manifest, "name": name, "tarball": copy.name})
    image = imagestore.register(lab.engine, lab.image_dir, work / f"{name}.json")
    stored = lab.image_dir / f"{name}.tar.zst"
    assert os.stat(stored).st_ino != os.stat(original).st_ino, "the store must not share the build output's inode"
    with open(stored, "r+b") as handle:
        middle = os.path.getsize(stored) // 2
        handle.seek(middle)
        byte = handle.read(1)
        handle.seek(middle)
        handle.write(bytes([byte[0] ^ 0xFF]))
    return image, stored, manifest["sha256"]


def fetch_boot_script(lab: E2eLab, mac: str) -> str:
    response = requests.get(f"{lab.service.url}/boot/{mac}.ipxe", timeout=30)
    response.raise_for_status()
    return response.text


def lab_vm_spec(lab: E2eLab, name: str, firmware: str):
    from lab.service_proc import free_port
    from lab.vm import VmSpec

    spec = VmSpec(name, firmware=firmware, ssh_port=free_port(), lab_dir=lab.lab_dir, memory_mib=2048,
                  disk_size_gib=8)
    spec.boot_url = f"{lab.service.guest_url}/boot.ipxe"
    return spec


def qemu_processes_for(spec) -> list[str]:
    from lab.vm import qemu_processes_using

    return qemu_processes_using(spec.disk)


def ssh_run(lab: E2eLab, port: int, command: str) -> str:
    """Run `command` as root on a deployed lab VM (SSH on loopback `port`, the service's deploy key); its stdout.
    Fails the test when the command exits non-zero."""
    import paramiko

    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    try:
        client.connect("127.0.0.1", port=port, username="root", key_filename=str(lab.service.data_dir / "deploy_key"),
                       timeout=30, banner_timeout=30, auth_timeout=30, look_for_keys=False, allow_agent=False)
        _, stdout, stderr = client.exec_command(command, timeout=60)
        out = stdout.read().decode()
        assert stdout.channel.recv_exit_status() == 0, f"{command!r}: {stderr.read().decode()}"
        return out
    finally:
        client.close()
