"""TLS end to end on loopback, no VM: the REAL service (`metalstream serve --tls-cert/--tls-key --boot-bind`)
with certificates made by openssl in the test, the agent's own code paths against it, and
`metalstream install` with --ca.

- Firmware's side stays plain HTTP on the boot bind (boot scripts, kernel, initramfs only; the agent API
  and images are 403 there); the boot script hands the agent the https URL.
- The agent with the right CA fetches its plan over HTTPS; with a wrong CA (or none: the system store
  does not know the lab CA) it refuses at once — no retry, no request reaches the service (the
  deployment stays `booting`), the target disk file is untouched or never created.
- `metalstream install` with a wrong --ca refuses a manifest URL and a plan naming an https image
  before the target file is created.
"""
from __future__ import annotations

import hashlib
import io
import json
import subprocess
import time
from pathlib import Path

import pytest
import requests

from metalstream.contracts.plan import ImageRef, Plan

from conftest import METALSTREAM, REPO, run_cli
from fixtures_pxe import cli_admin_token, pxe_write_image

MAC_RIGHT = "52:54:00:71:50:01"
MAC_WRONG = "52:54:00:71:50:02"
MAC_BOOT = "52:54:00:71:50:03"
MAC_SYSTEM = "52:54:00:71:50:04"


@pytest.fixture(scope="module")
def pki(tmp_path_factory):
    """The service's CA and certificate (for 127.0.0.1), and an unrelated CA that must not be trusted."""
    from lab.tls import issue_server_cert, make_ca

    root = tmp_path_factory.mktemp("pki")
    ca = make_ca(root / "ca", name="metalstream test CA")
    server = issue_server_cert(ca, root / "server", ip_addresses=["127.0.0.1"], dns_names=["localhost"])
    wrong = make_ca(root / "wrong", name="some other CA")
    return {"ca": ca.cert, "server": server, "wrong_ca": wrong.cert}


@pytest.fixture(scope="module")
def tls_service(tmp_path_factory, pki, pxe_installer):
    """`metalstream serve` with HTTPS on one loopback port, boot files on another, image `tiny` registered."""
    from lab.service_proc import ServiceProcess

    root = tmp_path_factory.mktemp("tls-service")
    data_dir = root / "data"
    manifest = pxe_write_image(root, "tiny")
    subprocess.run([*METALSTREAM, "image", "add", "--create", "--data-dir", data_dir, manifest], check=True, capture_output=True)
    admin = cli_admin_token(data_dir)
    service = ServiceProcess(data_dir, installer=pxe_installer, workers=1, tls=pki["server"], ca=pki["ca"],
                             options=["--sweep-interval", "0"])
    service.public_url = service.url
    with service:
        yield service, admin, manifest


def _pending_boot_script(service, admin: dict, mac: str) -> str:
    created = requests.post(f"{service.url}/api/v1/deployments", headers=admin, timeout=30, verify=service.verify,
                            json={"mac": mac, "image": "tiny", "hostname": "tls-node"})
    assert created.status_code == 201, created.text
    return requests.get(f"{service.boot_url}/boot/{mac}.ipxe", timeout=30).text


def _token(script: str) -> str:
    return script.split("metalstream.token=")[1].split()[0]


def _state(service, admin: dict, mac: str) -> str:
    listed = requests.get(f"{service.url}/api/v1/deployments?mac={mac}", headers=admin, timeout=30,
                          verify=service.verify).json()["deployments"]
    return listed[0]["state"]


def _access_lines(service, path_prefix: str) -> list[str]:
    return [line for line in service.log_path.read_text().splitlines() if f" {path_prefix}" in line and '"' in line]


def test_firmware_gets_plain_http_boot_files_and_the_agent_an_https_url(tls_service):
    service, admin, _ = tls_service
    script = _pending_boot_script(service, admin, MAC_BOOT)
    kernel_line = next(line for line in script.splitlines() if line.startswith("kernel "))
    assert kernel_line.startswith(f"kernel {service.boot_url}/installer/vmlinuz ")
    assert f"metalstream.server={service.url} " in kernel_line and service.url.startswith("https://")
    assert f"initrd {service.boot_url}/installer/initrd.img" in script.splitlines()
    chain = requests.get(f"{service.boot_url}/boot.ipxe", timeout=30).text
    assert f"chain --autofree {service.boot_url}/boot/" in chain
    assert requests.get(f"{service.boot_url}/installer/initrd.img", timeout=30).status_code == 200
    # Nothing but boot files over plain HTTP: not the agent API (the token would travel in clear), not images.
    for path in ("/api/v1/agent/plan", "/images/tiny.tar.zst", "/api/v1/deployments", "/metrics", "/"):
        refused = requests.get(f"{service.boot_url}{path}", timeout=30, headers={"Authorization": "Bearer x"})
        assert refused.status_code == 403, path
        assert "https" in refused.json()["error"]
    assert requests.get(f"{service.url}/images/tiny.tar.zst", timeout=30, verify=service.verify).status_code == 200


def test_agent_with_the_right_ca_fetches_its_plan_over_https(tls_service, pki):
    from deployer.agent import fetch_plan

    service, admin, _ = tls_service
    token = _token(_pending_boot_script(service, admin, MAC_RIGHT))
    session = requests.Session()
    session.headers["Authorization"] = f"Bearer {token}"
    plan = fetch_plan(session, service.url, wait=10, verify=str(pki["ca"]))
    assert plan["deployment_id"] == token.split(".")[0]
    assert plan["image"]["url"] == f"{service.url}/images/tiny.tar.zst"
    assert plan["report"]["result_url"].startswith("https://")
    assert _state(service, admin, MAC_RIGHT) == "installing"  # the service saw the agent's first call
    answered = [line for line in _access_lines(service, "/api/v1/agent/") if '" 200 ' in line]
    assert answered and all(line.endswith(" https") for line in answered), answered


def test_agent_with_a_wrong_ca_refuses_to_install_and_touches_no_disk(tls_service, pki, tmp_path):
    from deployer.agent import AgentOptions, run_agent

    service, admin, _ = tls_service
    token = _token(_pending_boot_script(service, admin, MAC_WRONG))
    disk = tmp_path / "disk.img"  # stands in for the machine's disk: must stay exactly as it is
    with open(disk, "wb") as f:
        f.truncate(64 << 20)
        f.write(b"old partition table")
    before = (hashlib.sha256(disk.read_bytes()).hexdigest(), disk.stat().st_mtime_ns)
    out = io.StringIO()
    started = time.monotonic()
    code = run_agent(AgentOptions(server=service.url, token=token, reboot=False, target=str(disk), plan_wait=120,
                                  ca=str(pki["wrong_ca"])),
                     out=out, reboot=lambda: pytest.fail("an agent that refused must not reboot"))
    took = time.monotonic() - started
    assert code == 1
    console = out.getvalue()
    assert "refusing to install" in console and "did not verify" in console, console
    assert "unable to get local issuer certificate" in console or "certificate verify failed" in console, console
    assert took < 30, f"a certificate that does not verify is final, not retried for --plan-wait ({took:.0f} s)"
    assert (hashlib.sha256(disk.read_bytes()).hexdigest(), disk.stat().st_mtime_ns) == before
    assert _state(service, admin, MAC_WRONG) == "booting"  # not one agent request reached the service


def test_agent_command_with_a_wrong_ca_exits_1_and_creates_no_disk_file(tls_service, pki, tmp_path):
    """The command the installer's /init runs, with the CA option pointed at the wrong CA."""
    service, admin, _ = tls_service
    token = _token(_pending_boot_script(service, admin, MAC_SYSTEM))
    disk = tmp_path / "never.img"
    done = subprocess.run([*METALSTREAM, "agent", "--server", service.url, "--token", token, "--no-reboot",
                           "--disk", str(disk), "--ca", str(pki["wrong_ca"]), "--plan-wait", "60"],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert "refusing to install" in done.stdout and "nothing was written" in done.stdout
    assert "not posting the result" in done.stderr  # tried once, not retried: nothing reaches an untrusted server
    assert not disk.exists()
    # Without --ca the system trust store decides, and it does not know the lab CA either.
    plain = subprocess.run([*METALSTREAM, "agent", "--server", service.url, "--token", token, "--no-reboot",
                            "--disk", str(disk), "--plan-wait", "60"],
                           capture_output=True, text=True, cwd=REPO, timeout=120)
    assert plain.returncode == 1 and "system trust store" in plain.stdout, plain.stdout + plain.stderr
    assert not disk.exists()
    assert _state(service, admin, MAC_SYSTEM) == "booting"


def test_a_pinned_ca_refuses_a_plain_http_service(tls_service, pki, tmp_path):
    service, _, _ = tls_service
    done = subprocess.run([*METALSTREAM, "agent", "--server", service.boot_url, "--token", "x" * 20, "--no-reboot",
                           "--disk", str(tmp_path / "d.img"), "--ca", str(pki["ca"])],
                          capture_output=True, text=True, cwd=REPO, timeout=120)
    assert done.returncode == 2 and "plain http" in done.stdout + done.stderr
    assert not (tmp_path / "d.img").exists()


def test_image_download_with_a_wrong_ca_fails_at_once(tls_service, pki, tmp_path):
    from deployer.download import RetryPolicy
    from deployer.stream import stream_image
    from deployer.tls import TlsVerificationFailed

    service, _, manifest = tls_service
    image = json.loads(manifest.read_text())
    url = f"{service.url}/images/tiny.tar.zst"
    with pytest.raises(TlsVerificationFailed, match="did not verify"):
        stream_image(url, tmp_path, sha256=image["sha256"], verify=str(pki["wrong_ca"]),
                     retry=RetryPolicy(attempts=5, backoff=5))
    assert list(tmp_path.iterdir()) == []
    done = stream_image(url, tmp_path, sha256=image["sha256"], size=image["size"], verify=str(pki["ca"]))
    assert done.sha256 == image["sha256"] and (tmp_path / "etc" / "hostname").is_file()


def test_install_with_a_wrong_ca_refuses_before_creating_the_target(tls_service, pki, tmp_path):
    service, _, manifest = tls_service
    image = json.loads(manifest.read_text())
    disk = tmp_path / "disk.img"
    by_url = run_cli("install", f"{service.url}/images/tiny.json", "--to", str(disk), "--size", "64M",
                     "--ca", str(pki["wrong_ca"]))
    assert by_url.returncode == 1, by_url.stdout + by_url.stderr
    assert f"{service.url} is not trusted" in by_url.stderr and "did not verify" in by_url.stderr
    plan = Plan(image=ImageRef(name="tiny", url=f"{service.url}/images/tiny.tar.zst", sha256=image["sha256"],
                               size=image["size"], manifest=image))
    (tmp_path / "plan.json").write_text(json.dumps(plan.to_json()))
    by_plan = run_cli("install", "--plan", str(tmp_path / "plan.json"), "--to", str(disk), "--size", "64M",
                      "--ca", str(pki["wrong_ca"]))
    assert by_plan.returncode == 1, by_plan.stdout + by_plan.stderr
    assert "did not verify" in by_plan.stderr and "Traceback" not in by_plan.stderr
    assert not disk.exists()
    # The right CA gets past TLS (the service serves no manifests: a 404, reported as bad input).
    right = run_cli("install", f"{service.url}/images/tiny.json", "--to", str(disk), "--size", "64M",
                    "--ca", str(pki["ca"]))
    assert right.returncode == 2 and "404" in right.stderr, right.stderr
    # A pinned CA means https only.
    plain = run_cli("install", f"{service.boot_url}/images/tiny.json", "--to", str(disk), "--ca", str(pki["ca"]))
    assert plain.returncode == 2 and "plain http" in plain.stderr
    assert not disk.exists()


def test_the_access_log_names_the_scheme_of_every_request(tls_service):
    service, _, _ = tls_service
    lines = [line for line in service.log_path.read_text().splitlines() if '"GET ' in line or '"POST ' in line]
    assert lines and all(line.endswith((" http", " https")) for line in lines)
    plain_agent_calls = [line for line in _access_lines(service, "/api/v1/agent/") if line.endswith(" http")]
    assert all('" 403 ' in line for line in plain_agent_calls), plain_agent_calls  # only the test's own probe
