"""Activation check against a real sshd (own config and host key, loopback port) and a real ext4
filesystem mounted as the "installed system's root"."""
from __future__ import annotations

import json
import os
import shutil
import socket
import subprocess
import time
from pathlib import Path

import pytest

from conftest import require_root, require_tools
from fixtures_images import make_image
from metalstream.contracts.efivars import SECURE_BOOT_VARIABLE, SecureBootState
from metalstream.contracts.secureboot import DEBIAN_GRUB, DEBIAN_NETWORK_GRUB, DEBIAN_SHIM
from pxe.activation import Expected, compare, secure_boot_command, secure_boot_from_answer

SUCCESS = {"success": True, "phase": "finish", "error": None, "log": "ok"}
SIGNED_PACKAGES = [{"name": name, "version": "1", "arch": "amd64"}
                   for name in ("shim-signed", "grub-efi-amd64-signed", "linux-image-amd64")]
DEPLOY_KS = "part / --fstype=ext4 --size=2000 --grow\n%addon org_metalstream_deploy\nsecure_boot=true\n%end\n"


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture
def installed_root(tmp_path):
    """A mounted ext4 filesystem standing in for the new host's / ; yields (mountpoint, uuid)."""
    require_root()
    require_tools("mkfs.ext4", "blkid", "mount", "umount", "findmnt")
    image = tmp_path / "root.ext4"
    with open(image, "wb") as f:
        f.truncate(16 << 20)
    subprocess.run(["mkfs.ext4", "-q", "-F", image], check=True)
    uuid = subprocess.run(["blkid", "-s", "UUID", "-o", "value", image], check=True, capture_output=True,
                          text=True).stdout.strip()
    mnt = tmp_path / "root"
    mnt.mkdir()
    subprocess.run(["mount", "-o", "loop", image, mnt], check=True)  # loop is auto-cleared on umount
    try:
        yield mnt, uuid
    finally:
        subprocess.run(["umount", mnt], check=True)


@pytest.fixture
def sshd(tmp_path):
    """sshd on 127.0.0.1:PORT accepting root with keys from tmp_path/authorized_keys; yields (port, keys file)."""
    require_root()
    require_tools("ssh-keygen")
    if not Path("/usr/sbin/sshd").exists():
        pytest.fail("sshd missing: run `bash .ci/setup` (openssh-server)")
    directory = tmp_path / "sshd"
    directory.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", directory / "host_key"], check=True)
    keys = directory / "authorized_keys"
    keys.write_text("")
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {directory / 'host_key'}
AuthorizedKeysFile {keys}
PidFile {directory / 'sshd.pid'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
""")
    Path("/run/sshd").mkdir(exist_ok=True)  # sshd's privilege-separation directory
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                if process.poll() is not None or time.monotonic() > deadline:
                    raise RuntimeError(f"sshd did not start: {process.stderr.read().decode()}")
                time.sleep(0.1)
        yield port, keys
    finally:
        process.terminate()
        process.wait(timeout=10)
        process.stderr.close()


def _service(tmp_path, installer, manifest, root: Path, **extra):
    from pxe import imagestore, tokens
    from pxe.app import create_app
    from pxe.config import ServiceConfig
    app = create_app(ServiceConfig(data_dir=tmp_path / "data", installer=installer, supervisor_interval=0,
                                   activation_root=str(root), public_url="http://127.0.0.1:1", **extra))
    svc = app.extensions["metalstream"]
    imagestore.register(svc.engine, svc.config.image_dir, manifest)
    admin = {"Authorization": "Bearer " + tokens.create_api_token(svc.engine, "admin")}
    return app, svc, admin


def _install(client, admin, mac: str, ssh_address: str, root_uuid: str, image: str = "tiny", **request) -> str:
    """A deployment created through the API and taken to `installed` as its agent would."""
    response = client.post("/api/v1/deployments", json={"mac": mac, "image": image, "ssh_address": ssh_address,
                                                        **request}, headers=admin)
    assert response.status_code == 201, response.get_json()
    dep = response.get_json()
    token = client.get(f"/boot/{mac}.ipxe").get_data(as_text=True).split("metalstream.token=")[1].split()[0]
    response = client.post("/api/v1/agent/result", json={**SUCCESS, "root_uuid": root_uuid},
                           headers={"Authorization": f"Bearer {token}"})
    assert response.get_json()["state"] == "installed"
    return dep["id"]


def _write_efivars(root: Path, *variables: tuple[str, bytes]) -> Path:
    """The installed system's efivarfs as a directory under its root (activation_root points there)."""
    efivars = root / "sys/firmware/efi/efivars"
    efivars.mkdir(parents=True, exist_ok=True)
    for name, data in variables:
        (efivars / name).write_bytes(data)
    return efivars


def _write_deployment_file(root: Path, **values) -> None:
    (root / "etc" / "metalstream").mkdir(parents=True, exist_ok=True)
    (root / "etc" / "metalstream" / "deployment.json").write_text(json.dumps(values))


@pytest.mark.root
def test_activation_check_marks_active_then_failed_on_mismatch(tmp_path, sshd, installed_root, pxe_installer,
                                                               pxe_image_manifest):
    from pxe import deployments, supervisor
    port, authorized_keys = sshd
    root, uuid = installed_root
    app, svc, admin = _service(tmp_path, pxe_installer, pxe_image_manifest, root)
    authorized_keys.write_text(svc.deploy_public_key + "\n")  # what the agent writes from the plan's ssh_keys
    client = app.test_client()
    image = client.get("/api/v1/images/tiny", headers=admin).get_json()

    good = _install(client, admin, "52:54:00:00:01:01", f"127.0.0.1:{port}", uuid)
    _write_deployment_file(root, deployment_id=good, image="tiny", sha256=image["sha256"], root_uuid=uuid)
    _write_efivars(root, (SECURE_BOOT_VARIABLE, bytes([6, 0, 0, 0, 1])))
    supervisor.tick(svc)
    shown = client.get(f"/api/v1/deployments/{good}", headers=admin).get_json()
    assert shown["state"] == "active", shown
    assert uuid in shown["check_message"] and shown["check_message"].endswith("; Secure Boot on")
    assert deployments.get_row(svc.engine, good)["target_secure_boot"] is True
    shutil.rmtree(root / "sys")  # the next hosts booted with BIOS

    # a host that booted something else (its deployment file names another deployment) fails with the reason
    wrong = _install(client, admin, "52:54:00:00:01:02", f"127.0.0.1:{port}", uuid)
    supervisor.tick(svc)
    shown = client.get(f"/api/v1/deployments/{wrong}", headers=admin).get_json()
    assert shown["state"] == "failed"
    assert f"deployment_id is '{good}', expected '{wrong}'" in shown["error"]
    assert shown["check_message"].endswith("; booted with BIOS (no Secure Boot)")
    assert deployments.get_row(svc.engine, wrong)["target_secure_boot"] is None

    # the agent claimed another root UUID than the one mounted on the host
    other = _install(client, admin, "52:54:00:00:01:03", f"127.0.0.1:{port}", "0000-1111")
    _write_deployment_file(root, deployment_id=other, image="tiny", sha256=image["sha256"], root_uuid="0000-1111")
    supervisor.tick(svc)
    shown = client.get(f"/api/v1/deployments/{other}", headers=admin).get_json()
    assert shown["state"] == "failed" and "mounted root filesystem has UUID" in shown["error"]


def _signed_image(tmp_path: Path) -> Path:
    """An image whose manifest lists Debian's signed chain (and whose tree holds its files): one a deployment
    may ask Secure Boot of."""
    tree = tmp_path / "signed-tree"
    for relative in ("etc/os-release", DEBIAN_SHIM, DEBIAN_GRUB, DEBIAN_NETWORK_GRUB):
        (tree / relative).parent.mkdir(parents=True, exist_ok=True)
        (tree / relative).write_text("ID=debian\n" if relative == "etc/os-release" else f"{relative}\n")
    return make_image(tree, tmp_path / "images", "signed", family="debian", release="bookworm",
                      packages=SIGNED_PACKAGES)


@pytest.mark.root
def test_a_host_asked_to_boot_with_secure_boot_fails_activation_without_it(tmp_path, sshd, installed_root,
                                                                           pxe_installer, pxe_image_manifest):
    """Secure Boot asked for (by the request, or by the deploy kickstart's add-on): the host must have booted
    with it on. Off, or a state it cannot tell, fails the deployment saying so; on makes it active."""
    from pxe import deployments, imagestore, supervisor
    port, authorized_keys = sshd
    root, uuid = installed_root
    app, svc, admin = _service(tmp_path, pxe_installer, pxe_image_manifest, root)
    imagestore.register(svc.engine, svc.config.image_dir, _signed_image(tmp_path))
    authorized_keys.write_text(svc.deploy_public_key + "\n")
    client = app.test_client()
    image = client.get("/api/v1/images/signed", headers=admin).get_json()

    def install_and_check(mac: str, **request) -> dict:
        dep = _install(client, admin, mac, f"127.0.0.1:{port}", uuid, image="signed", **request)
        _write_deployment_file(root, deployment_id=dep, image="signed", sha256=image["sha256"], root_uuid=uuid)
        supervisor.tick(svc)
        shown = client.get(f"/api/v1/deployments/{dep}", headers=admin).get_json()
        assert shown["secure_boot"]["requested"] is True
        assert shown["secure_boot"]["target"] == deployments.get_row(svc.engine, dep)["target_secure_boot"]
        return shown

    _write_efivars(root, (SECURE_BOOT_VARIABLE, bytes([6, 0, 0, 0, 0])))
    shown = install_and_check("52:54:00:00:02:01", secure_boot=True)
    assert shown["state"] == "failed" and shown["secure_boot"]["target"] is False
    assert shown["error"] == ("activation check failed: Secure Boot was requested but the installed system booted "
                              f"with it off; host runs image signed (root UUID {uuid}); Secure Boot off")
    assert shown["check_message"] == shown["error"].removeprefix("activation check failed: ")

    shutil.rmtree(root / "sys")
    _write_efivars(root)  # efivarfs not mounted: the host cannot tell
    shown = install_and_check("52:54:00:00:02:02", kickstart=DEPLOY_KS)
    assert shown["state"] == "failed" and shown["secure_boot"]["target"] is None
    assert shown["error"].startswith("activation check failed: Secure Boot was requested but the installed system "
                                     "cannot tell whether it is on; host runs image signed")
    assert shown["error"].endswith("; Secure Boot unknown (efivarfs is not mounted)")

    _write_efivars(root, (SECURE_BOOT_VARIABLE, bytes([6, 0, 0, 0, 1])))
    shown = install_and_check("52:54:00:00:02:03", secure_boot=True)
    assert shown["state"] == "active" and shown["secure_boot"]["target"] is True, shown
    assert shown["check_message"].endswith("; Secure Boot on") and shown["error"] is None


def test_finishing_activation_writes_the_hosts_state_only_in_its_transition(tmp_path, pxe_installer,
                                                                            pxe_image_manifest):
    """What the host said is stored by the installed → active/failed transition itself: a second answer
    (another worker's, or a host that answered late) changes nothing once the deployment moved on."""
    from pxe import deployments
    app, svc, admin = _service(tmp_path, pxe_installer, pxe_image_manifest, Path("/"))
    client = app.test_client()
    dep = _install(client, admin, "52:54:00:00:02:04", "127.0.0.1:1", "abcd-0002")
    assert deployments.finish_activation(svc.engine, dep, True, "host runs image tiny; Secure Boot on", True)
    assert not deployments.finish_activation(svc.engine, dep, False, "a late answer; Secure Boot off", False)
    row = deployments.get_row(svc.engine, dep)
    assert (row["state"], row["target_secure_boot"], row["error"]) == ("active", True, None)
    assert row["check_message"] == "host runs image tiny; Secure Boot on"

    pending = client.post("/api/v1/deployments", json={"mac": "52:54:00:00:02:05", "image": "tiny"},
                          headers=admin).get_json()["id"]
    assert not deployments.finish_activation(svc.engine, pending, False, "no such check", False)
    row = deployments.get_row(svc.engine, pending)  # an activation never fails a deployment not yet installed
    assert (row["state"], row["target_secure_boot"]) == ("pending", None)


def test_activation_waits_for_ssh_then_times_out(tmp_path, pxe_installer, pxe_image_manifest):
    from pxe import supervisor
    app, svc, admin = _service(tmp_path, pxe_installer, pxe_image_manifest, Path("/"), activation_timeout=60)
    client = app.test_client()
    dep_port = str(_free_port())
    dep = _install(client, admin, "52:54:00:00:01:04", f"127.0.0.1:{dep_port}", "abcd-0001")  # nobody listens
    supervisor.tick(svc)
    shown = client.get(f"/api/v1/deployments/{dep}", headers=admin).get_json()
    assert shown["state"] == "installed" and shown["check_message"].startswith("waiting for SSH")
    # the connection error's words (paramiko's), not an exception's text with its errno list
    assert shown["check_message"].endswith(f": unable to connect to port {dep_port} on 127.0.0.1") and "Errno" not in shown["check_message"]
    supervisor.tick(svc, now=time.time() + 61)
    shown = client.get(f"/api/v1/deployments/{dep}", headers=admin).get_json()
    assert shown["state"] == "failed" and "not reachable over SSH within 60 s" in shown["error"]
    assert "sanboot" in client.get("/boot/52:54:00:00:01:04.ipxe").get_data(as_text=True)


def test_compare_is_strict():
    expected = Expected("d1", "tiny", "a" * 64, "u-1")
    good = json.dumps({"deployment_id": "d1", "image": "tiny", "sha256": "a" * 64, "root_uuid": "u-1"})
    assert compare(good, "U-1", expected, "f")[0]
    assert compare(good, "u-2", expected, "f") == (False, "the mounted root filesystem has UUID 'u-2', expected 'u-1'")
    assert compare("not json", "u-1", expected, "f") == (False, "f is not valid JSON")
    assert not compare(json.dumps({"deployment_id": "d1", "image": "other", "sha256": "a" * 64, "root_uuid": "u-1"}),
                       "u-1", expected, "f")[0]


def test_deploy_key_is_private_and_stable(tmp_path):
    from pxe.activation import ensure_deploy_key
    key = tmp_path / "deploy_key"
    public = ensure_deploy_key(key)
    assert public.startswith("ssh-ed25519 ") and ensure_deploy_key(key) == public
    assert os.stat(key).st_mode & 0o077 == 0


def test_secure_boot_command_in_a_real_shell(tmp_path):
    """What the check runs over SSH, run here by sh against roots standing in for installed systems."""
    def answer(root: Path) -> tuple[bool | None, str]:
        done = subprocess.run(["sh", "-c", secure_boot_command(str(root))], capture_output=True, text=True)
        state = secure_boot_from_answer(done.returncode, done.stdout if done.returncode == 0 else done.stderr)
        return state.enabled, state.text

    assert answer(tmp_path / "bios") == (None, "booted with BIOS (no Secure Boot)")
    unmounted = tmp_path / "unmounted"
    _write_efivars(unmounted)
    assert answer(unmounted) == (None, "Secure Boot unknown (efivarfs is not mounted)")
    without = tmp_path / "no-secure-boot-support"
    _write_efivars(without, ("Boot0000-8be4df61-93ca-11d2-aa0d-00e098032b8c", b"\x07\0\0\0x"))
    assert answer(without) == (False, "Secure Boot off (the firmware has no SecureBoot variable)")
    for name, data, expected in (("on", bytes([6, 0, 0, 0, 1]), (True, "Secure Boot on")),
                                 ("off", bytes([6, 0, 0, 0, 0]), (False, "Secure Boot off"))):
        _write_efivars(tmp_path / name, (SECURE_BOOT_VARIABLE, data))
        assert answer(tmp_path / name) == expected
    _write_efivars(tmp_path / "odd", (SECURE_BOOT_VARIABLE, b"\x06\0\0"))
    state, text = answer(tmp_path / "odd")
    assert state is None and "expected 4 attribute bytes and 1 data byte, got 3 bytes" in text
    quoted = tmp_path / "it's here; echo pwned"
    _write_efivars(quoted, (SECURE_BOOT_VARIABLE, bytes([6, 0, 0, 0, 1])))
    assert answer(quoted) == (True, "Secure Boot on")


def test_a_failed_read_is_a_fixed_phrase_and_its_detail_only_logged(caplog):
    detail = "od: /sys/firmware/efi/efivars/SecureBoot-8be4df61-93ca-11d2-aa0d-00e098032b8c: Permission denied"
    with caplog.at_level("WARNING", logger="metalstream.pxe.activation"):
        state = secure_boot_from_answer(1, detail)
    assert state == SecureBootState(None, "Secure Boot unknown (reading the SecureBoot variable failed (status 1))")
    assert detail in caplog.text
