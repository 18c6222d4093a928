"""pytest fixtures for the pxe tests (imported by conftest.py)."""
from __future__ import annotations

import hashlib
import json
import os
import signal
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest
import requests

PXE_MAC = "52:54:00:12:34:56"


def pxe_sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as f:
        while chunk := f.read(4 << 20):
            digest.update(chunk)
    return digest.hexdigest()


def pxe_write_image(directory: Path, name: str, tarball: Path | None = None) -> Path:
    """A real tar.zst (GNU tar + zstd) of a tiny tree plus its manifest; returns the manifest path."""
    directory.mkdir(parents=True, exist_ok=True)
    if tarball is None:
        tree = directory / f"{name}-tree"
        (tree / "etc").mkdir(parents=True, exist_ok=True)
        (tree / "etc" / "hostname").write_text("localhost\n")
        (tree / "etc" / "os-release").write_text(f"ID=test\nNAME={name}\n")
        tarball = directory / f"{name}.tar.zst"
        subprocess.run(["tar", "--zstd", "-cf", tarball, "-C", tree, "."], check=True)
    manifest = {
        "format": "metalstream-image/1", "name": name, "tarball": tarball.name,
        "sha256": pxe_sha256(tarball), "size": tarball.stat().st_size, "uncompressed_size": 0, "file_count": 3,
        "arch": "x86_64", "distribution": {"family": "debian", "id": "debian", "version": "12", "codename": "bookworm"},
        "kernels": [], "bootloader": {"bios_grub": True, "uefi_grub": True, "shim": False}, "packages": [],
        "kickstart_sha256": "0" * 64, "created": 1700000000, "builder": {"name": "metalstream", "version": "test"},
    }
    path = directory / f"{name}.json"
    path.write_text(json.dumps(manifest))
    return path


@pytest.fixture(scope="session")
def pxe_installer(tmp_path_factory) -> Path:
    """A fake installer environment: small kernel/initramfs files and a metalstream-installer/1 manifest."""
    directory = tmp_path_factory.mktemp("installer")
    entries = {}
    for part, filename, content in (("kernel", "vmlinuz", b"fake kernel\n" * 100),
                                    ("initramfs", "initrd.img", os.urandom(300_000))):
        (directory / filename).write_bytes(content)
        entries[part] = {"file": filename, "sha256": hashlib.sha256(content).hexdigest(), "size": len(content)}
    manifest = directory / "installer.json"
    manifest.write_text(json.dumps({"format": "metalstream-installer/1", "name": "installer", **entries,
                                    "kernel_version": "6.1.0-test", "created": 1700000000,
                                    "builder": {"name": "metalstream", "version": "test"}}))
    return manifest


@pytest.fixture(scope="session")
def pxe_image_manifest(tmp_path_factory) -> Path:
    return pxe_write_image(tmp_path_factory.mktemp("image"), "tiny")


@dataclass
class PxeEnv:
    app: object
    client: object
    service: object
    admin: dict
    read: dict
    image_manifest: Path

    def post_deployment(self, body: dict, **headers):
        return self.client.post("/api/v1/deployments", json=body, headers={**self.admin, **headers})

    def pending(self, mac: str = PXE_MAC, **extra) -> dict:
        response = self.post_deployment({"mac": mac, "image": "tiny", **extra})
        assert response.status_code == 201, response.get_json()
        return response.get_json()

    def boot_token(self, mac: str = PXE_MAC) -> str:
        script = self.client.get(f"/boot/{mac}.ipxe").get_data(as_text=True)
        return script.split("metalstream.token=")[1].split()[0]


@pytest.fixture
def pxe_env(tmp_path, pxe_installer, pxe_image_manifest) -> PxeEnv:
    """A fresh service (own data dir and SQLite DB) behind Flask's test client, with image `tiny` registered."""
    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig

    config = ServiceConfig(data_dir=tmp_path / "data", installer=pxe_installer, supervisor_interval=0,
                           public_url="http://10.0.2.2:8080")
    app = create_app(config)
    service = app.extensions["metalstream"]
    imagestore.register(service.engine, config.image_dir, pxe_image_manifest)
    admin = {"Authorization": "Bearer " + tokens.create_api_token(service.engine, "admin")}
    read = {"Authorization": "Bearer " + tokens.create_api_token(service.engine, "read")}
    yield PxeEnv(app, app.test_client(), service, admin, read, pxe_image_manifest)
    service.engine.dispose()


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@dataclass
class PxeServer:
    url: str
    process: subprocess.Popen
    data_dir: Path
    admin: dict
    big_image: str
    big_size: int
    small_image: str
    tftp_port: int
    log_path: Path

    def pids(self) -> list[int]:
        """The gunicorn master and its workers."""
        pids = [self.process.pid]
        for task in Path(f"/proc/{self.process.pid}/task").iterdir():
            children = (task / "children").read_text().split()
            pids += [int(p) for p in children]
        return pids

    def rss_kib(self) -> int:
        total = 0
        for pid in self.pids():
            for line in Path(f"/proc/{pid}/status").read_text().splitlines():
                if line.startswith("VmRSS:"):
                    total += int(line.split()[1])
        return total


@pytest.fixture(scope="session")
def pxe_server(tmp_path_factory, pxe_installer) -> PxeServer:
    """`metalstream serve` on a loopback port (2 gthread workers, TFTP too), with a 1 GiB sparse image and a small one."""
    root = tmp_path_factory.mktemp("server")
    data_dir = root / "data"
    cli = [sys.executable, "-m", "deployer"]
    big = root / "big.tar.zst"
    big_size = 1 << 30
    with open(big, "wb") as f:
        f.truncate(big_size)
        for offset in range(0, big_size, 64 << 20):  # a few non-zero marks so a wrong offset is visible
            f.seek(offset)
            f.write(offset.to_bytes(8, "big") * 512)
    pxe_write_image(root, "big", tarball=big)
    pxe_write_image(root, "small")
    for name in ("big", "small"):
        subprocess.run([*cli, "image", "add", "--data-dir", data_dir, root / f"{name}.json"], check=True,
                       capture_output=True)
    token = subprocess.run([*cli, "token", "create", "--data-dir", data_dir, "--scope", "admin"], check=True,
                           capture_output=True, text=True).stdout.strip()
    port = _free_port()
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        tftp_port = s.getsockname()[1]
    log = open(root / "serve.log", "wb")
    process = subprocess.Popen([*cli, "serve", "--data-dir", data_dir, "--bind", f"127.0.0.1:{port}", "--workers", "2",
                                "--threads", "16", "--installer", pxe_installer,
                                "--tftp", str(tftp_port), "--agent-timeout", "8", "--sweep-interval", "1"], stdout=log, stderr=subprocess.STDOUT,
                               start_new_session=True)
    url = f"http://127.0.0.1:{port}"
    try:
        deadline = time.monotonic() + 30
        while True:
            try:
                if requests.get(url + "/boot.ipxe", timeout=2).status_code == 200:
                    break
            except requests.ConnectionError:
                pass
            if process.poll() is not None or time.monotonic() > deadline:
                raise RuntimeError(f"metalstream serve did not start: {(root / 'serve.log').read_text()[-3000:]}")
            time.sleep(0.2)
        yield PxeServer(url, process, data_dir, {"Authorization": f"Bearer {token}"}, "big", big_size, "small", tftp_port,
                        root / "serve.log")
    finally:
        if process.poll() is None:
            os.killpg(process.pid, signal.SIGTERM)  # gunicorn stops its workers on TERM
            try:
                process.wait(timeout=30)
            except subprocess.TimeoutExpired:
                os.killpg(process.pid, signal.SIGKILL)
                process.wait()
        log.close()
