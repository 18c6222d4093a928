"""The remote CLI (`metalstream login|deploy|deployments|images|tokens`) against a real `metalstream serve`.

Each test runs the real command line in a child process with its own config directory (the profile) and
no METALSTREAM_* variables unless it sets them. A test agent drives deployments through the agent API, as
test_pxe_agent does; for `active` the service's activation check reaches a fake installed host: a real
sshd on loopback (the service's deploy key as root's key) whose forced command answers the check's three
commands as an installed system would.
"""
from __future__ import annotations

import json
import os
import socket
import stat
import subprocess
import time
from pathlib import Path

import pytest
import requests
import yaml

from conftest import METALSTREAM, REPO

ROOT_UUID = "6f1c2a0e-5b7d-4c3e-9a41-0d2b8e7f6a15"


def _free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


class Cli:
    """`metalstream ...` in a child process with a clean environment and its own config directory."""

    def __init__(self, home: Path, **env: str):
        self.env = {k: v for k, v in os.environ.items() if not k.startswith("METALSTREAM_")}
        self.env.update(XDG_CONFIG_HOME=str(home / "config"), HOME=str(home), **env)

    def __call__(self, *args: str, **env: str) -> subprocess.CompletedProcess:
        return subprocess.run([*METALSTREAM, *args], capture_output=True, text=True, cwd=REPO, timeout=300,
                              env={**self.env, **env})

    def popen(self, *args: str) -> subprocess.Popen:
        return subprocess.Popen([*METALSTREAM, *args], stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True,
                                cwd=REPO, env=self.env)

    @property
    def profile(self) -> Path:
        return Path(self.env["XDG_CONFIG_HOME"]) / "metalstream" / "profile.json"


def _ok(result: subprocess.CompletedProcess) -> str:
    assert result.returncode == 0, f"exit {result.returncode}\nstdout: {result.stdout}\nstderr: {result.stderr}"
    return result.stdout


@pytest.fixture
def admin_token(pxe_server) -> str:
    return pxe_server.admin["Authorization"].split()[1]


@pytest.fixture
def cli(tmp_path, pxe_server, admin_token) -> Cli:
    """The CLI pointed at the test service through the environment."""
    return Cli(tmp_path, METALSTREAM_URL=pxe_server.url, METALSTREAM_TOKEN=admin_token)


def _api(pxe_server, path: str):
    response = requests.get(pxe_server.url + path, headers=pxe_server.admin, timeout=30)
    response.raise_for_status()
    return response.json()


class AgentPlayer:
    """Plays a machine's agent: takes the token from the boot script, then plan, events and result."""

    def __init__(self, url: str, mac: str):
        self.url = url
        script = requests.get(f"{url}/boot/{mac}.ipxe", timeout=30).text
        self.headers = {"Authorization": "Bearer " + script.split("metalstream.token=")[1].split()[0]}

    def plan(self) -> dict:
        response = requests.get(f"{self.url}/api/v1/agent/plan", headers=self.headers, timeout=30)
        response.raise_for_status()
        return response.json()

    def event(self, phase: str, message: str, done: int | None = None, total: int | None = None) -> None:
        body = {"phase": phase, "message": message, "bytes_done": done, "bytes_total": total, "time": time.time()}
        requests.post(f"{self.url}/api/v1/agent/events", json=body, headers=self.headers,
                      timeout=30).raise_for_status()

    def result(self, success: bool, phase: str, error: str | None = None) -> None:
        body = {"success": success, "phase": phase, "error": error, "log": f"agent log: {error or 'ok'}\n",
                "root_uuid": ROOT_UUID if success else None, "time": time.time()}
        requests.post(f"{self.url}/api/v1/agent/result", json=body, headers=self.headers,
                      timeout=30).raise_for_status()

    def install(self, total: int = 8 << 20) -> None:
        self.plan()
        for done in range(0, total + 1, total // 4):
            self.event("stream", "streaming image", done, total)
            time.sleep(0.3)


@pytest.fixture
def fake_host(tmp_path, pxe_server):
    """A real sshd on loopback that lets the service's deploy key in as root and answers the activation check
    from files the test writes (ForceCommand): returns (port, write(deployment_json))."""
    directory = tmp_path / "host"
    directory.mkdir()
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", directory / "host_key"], check=True)
    (directory / "authorized_keys").write_text((pxe_server.data_dir / "deploy_key.pub").read_text())
    answer = directory / "answer.sh"
    answer.write_text(f"""#!/bin/sh
case "$SSH_ORIGINAL_COMMAND" in
  cat\\ *) cat {directory}/deployment.json ;;
  findmnt\\ *) echo {ROOT_UUID} ;;
  *) echo bios ;;
esac
""")
    answer.chmod(0o755)
    port = _free_port()
    config = directory / "sshd_config"
    config.write_text(f"""Port {port}
ListenAddress 127.0.0.1
HostKey {directory / 'host_key'}
AuthorizedKeysFile {directory / 'authorized_keys'}
PidFile {directory / 'sshd.pid'}
StrictModes no
UsePAM no
PasswordAuthentication no
KbdInteractiveAuthentication no
PermitRootLogin prohibit-password
ForceCommand {answer}
""")
    Path("/run/sshd").mkdir(exist_ok=True)
    process = subprocess.Popen(["/usr/sbin/sshd", "-D", "-e", "-f", config], stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 10
        while True:
            try:
                socket.create_connection(("127.0.0.1", port), timeout=1).close()
                break
            except OSError:
                assert process.poll() is None and time.monotonic() < deadline, "sshd did not start"
                time.sleep(0.1)

        def write(**values) -> None:
            (directory / "deployment.json").write_text(json.dumps(values))
        yield port, write
    finally:
        process.terminate()
        process.wait(timeout=10)


def test_login_writes_a_0600_profile_that_commands_then_use(tmp_path, pxe_server, admin_token):
    cli = Cli(tmp_path)
    out = _ok(cli("login", pxe_server.url + "/", "--token", admin_token))
    assert str(cli.profile) in out
    assert stat.S_IMODE(cli.profile.stat().st_mode) == 0o600
    assert stat.S_IMODE(cli.profile.parent.stat().st_mode) == 0o700
    assert json.loads(cli.profile.read_text()) == {"url": pxe_server.url, "token": admin_token}
    listed = json.loads(_ok(cli("images", "list", "-o", "json")))  # no option, no environment: the profile
    assert listed == _api(pxe_server, "/api/v1/images")["images"]
    assert _ok(cli("logout")).strip() == f"removed {cli.profile}" and not cli.profile.exists()


def test_login_refuses_a_bad_token_and_writes_nothing(tmp_path, pxe_server):
    cli = Cli(tmp_path)
    result = cli("login", pxe_server.url, "--token", "msa_nope_nope")
    assert result.returncode == 1
    assert f"GET {pxe_server.url}/api/v1/deployments" in result.stderr and "401" in result.stderr
    assert not cli.profile.exists()


def test_options_beat_the_environment_which_beats_the_profile(tmp_path, pxe_server, admin_token):
    closed = f"http://127.0.0.1:{_free_port()}"
    cli = Cli(tmp_path)
    _ok(cli("login", pxe_server.url, "--token", admin_token))
    # the environment's URL wins over the profile's: a closed port, named in the error with where it came from
    down = cli("images", "list", METALSTREAM_URL=closed, METALSTREAM_TOKEN=admin_token)
    assert down.returncode == 1
    assert f"GET {closed}/api/v1/images: cannot connect" in down.stderr
    assert f"is `metalstream serve` running at {closed}? (URL from METALSTREAM_URL)" in down.stderr
    # --url wins over the environment
    _ok(cli("images", "list", "--url", pxe_server.url, METALSTREAM_URL=closed))
    # the environment's token wins over the profile's; the error names the URL, the token's source, what to do
    bad = cli("images", "list", METALSTREAM_TOKEN="msa_bad_token")
    assert bad.returncode == 1
    assert f"GET {pxe_server.url}/api/v1/images: 401" in bad.stderr
    assert "token from METALSTREAM_TOKEN is missing, invalid or revoked" in bad.stderr
    assert f"metalstream login {pxe_server.url}" in bad.stderr
    # --token wins over the environment
    _ok(cli("images", "list", "--token", admin_token, METALSTREAM_TOKEN="msa_bad_token"))
    # the profile's token is never sent to another service
    other = cli("images", "list", "--url", closed)
    assert other.returncode == 2 and f"no API token for {closed}" in other.stderr


def test_errors_name_the_url_and_the_api_field(cli, pxe_server):
    missing = cli("images", "show", "no-such-image")
    assert missing.returncode == 2
    assert (f"GET {pxe_server.url}/api/v1/images/no-such-image: 404 no image named 'no-such-image' (field image)"
            in missing.stderr)
    bad = cli("deploy", "--image", pxe_server.small_image, "--mac", "52:54:00:zz:00:01")
    assert bad.returncode == 2 and "POST" in bad.stderr and "400" in bad.stderr and "(field mac)" in bad.stderr
    neither = cli("deploy", "--image", pxe_server.small_image)
    assert neither.returncode == 2 and "--mac: give --mac MAC or --machine NAME" in neither.stderr
    assert cli("images", "list", "-c", "nope").returncode == 2


def test_output_formats_match_the_api(cli, pxe_server):
    image = _api(pxe_server, f"/api/v1/images/{pxe_server.small_image}")
    assert json.loads(_ok(cli("images", "show", pxe_server.small_image, "-o", "json"))) == image
    assert yaml.safe_load(_ok(cli("images", "show", pxe_server.small_image, "-o", "yaml"))) == image
    assert _ok(cli("images", "show", pxe_server.small_image, "-o", "value", "-c", "sha256")).strip() == image["sha256"]
    assert json.loads(_ok(cli("images", "list", "-o", "json", "-c", "name", "-c", "size"))) == [
        {"name": i["name"], "size": i["size"]} for i in _api(pxe_server, "/api/v1/images")["images"]]
    table = _ok(cli("images", "list", "-o", "table")).splitlines()
    assert table[0].startswith("+-") and table[2].startswith("+-") and table[-1].startswith("+-")
    assert [c.strip() for c in table[1].strip("|").split("|")] == ["Name", "Size", "SHA256", "Created"]
    rows = {line.split("|")[1].strip(): line for line in table[3:-1]}
    assert image["sha256"] in rows[pxe_server.small_image]

    dep = json.loads(_ok(cli("deploy", "--image", pxe_server.small_image, "--mac", "52:54:00:c1:00:01",
                             "--hostname", "cli-out", "-o", "json")))
    try:
        assert dep == _api(pxe_server, f"/api/v1/deployments/{dep['id']}") | {"events": dep["events"]}
        shown = json.loads(_ok(cli("deployment", "show", dep["id"], "-o", "json")))
        assert shown == _api(pxe_server, f"/api/v1/deployments/{dep['id']}")
        listed = json.loads(_ok(cli("deployments", "list", "--mac", "52:54:00:c1:00:01", "-o", "json")))
        assert listed == _api(pxe_server, "/api/v1/deployments?mac=52:54:00:c1:00:01")["deployments"]
        assert _ok(cli("deployments", "list", "--mac", "52:54:00:c1:00:01", "-o", "value", "-c", "id",
                       "-c", "state")).split() == [dep["id"], "pending"]
        detail = _ok(cli("deployment", "show", dep["id"], "-o", "table"))
        assert "| state " in detail and "| pending" in detail and "cli-out" in detail
    finally:
        cancelled = json.loads(_ok(cli("deployment", "cancel", dep["id"], "-o", "json")))
    assert cancelled["state"] == "cancelled"
    again = cli("deployment", "cancel", dep["id"])
    assert again.returncode == 2 and "409" in again.stderr


def test_tokens_create_list_revoke(cli, pxe_server):
    made = json.loads(_ok(cli("tokens", "create", "--scope", "read", "--comment", "cli-test", "-o", "json")))
    assert made["scope"] == "read" and made["token"].startswith("msa_")
    token_id = made["token"].split("_")[1]
    listed = json.loads(_ok(cli("tokens", "list", "-o", "json")))
    assert listed == _api(pxe_server, "/api/v1/tokens")["tokens"]
    mine = next(t for t in listed if t["id"] == token_id)
    assert (mine["scope"], mine["comment"], mine["revoked"]) == ("read", "cli-test", False)
    # a read token may list images but not manage tokens: 403 says an admin token is needed
    assert _ok(cli("images", "list", "-o", "value", "-c", "name", METALSTREAM_TOKEN=made["token"]))
    refused = cli("tokens", "list", METALSTREAM_TOKEN=made["token"])
    assert refused.returncode == 1 and "403" in refused.stderr and "admin" in refused.stderr
    assert _ok(cli("tokens", "revoke", token_id)).strip() == f"revoked {token_id}"
    revoked = cli("images", "list", METALSTREAM_TOKEN=made["token"])
    assert revoked.returncode == 1 and "401" in revoked.stderr


def test_deploy_then_watch_until_active(cli, pxe_server, fake_host):
    port, write_host = fake_host
    mac = "52:54:00:c1:00:02"
    image = _api(pxe_server, f"/api/v1/images/{pxe_server.small_image}")
    dep_id = _ok(cli("deploy", "--image", pxe_server.small_image, "--mac", mac, "--hostname", "cli-node",
                     "--ssh-address", f"127.0.0.1:{port}", "-o", "value", "-c", "id")).strip()
    write_host(deployment_id=dep_id, image=image["name"], sha256=image["sha256"], root_uuid=ROOT_UUID)
    watcher = cli.popen("deployment", "watch", dep_id, "--interval", "0.2", "--timeout", "120")
    assert watcher.stdout.readline() == f"{dep_id} pending -\n"  # watching before the machine "boots"
    agent = AgentPlayer(pxe_server.url, mac)
    agent.install()
    agent.result(True, "finish")
    out, err = watcher.communicate(timeout=180)
    assert watcher.returncode == 0, f"stdout: {out}\nstderr: {err}"
    lines = out.splitlines()
    assert any(line.startswith(f"{dep_id} installing stream ") and "/8.0 MiB" in line for line in lines), out
    assert lines[-1].startswith(f"{dep_id} active "), out
    assert "1 deployment active" in err
    assert _api(pxe_server, f"/api/v1/deployments/{dep_id}")["state"] == "active"
    assert _ok(cli("deployment", "logs", dep_id)) == "agent log: ok\n"


def test_deploy_wait_exits_non_zero_with_the_failure(cli, pxe_server):
    mac = "52:54:00:c1:00:03"
    waiter = cli.popen("deploy", "--image", pxe_server.small_image, "--mac", mac, "--wait", "--interval", "0.2",
                       "--timeout", "120")
    deadline = time.monotonic() + 60
    while not _api(pxe_server, f"/api/v1/deployments?mac={mac}")["deployments"]:
        assert time.monotonic() < deadline and waiter.poll() is None, waiter.communicate()
        time.sleep(0.1)
    agent = AgentPlayer(pxe_server.url, mac)
    agent.plan()
    agent.result(False, "partition", "no disk matched serial S1")
    out, err = waiter.communicate(timeout=180)
    assert waiter.returncode == 1, f"stdout: {out}\nstderr: {err}"
    dep_id = _api(pxe_server, f"/api/v1/deployments?mac={mac}")["deployments"][0]["id"]
    assert f"deployment {dep_id} failed: no disk matched serial S1" in err
    assert out.splitlines()[-1].startswith(f"{dep_id} failed ")


def test_watch_of_many_fails_if_one_fails(cli, pxe_server):
    """Two deployments: one cancelled, one failed — exit 1, each named with why."""
    ids = []
    for mac in ("52:54:00:c1:00:04", "52:54:00:c1:00:05"):
        ids.append(_ok(cli("deploy", "--image", pxe_server.small_image, "--mac", mac, "-o", "value",
                           "-c", "id")).strip())
    watcher = cli.popen("deployments", "watch", *ids, "--interval", "0.2", "--timeout", "120")
    _ok(cli("deployment", "cancel", ids[0]))
    agent = AgentPlayer(pxe_server.url, "52:54:00:c1:00:05")
    agent.plan()
    agent.result(False, "stream", "sha256 mismatch")
    out, err = watcher.communicate(timeout=180)
    assert watcher.returncode == 1, f"stdout: {out}\nstderr: {err}"
    assert f"deployment {ids[0]} cancelled" in err and f"deployment {ids[1]} failed: sha256 mismatch" in err
    unknown = cli("deployment", "watch", "no-such-id")
    assert unknown.returncode == 2 and "404" in unknown.stderr


def test_machines_add_list_edit_deploy_delete(cli, pxe_server, tmp_path):
    password = tmp_path / "bmc-password"
    password.write_text("s3cret-bmc\n")
    made = json.loads(_ok(cli("machines", "add", "cli-rack1-07", "--mac", "52:54:00:c1:01:01", "--tag", "rack1",
                              "--bmc-driver", "ipmi", "--bmc-address", "10.9.9.9:623", "--bmc-username", "admin",
                              "--bmc-password-file", str(password), "-o", "json")))
    assert (made["name"], made["macs"], made["tags"], made["state"]) == (
        "cli-rack1-07", ["52:54:00:c1:01:01"], ["rack1"], "ready")
    assert made["bmc"]["password_set"] is True and "s3cret-bmc" not in json.dumps(made)
    assert json.loads(_ok(cli("machines", "show", "cli-rack1-07", "-o", "json"))) == _api(
        pxe_server, f"/api/v1/machines/{made['id']}")
    listed = json.loads(_ok(cli("machines", "list", "--tag", "rack1", "-o", "json")))
    assert listed == _api(pxe_server, "/api/v1/machines?tag=rack1")["machines"] and made["id"] in {
        m["id"] for m in listed}
    table = _ok(cli("machines", "list", "--tag", "rack1", "-o", "table"))
    assert "cli-rack1-07" in table and "52:54:00:c1:01:01" in table and "ipmi" in table
    edited = json.loads(_ok(cli("machines", "edit", "cli-rack1-07", "--tag", "rack2", "--bmc-driver", "manual",
                                "-o", "json")))
    assert edited["tags"] == ["rack2"] and edited["bmc"]["driver"] == "manual"
    nothing = cli("machines", "edit", "cli-rack1-07")
    assert nothing.returncode == 2 and "nothing to change" in nothing.stderr

    dep = json.loads(_ok(cli("deploy", "--image", pxe_server.small_image, "--machine", "cli-rack1-07", "-o", "json")))
    assert dep["mac"] == "52:54:00:c1:01:01"
    busy = cli("machines", "delete", "cli-rack1-07")
    assert busy.returncode == 2 and "409" in busy.stderr  # an open deployment holds it
    _ok(cli("deployment", "cancel", dep["id"]))
    assert _ok(cli("machines", "delete", "cli-rack1-07")).strip() == "deleted machine cli-rack1-07"
    gone = cli("machines", "show", "cli-rack1-07")
    assert gone.returncode == 2 and "404" in gone.stderr


def test_webhooks_add_edit_deliveries_delete(cli, pxe_server, tmp_path):
    secret = tmp_path / "secret"
    secret.write_text("whsec_from_a_file_0123456789\n")
    made = json.loads(_ok(cli("webhooks", "add", "http://127.0.0.1:9/hook", "--event", "deployment.active",
                              "--secret-file", str(secret), "--disabled", "-o", "json")))
    assert (made["url"], made["event_types"], made["enabled"], made["secret"]) == (
        "http://127.0.0.1:9/hook", ["deployment.active"], False, "whsec_from_a_file_0123456789")
    shown = json.loads(_ok(cli("webhooks", "show", made["id"], "-o", "json")))
    assert shown == _api(pxe_server, f"/api/v1/webhooks/{made['id']}") and "secret" not in shown
    assert made["id"] in _ok(cli("webhooks", "list", "-o", "value", "-c", "id")).split()
    edited = json.loads(_ok(cli("webhooks", "edit", made["id"], "--event", "deployment.failed", "--event",
                                "deployment.active", "-o", "json")))
    assert edited["event_types"] == ["deployment.failed", "deployment.active"] and edited["enabled"] is False
    assert json.loads(_ok(cli("webhooks", "deliveries", made["id"], "-o", "json"))) == []
    assert _ok(cli("webhooks", "delete", made["id"])).strip() == f"deleted webhook {made['id']}"
    bad = cli("webhooks", "add", "ftp://x/hook")
    assert bad.returncode == 2 and "(field url)" in bad.stderr


def test_machines_power_through_a_redfish_bmc(cli, pxe_server, tmp_path):
    from power_stub import RedfishStub
    password = tmp_path / "bmc-password"
    password.write_text("pw\n")
    with RedfishStub(password="pw") as bmc:
        _ok(cli("machines", "add", "cli-power-1", "--mac", "52:54:00:c1:02:01", "--bmc-driver", "redfish",
                "--bmc-address", bmc.url, "--bmc-username", "admin", "--bmc-password-file", str(password)))
        try:
            on = json.loads(_ok(cli("machines", "power", "cli-power-1", "on", "--boot-device", "network", "-o", "json")))
            assert (on["action"], on["power_state"], bmc.power) == ("on", "on", "On")
            status = _ok(cli("machines", "power", "cli-power-1", "status", "-o", "value", "-c", "power_state"))
            assert status.strip() == "on"
            assert json.loads(_ok(cli("machines", "show", "cli-power-1", "-o", "json")))["power_state"] == "on"
            bmc.fail_with = (500, "the BMC is on fire")
            failed = cli("machines", "power", "cli-power-1", "off")
            assert failed.returncode == 1 and "/api/v1/machines/cli-power-1/power: 502" in failed.stderr
            assert "the BMC is on fire" in failed.stderr
        finally:
            bmc.fail_with = None
            _ok(cli("machines", "delete", "cli-power-1"))
    _ok(cli("machines", "add", "cli-manual-1", "--mac", "52:54:00:c1:02:02"))
    manual = cli("machines", "power", "cli-manual-1", "on")
    assert manual.returncode == 2 and "409" in manual.stderr
    _ok(cli("machines", "delete", "cli-manual-1"))


def test_a_read_is_retried_once_the_server_drops_a_connection_but_a_post_is_not():
    """The race of a poll with the server closing an idle keep-alive connection (seen with `watch`): GET
    gets its answer on a new connection; a POST is never sent twice, and its error names the URL."""
    import threading

    from metalstream.errors import OperationFailed
    from metalstream.remote.client import Client
    from metalstream.remote.profile import Target

    listener = socket.socket()
    listener.bind(("127.0.0.1", 0))
    listener.listen()
    seen: list[bytes] = []

    def serve() -> None:
        while True:
            try:
                conn, _ = listener.accept()
            except OSError:
                return
            with conn:
                seen.append(conn.recv(65536).split(b" ", 1)[0])
                if len(seen) % 2:  # every other connection closes without an answer
                    continue
                conn.sendall(b"HTTP/1.1 200 OK\r\nContent-Type: application/json\r\nConnection: close\r\n"
                             b"Content-Length: 9\r\n\r\n{\"ok\": 1}")

    threading.Thread(target=serve, daemon=True).start()
    url = f"http://127.0.0.1:{listener.getsockname()[1]}"
    client = Client(Target(url, "msa_x", "--url", "--token"))
    try:
        assert client.get("/api/v1/images") == {"ok": 1}
        assert seen == [b"GET", b"GET"]
        with pytest.raises(OperationFailed) as failed:
            client.post("/api/v1/deployments", {"image": "x"})
        assert seen == [b"GET", b"GET", b"POST"]
        assert f"POST {url}/api/v1/deployments: cannot connect" in str(failed.value)
    finally:
        listener.close()


def _random_image(directory: Path, name: str, size: int) -> Path:
    from fixtures_pxe import pxe_write_image
    directory.mkdir(parents=True, exist_ok=True)
    (directory / f"{name}.tar.zst").write_bytes(os.urandom(size))
    return pxe_write_image(directory, name, tarball=directory / f"{name}.tar.zst")


def test_images_upload_resumes_after_the_cli_is_killed(cli, pxe_server, tmp_path):
    size = 16 << 20
    manifest = _random_image(tmp_path / "img", "cli-upload", size)
    first = cli.popen("images", "upload", str(manifest), "--chunk-size", "65536")
    deadline = time.monotonic() + 60
    offset = 0
    while offset == 0 and time.monotonic() < deadline:
        uploads = [u for u in _api(pxe_server, "/api/v1/image-uploads")["uploads"] if u["name"] == "cli-upload"]
        offset = uploads[0]["offset"] if uploads else 0
        time.sleep(0.05)
    first.kill()
    first.communicate()
    assert 0 < offset < size and first.returncode != 0
    resumed = cli("images", "upload", str(manifest), "-o", "json")
    image = json.loads(_ok(resumed))
    assert image == _api(pxe_server, "/api/v1/images/cli-upload")
    at = int(resumed.stderr.split(" at byte ")[1].split()[0])
    sent = int(resumed.stderr.split("sent ")[1].split()[0])
    assert offset <= at < size and sent == size - at < size
    assert image["sha256"] == json.loads(manifest.read_text())["sha256"]
    served = requests.get(pxe_server.url + image["url_path"], timeout=60).content
    assert served == (tmp_path / "img" / "cli-upload.tar.zst").read_bytes()
    again = cli("images", "upload", str(manifest), "-o", "value", "-c", "name")
    assert _ok(again).strip() == "cli-upload" and "already registered" in again.stderr
    assert _ok(cli("images", "delete", "cli-upload")).strip() == "deleted image cli-upload"
    assert cli("images", "show", "cli-upload").returncode == 2


def test_images_upload_refuses_a_missing_tarball_and_a_wrong_sha256(cli, pxe_server, tmp_path):
    manifest = _random_image(tmp_path / "img", "cli-badsum", 50_000)
    document = json.loads(manifest.read_text())
    manifest.write_text(json.dumps({**document, "sha256": "0" * 64}))
    refused = cli("images", "upload", str(manifest))
    assert refused.returncode == 2 and "manifest.sha256" in refused.stderr and "400" in refused.stderr
    assert cli("images", "show", "cli-badsum").returncode == 2
    (tmp_path / "img" / "cli-badsum.tar.zst").unlink()
    missing = cli("images", "upload", str(manifest))
    assert missing.returncode == 2 and "not beside the manifest" in missing.stderr


ENCRYPTED_KS = ("zerombr\nclearpart --all --initlabel --drives=sda,sdb\n"
                "part /boot/efi --fstype=efi --size=200 --ondisk=sda\npart /boot --fstype=ext4 --size=512 --ondisk=sda\n"
                "part / --fstype=ext4 --size=2000 --grow --encrypted --ondisk=sdb\n")


def test_deploy_an_encrypted_layout_on_named_disks(cli, pxe_server, tmp_path):
    """--disk hints and the passphrase from a file or stdin reach the agent's plan; no answer, no output and not the
    service's log carries the passphrase; a bad --disk or an empty passphrase is refused before any request."""
    passphrase = "luks-Hq2#remote-cli-unique-3307"
    kickstart, secret = tmp_path / "luks.ks", tmp_path / "passphrase"
    kickstart.write_text(ENCRYPTED_KS)
    secret.write_text(passphrase + "\n")
    common = ("deploy", "--image", pxe_server.small_image, "--kickstart", str(kickstart), "-o", "json",
              "--disk", "sda=serial=S-ONE", "--disk", "sdb=min_size_gib=10,rotational=false")
    outputs = []
    from_file = cli(*common, "--mac", "52:54:00:c1:02:01", "--encryption-passphrase-file", str(secret))
    from_stdin = subprocess.run([*METALSTREAM, *common, "--mac", "52:54:00:c1:02:02",
                                 "--encryption-passphrase-file", "-"], input=passphrase + "\n",
                                capture_output=True, text=True, cwd=REPO, timeout=300, env=cli.env)
    for result, mac in ((from_file, "52:54:00:c1:02:01"), (from_stdin, "52:54:00:c1:02:02")):
        dep = json.loads(_ok(result))
        outputs += [result.stdout, result.stderr]
        try:
            assert dep["encryption_passphrase_set"] is True
            assert dep["request"]["disks"]["sdb"]["min_size_gib"] == 10
            plan = AgentPlayer(pxe_server.url, mac).plan()
            assert plan["encryption"] == {"passphrase": passphrase}
            assert plan["disks"]["sda"]["serial"] == "S-ONE" and plan["disks"]["sdb"]["rotational"] is False
        finally:
            outputs.append(_ok(cli("deployment", "cancel", dep["id"], "-o", "json")))
    missing = cli(*common, "--mac", "52:54:00:c1:02:03")
    assert missing.returncode == 2 and "(field encryption_passphrase)" in missing.stderr, missing.stderr
    bad_disk = cli(*common, "--mac", "52:54:00:c1:02:03", "--disk", "sdc=colour=blue",
                   "--encryption-passphrase-file", str(secret))
    assert bad_disk.returncode == 2 and "--disk sdc" in bad_disk.stderr, bad_disk.stderr
    secret.write_text("\n")
    empty = cli(*common, "--mac", "52:54:00:c1:02:03", "--encryption-passphrase-file", str(secret))
    assert empty.returncode == 2 and "--encryption-passphrase-file" in empty.stderr, empty.stderr
    assert _api(pxe_server, "/api/v1/deployments?mac=52:54:00:c1:02:03")["deployments"] == []
    for text in (*outputs, missing.stdout + missing.stderr, pxe_server.log_path.read_text()):
        assert passphrase not in text
