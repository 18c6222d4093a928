"""UEFI HTTP boot under Secure Boot (pxe.httpboot): real HTTP requests, as OVMF's HTTP boot client makes them (HEAD
for the size, then GET), against the service on loopback; what the RAM disk image holds (read back with mtools:
the signed files byte for byte, this machine's GRUB config), the token in it, the boot path recorded, and the
clients that get their local disk. The VM that boots it: tests/test_e2e_secureboot_http.py (slow)."""
from __future__ import annotations

import os
import subprocess
import threading
from pathlib import Path

import pytest
import requests

from conftest import require_tools
from fixtures_pxe import PXE_MAC, write_signed_installer
from pxe import deployments, httpboot

OTHER_MAC = "52:54:00:ab:cd:ef"


@pytest.fixture(scope="module")
def signed_installer(tmp_path_factory) -> Path:
    """A fake installer carrying (fake, small) signed loaders; the kernel's size is odd on purpose."""
    return write_signed_installer(tmp_path_factory.mktemp("signed-installer"), kernel_repeats=401, initrd_bytes=3000001)


class LiveService:
    """The service's WSGI app on a loopback port (a real HTTP server in a thread), with a neighbour table the
    test controls (client address → MAC)."""

    def __init__(self, tmp_path: Path, installer: Path, image_manifest: Path, db_url: str | None):
        from werkzeug.serving import make_server

        from pxe import imagestore, tokens
        from pxe.app import create_app
        from pxe.config import ServiceConfig

        config = ServiceConfig(data_dir=tmp_path / "data", installer=installer, supervisor_interval=0,
                               public_url="http://10.0.2.2:8080", db_url=db_url)
        self.app = create_app(config)
        self.service = self.app.extensions["metalstream"]
        imagestore.register(self.service.engine, config.image_dir, image_manifest)
        self.admin = {"Authorization": "Bearer " + tokens.create_api_token(self.service.engine, "admin")}
        self.neighbours: dict[str, str] = {}
        self.server = make_server("127.0.0.1", 0, self.app, threaded=True)
        self.url = f"http://127.0.0.1:{self.server.server_port}"
        self.thread = threading.Thread(target=self.server.serve_forever, daemon=True)
        self.thread.start()

    def pending(self, mac: str = PXE_MAC) -> dict:
        response = requests.post(f"{self.url}/api/v1/deployments", json={"mac": mac, "image": "tiny"},
                                 headers=self.admin, timeout=10)
        assert response.status_code == 201, response.text
        return response.json()

    def close(self) -> None:
        self.server.shutdown()
        self.service.engine.dispose()


@pytest.fixture
def live(tmp_path, signed_installer, pxe_image_manifest, pxe_db_url, monkeypatch):
    from pxe.views import boot as boot_views
    service = LiveService(tmp_path, signed_installer, pxe_image_manifest, pxe_db_url)
    monkeypatch.setattr(boot_views, "client_neighbours", lambda: service.neighbours)
    try:
        yield service
    finally:
        service.close()


def firmware_fetch(url: str, out: Path) -> requests.Response:
    """What OVMF's HTTP boot does with the URL DHCP gave it: HEAD for the size, then GET the whole file."""
    head = requests.head(url, timeout=30)
    assert head.status_code == 200, head.text
    got = requests.get(url, timeout=60)
    assert got.status_code == 200, got.text
    assert int(head.headers["Content-Length"]) == len(got.content) == int(got.headers["Content-Length"])
    out.write_bytes(got.content)
    return got


def image_file(image: Path, name: str) -> bytes:
    return subprocess.run(["mtype", "-i", str(image), f"::/{name}"], capture_output=True, check=True).stdout


def test_a_pending_machine_gets_the_signed_chain_and_its_installer_config_in_one_image(live, signed_installer,
                                                                                       tmp_path):
    require_tools("mformat", "mcopy", "mtype")
    dep = live.pending()
    live.neighbours["127.0.0.1"] = PXE_MAC
    image = tmp_path / "got.img"
    got = firmware_fetch(f"{live.url}/boot/secureboot.img", image)
    assert got.headers["Content-Type"] == "application/vnd.efi-img"
    assert len(got.content) % (1024 * 1024) == 0  # OVMF's RAM disk takes its block size from the image's size
    directory = signed_installer.parent
    for name, source in (("EFI/BOOT/BOOTX64.EFI", "shimx64.efi"), ("EFI/BOOT/grubx64.efi", "grubx64.efi"),
                         ("installer/vmlinuz", "vmlinuz"), ("installer/initrd.img", "initrd.img")):
        assert image_file(image, name) == (directory / source).read_bytes(), name
    config = image_file(image, "grub/grub.cfg").decode()
    assert len(config) == httpboot.CONFIG_SIZE
    token = config.split("metalstream.token=")[1].split()[0]
    assert config.rstrip("\n") + "\n" == (
        f"# metalstream deployment {dep['id']}: install tiny on {PXE_MAC} (signed shim + grub over UEFI HTTP boot, "
        "from its RAM disk)\n"
        "set timeout=0\n"
        'menuentry "metalstream: install tiny" {\n'
        "    linux /installer/vmlinuz metalstream.server=http://10.0.2.2:8080 "
        f"metalstream.token={token} metalstream.deployment={dep['id']} console=ttyS0,115200\n"
        "    initrd /installer/initrd.img\n"
        "}\n")
    plan = requests.get(f"{live.url}/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"}, timeout=10)
    assert plan.status_code == 200, plan.text
    row = deployments.get_row(live.service.engine, dep["id"])
    assert row["boot_path"] == "shim-grub-http" and row["first_stage"] is None
    messages = [e["message"] for e in deployments.get(live.service.engine, dep["id"])["events"]]
    assert "installer boot script served (boot: signed shim + grub over UEFI HTTP boot (RAM disk image))" in messages


def test_head_asks_for_the_size_only(live):
    require_tools("mformat", "mcopy")
    dep = live.pending()
    live.neighbours["127.0.0.1"] = PXE_MAC
    head = requests.head(f"{live.url}/boot/secureboot.img", timeout=30)
    assert head.status_code == 200 and int(head.headers["Content-Length"]) > 3_000_000 and head.content == b""
    row = deployments.get_row(live.service.engine, dep["id"])
    assert row["state"] == "pending" and row["boot_path"] is None


@pytest.mark.parametrize("neighbour", [None, OTHER_MAC], ids=["unknown-address", "nothing-pending"])
def test_a_client_the_service_cannot_install_gets_its_local_disk(live, tmp_path, neighbour):
    require_tools("mformat", "mcopy", "mtype")
    dep = live.pending()
    if neighbour:
        live.neighbours["127.0.0.1"] = neighbour
    image = tmp_path / "got.img"
    firmware_fetch(f"{live.url}/boot/secureboot.img", image)
    config = image_file(image, "grub/grub.cfg").decode()
    assert config.startswith(f"# metalstream: no install pending{' for ' + neighbour if neighbour else ''}; boot "
                             "this machine's own disk")
    assert "metalstream.token" not in config and "search --no-floppy --set=root --file /boot/grub/grub.cfg" in config
    assert deployments.get_row(live.service.engine, dep["id"])["state"] == "pending"


def test_without_signed_loaders_there_is_no_image(pxe_env):
    response = pxe_env.client.get("/boot/secureboot.img")
    assert response.status_code == 404 and "carries no signed shim and grub" in response.get_data(as_text=True)


def test_the_machines_config_replaces_the_placeholder_across_read_chunks(tmp_path, monkeypatch):
    path = tmp_path / "image"
    data = bytearray(os.urandom(40_000))
    offset = 5_000
    data[offset:offset + httpboot.CONFIG_SIZE] = b"# metalstream placeholder x\n".ljust(httpboot.CONFIG_SIZE, b"\n")
    path.write_bytes(data)
    monkeypatch.setattr(httpboot, "_CHUNK", 4096)
    image = httpboot.BootImage(path, httpboot._config_offset(path))
    assert image.config_offset == offset
    expected = bytes(data[:offset]) + httpboot.padded("echo hi\n") + bytes(data[offset + httpboot.CONFIG_SIZE:])
    assert b"".join(image.chunks("echo hi\n")) == expected
    with pytest.raises(Exception, match="has room for"):
        httpboot.padded("#" * httpboot.CONFIG_SIZE)
