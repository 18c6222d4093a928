"""Forcing a UEFI client's network boot path (issue 18), through the real TFTP child and a real tftpy client on
loopback: a deployment's boot_path (the client attributed through an injected neighbour table mapping 127.0.0.1
to its MAC) or the service's --boot-path answers the asked first-stage name with the other path's loader, and the
deployment records what was sent and why; `metalstream serve --boot-path` and `metalstream deploy --boot-path`."""
from __future__ import annotations

import json
import sys
from pathlib import Path

import pytest

from fixtures_pxe import PXE_MAC, free_udp_port
from pxe import bootpath, deployments, tftp
from test_pxe_tftp_secureboot import (ARP_HEADER, OTHER_MAC, Tftp, _events, _row, _wait_for, arp_line,
                                      signed_installer)  # noqa: F401 (a fixture)


def start_tftp(tmp_path: Path, db_url: str, installer: Path | None, boot_path: str = "auto"):
    root = tmp_path / "tftp-root"
    root.mkdir(exist_ok=True)
    (root / "snponly.efi").write_bytes(b"MZ unsigned ipxe\n" * 100)
    (root / "undionly.kpxe").write_bytes(b"\x55\xaa" * 1000)
    neighbours = tmp_path / "arp"
    neighbours.write_text(ARP_HEADER + arp_line("127.0.0.1", PXE_MAC))
    port = free_udp_port()
    child = tftp.start(root, "127.0.0.1", port, boot=tftp.BootOptions(
        db_url=db_url, installer=installer, public_url="http://10.0.2.2:8080", http_scheme="http",
        http_host="127.0.0.1", http_port=8080, neighbours=neighbours, boot_path=boot_path))
    return child, Tftp(root, port, neighbours)


@pytest.fixture
def service_default() -> str:
    return "auto"


@pytest.fixture
def served(pxe_env, signed_installer, tmp_path, service_default):
    """pxe_env plus a TFTP child with the signed installer and --boot-path `service_default` (a test may
    override that fixture); 127.0.0.1 is PXE_MAC in its neighbour table."""
    from metalstream import proc
    child, client = start_tftp(tmp_path, pxe_env.service.config.db_url, signed_installer, service_default)
    try:
        yield pxe_env, client, signed_installer.parent
        assert child.poll() is None, "the TFTP child died during the test"
    finally:
        proc.terminate(child, grace=5)


def _first_stage(env, dep_id: str, loader: str) -> dict:
    return _wait_for(lambda: ((stage := _row(env, dep_id)["first_stage"]) or {}).get("loader") == loader and stage)


def test_a_deployment_forcing_shim_grub_gets_shim_for_the_ipxe_name_then_grub_and_its_config(served):
    env, client, signed = served
    dep = env.pending(boot_path="shim-grub")
    assert client.fetch("snponly.efi") == (signed / "shimx64.efi").read_bytes()
    stage = _first_stage(env, dep["id"], "shimx64.efi")
    assert stage["path_choice"] == {"asked": "snponly.efi", "path": "shim-grub", "chosen_by": "deployment"}
    assert ("firmware fetched shimx64.efi (signed shim) over TFTP from 127.0.0.1 (it asked for snponly.efi; boot "
            "path shim-grub chosen by the deployment's boot_path)") in _events(env, dep["id"])
    assert client.fetch("ipxe.efi") == (signed / "shimx64.efi").read_bytes()  # not even in the TFTP root
    assert client.fetch("grubx64.efi") == (signed / "grubx64.efi").read_bytes()
    assert client.fetch("undionly.kpxe") == (client.root / "undionly.kpxe").read_bytes()  # BIOS: never redirected
    cfg = client.fetch(f"grub/{PXE_MAC}.cfg").decode()
    assert "linux /installer/vmlinuz" in cfg and f"metalstream.deployment={dep['id']}" in cfg
    row = _row(env, dep["id"])
    assert row["state"] == "booting" and row["boot_path"] == "shim-grub"


def test_a_deployment_forcing_ipxe_gets_ipxe_for_the_shim_name(served):
    env, client, _signed = served
    dep = env.pending(boot_path="ipxe")
    assert client.fetch("shimx64.efi") == (client.root / "snponly.efi").read_bytes()
    stage = _first_stage(env, dep["id"], "snponly.efi")
    assert stage["path_choice"] == {"asked": "shimx64.efi", "path": "ipxe", "chosen_by": "deployment"}
    assert ("firmware fetched snponly.efi (iPXE for UEFI, unsigned) over TFTP from 127.0.0.1 (it asked for "
            "shimx64.efi; boot path ipxe chosen by the deployment's boot_path)") in _events(env, dep["id"])
    env.boot_token()  # iPXE fetches its script over HTTP as usual
    assert _row(env, dep["id"])["boot_path"] == "ipxe"
    assert deployments.get(env.service.engine, dep["id"])["first_stage"]["path_choice"]["path"] == "ipxe"


@pytest.mark.parametrize("boot_path", [None, "auto"])
def test_auto_serves_what_is_asked(served, boot_path):
    env, client, signed = served
    dep = env.pending(**({"boot_path": boot_path} if boot_path else {}))
    assert client.fetch("shimx64.efi") == (signed / "shimx64.efi").read_bytes()
    assert _first_stage(env, dep["id"], "shimx64.efi")["path_choice"] == {
        "asked": "shimx64.efi", "path": "shim-grub", "chosen_by": "asked"}
    assert client.fetch("snponly.efi") == (client.root / "snponly.efi").read_bytes()
    assert _first_stage(env, dep["id"], "snponly.efi")["path_choice"]["chosen_by"] == "asked"
    assert "firmware fetched snponly.efi (iPXE for UEFI, unsigned) over TFTP from 127.0.0.1" in _events(env, dep["id"])


@pytest.mark.parametrize("service_default", ["shim-grub"])
def test_the_service_default_applies_to_an_unattributed_client_and_yields_to_the_deployment(served):
    env, client, signed = served
    client.neighbours.write_text(ARP_HEADER)  # 127.0.0.1 unknown: no deployment to ask
    assert client.fetch("snponly.efi") == (signed / "shimx64.efi").read_bytes()
    client.neighbours.write_text(ARP_HEADER + arp_line("127.0.0.1", OTHER_MAC))  # a MAC without a deployment
    assert client.fetch("snponly.efi") == (signed / "shimx64.efi").read_bytes()
    client.neighbours.write_text(ARP_HEADER + arp_line("127.0.0.1", PXE_MAC))
    auto = env.pending()
    assert client.fetch("snponly.efi") == (signed / "shimx64.efi").read_bytes()
    assert _first_stage(env, auto["id"], "shimx64.efi")["path_choice"] == {
        "asked": "snponly.efi", "path": "shim-grub", "chosen_by": "service"}
    assert "boot path shim-grub chosen by metalstream serve --boot-path)" in _events(env, auto["id"])[-1]
    assert env.client.delete(f"/api/v1/deployments/{auto['id']}", headers=env.admin).status_code == 200
    forced = env.pending(boot_path="ipxe")
    assert client.fetch("snponly.efi") == (client.root / "snponly.efi").read_bytes()
    assert _first_stage(env, forced["id"], "snponly.efi")["path_choice"]["chosen_by"] == "deployment"


def test_a_forced_shim_grub_without_signed_loaders_serves_what_was_asked_and_says_why(pxe_env, pxe_installer,
                                                                                       tmp_path):
    from metalstream import proc
    child, client = start_tftp(tmp_path, pxe_env.service.config.db_url, pxe_installer)
    try:
        dep = pxe_env.pending(boot_path="shim-grub")
        assert client.fetch("snponly.efi") == (client.root / "snponly.efi").read_bytes()
        stage = _first_stage(pxe_env, dep["id"], "snponly.efi")
    finally:
        proc.terminate(child, grace=5)
    assert stage["path_choice"]["chosen_by"] == "asked" and stage["path_choice"]["path"] == "ipxe"
    assert "cannot be served: the installer carries no signed shim and grub" in stage["path_choice"]["note"]
    assert "the installer carries no signed shim and grub" in _events(pxe_env, dep["id"])[-1]


def test_choosing_a_path():
    choose = bootpath.choose
    assert choose("snponly.efi", None, "auto") == bootpath.Choice("snponly.efi", "ipxe", "asked")
    assert choose("snponly.efi", "auto", "shim-grub") == bootpath.Choice("snponly.efi", "shim-grub", "service")
    assert choose("shimx64.efi", "ipxe", "shim-grub").chosen_by == "deployment"
    assert choose("shimx64.efi", "shim-grub", "auto") == bootpath.Choice("shimx64.efi", "shim-grub", "deployment")
    assert not choose("shimx64.efi", "shim-grub", "auto").redirected
    # the service's ipxe default never takes a Secure Boot deployment off the signed path
    kept = choose("shimx64.efi", None, "ipxe", secure_boot=True)
    assert kept.path == "shim-grub" and kept.chosen_by == "asked" and "Secure Boot" in kept.note
    assert choose("shimx64.efi", "auto", "ipxe").path == "ipxe"
    assert bootpath.refusal("shim-grub", "both", False) is None and bootpath.refusal("shim-grub", "uefi", True) is None
    assert bootpath.refusal("auto", "bios", True) is None


def test_serve_says_the_default_and_deploy_forces_a_path(tmp_path, signed_installer, pxe_image_manifest):
    """The real `metalstream serve --tftp --boot-path shim-grub` and the remote `metalstream deploy --boot-path`."""
    from fixtures_pxe import cli_admin_token
    from lab.service_proc import ServiceProcess
    from metalstream import proc
    data_dir = tmp_path / "data"
    proc.run([sys.executable, "-m", "metalstream", "image", "add", "--create", "--data-dir", str(data_dir),
              pxe_image_manifest])
    token = cli_admin_token(data_dir)["Authorization"].split()[1]
    service = ServiceProcess(data_dir, installer=signed_installer,
                             options=["--tftp", str(free_udp_port()), "--boot-path", "shim-grub"])
    with service:
        assert ("metalstream: UEFI clients take the shim-grub path whatever first-stage loader they ask for "
                "(--boot-path shim-grub), unless a deployment's boot_path") in service.log_path.read_text()

        def deploy(*options: str):
            return proc.run([sys.executable, "-m", "metalstream", "deploy", "--url", service.url, "--token", token,
                             "--image", "tiny", "-o", "json", *options], timeout=60, check=False)
        refused = deploy("--mac", PXE_MAC, "--boot-path", "shim-grub", "--boot-mode", "bios")
        assert refused.returncode == 2 and "400" in refused.stderr and "(field boot_path)" in refused.stderr
        created = deploy("--mac", PXE_MAC, "--boot-path", "ipxe")
        assert created.returncode == 0, created.stderr
        assert json.loads(created.stdout)["request"]["boot_path"] == "ipxe"


@pytest.mark.parametrize("boot_path, tftp_on, words", [
    ("ipxe", False, "needs --tftp"),
    ("shim-grub", True, "shim-grub needs an --installer that carries the signed shim and grub"),
])
def test_serve_refuses_a_boot_path_it_cannot_serve(tmp_path, pxe_installer, boot_path, tftp_on, words):
    from metalstream import proc
    tftp_option = ["--tftp", str(free_udp_port())] if tftp_on else []
    result = proc.run([sys.executable, "-m", "metalstream", "serve", "--data-dir", str(tmp_path / "data"),
                       "--installer", pxe_installer, "--public-url", "http://10.0.2.2:8080", "--boot-path", boot_path,
                       *tftp_option], timeout=60, check=False)
    assert result.returncode == 2 and "--boot-path" in result.stderr and words in result.stderr
