"""TLS pieces without a running service: PEM checks, `serve`/`build` option errors, boot-script URLs,
the installer's CA, the agent's default CA, and the demo's access-log accounting."""
from __future__ import annotations

import hashlib
import ssl
import stat

import pytest
from click.testing import CliRunner

from metalstream import proc
from metalstream.errors import BadInput
from metalstream.tls import INSTALLER_CA_PATH, check_server_pair, read_ca_certificate

from conftest import REPO, run_cli


@pytest.fixture(scope="module")
def pem(tmp_path_factory):
    from lab.tls import issue_server_cert, make_ca

    root = tmp_path_factory.mktemp("pem")
    ca = make_ca(root / "ca")
    server = issue_server_cert(ca, root / "server", ip_addresses=["127.0.0.1"])
    other = issue_server_cert(ca, root / "other", ip_addresses=["127.0.0.2"], name="other")
    encrypted = root / "encrypted.key"
    proc.run(["openssl", "genpkey", "-algorithm", "ec", "-pkeyopt", "ec_paramgen_curve:prime256v1", "-aes256",
              "-pass", "pass:secret", "-out", encrypted])
    garbage = root / "garbage.pem"
    garbage.write_text("-----BEGIN CERTIFICATE-----\nbm90IGEgY2VydGlmaWNhdGU=\n-----END CERTIFICATE-----\n")
    ca_and_key = root / "ca-and-key.pem"
    ca_and_key.write_bytes(ca.cert.read_bytes() + ca.key.read_bytes())
    return {"ca": ca, "server": server, "other": other, "encrypted": encrypted, "garbage": garbage,
            "ca_and_key": ca_and_key, "root": root}


def test_the_lab_writes_keys_for_their_owner_only_and_certificates_that_verify(pem):
    for key in (pem["ca"].key, pem["server"].key):
        assert stat.S_IMODE(key.stat().st_mode) == 0o600
    assert stat.S_IMODE(pem["server"].key.parent.stat().st_mode) == 0o700
    context = ssl.create_default_context(cafile=str(pem["ca"].cert))
    context.load_cert_chain(pem["server"].cert, pem["server"].key)  # the pair loads as a TLS identity
    verified = proc.run(["openssl", "verify", "-CAfile", pem["ca"].cert, pem["server"].cert])
    assert verified.stdout.strip().endswith("OK")
    text = proc.run(["openssl", "x509", "-noout", "-ext", "subjectAltName", "-in", pem["server"].cert]).stdout
    assert "IP Address:127.0.0.1" in text


def test_ca_files_are_checked_and_a_private_key_is_never_accepted(pem):
    assert read_ca_certificate(pem["ca"].cert) == pem["ca"].cert.read_bytes()
    with pytest.raises(BadInput, match="holds a private key") as refused:
        read_ca_certificate(pem["ca_and_key"])
    assert "BEGIN" not in str(refused.value)  # the key's text is never quoted
    with pytest.raises(BadInput, match="holds a private key"):
        read_ca_certificate(pem["ca"].key)
    (pem["root"] / "notes.txt").write_text("not a certificate\n")
    with pytest.raises(BadInput, match="no PEM certificate"):
        read_ca_certificate(pem["root"] / "notes.txt")
    with pytest.raises(BadInput, match="not a valid PEM certificate"):
        read_ca_certificate(pem["garbage"])
    with pytest.raises(BadInput, match="cannot read"):
        read_ca_certificate(pem["root"] / "missing.pem")
    with pytest.raises(BadInput, match="not a regular file"):
        read_ca_certificate(pem["root"])


def test_server_certificate_and_key_must_belong_together(pem):
    check_server_pair(pem["server"].cert, pem["server"].key)
    with pytest.raises(BadInput, match="does not belong") as mismatch:
        check_server_pair(pem["server"].cert, pem["other"].key)
    assert mismatch.value.location == "--tls-key"
    with pytest.raises(BadInput, match="encrypted"):
        check_server_pair(pem["server"].cert, pem["encrypted"])
    with pytest.raises(BadInput) as not_a_cert:
        check_server_pair(pem["server"].key, pem["server"].key)
    assert not_a_cert.value.location == "--tls-cert"
    with pytest.raises(BadInput, match="not a PEM private key"):
        check_server_pair(pem["server"].cert, pem["server"].cert)


def test_serve_refuses_bad_tls_options_with_exit_2_before_listening(pem, tmp_path):
    server, other = pem["server"], pem["other"]
    base = ["serve", "--data-dir", str(tmp_path / "data"), "--bind", "127.0.0.1:1"]
    cases = [
        (["--tls-cert", str(server.cert)], "--tls-key: give --tls-cert and --tls-key together"),
        (["--tls-cert", str(server.key), "--tls-key", str(server.key)], "--tls-cert:"),
        (["--tls-cert", str(pem["garbage"]), "--tls-key", str(server.key)], "not a valid PEM certificate"),
        (["--tls-cert", str(server.cert), "--tls-key", str(other.key)], "does not belong to the certificate"),
        (["--tls-cert", str(server.cert), "--tls-key", str(pem["encrypted"])], "the key is encrypted"),
        (["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--public-url", "http://10.0.0.5:8443"],
         "--public-url: must be an https:// URL"),
        (["--boot-bind", "127.0.0.1:2"], "--boot-bind: the plain-HTTP boot listener goes beside an HTTPS service"),
        (["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--boot-bind", "127.0.0.1:2"],
         "--public-url: --boot-bind needs --public-url"),
        (["--tls-cert", str(server.cert), "--tls-key", str(server.key), "--boot-bind", "127.0.0.1:1",
          "--public-url", "https://127.0.0.1:1"], "--boot-bind: must differ from --bind"),
        (["--boot-url", "http://x/\nboot"], "--boot-url: must be a plain"),
    ]
    for options, message in cases:
        result = run_cli(*base, *options, timeout=60)
        assert result.returncode == 2, (options, result.stderr)
        assert message in result.stderr, (options, result.stderr)
        assert "Traceback" not in result.stderr and "PRIVATE KEY" not in result.stderr
    assert not (tmp_path / "data").exists()  # refused before anything was created


def test_serve_and_build_help_explain_the_tls_options():
    serve = run_cli("serve", "--help").stdout
    for option in ("--tls-cert", "--tls-key", "--boot-bind", "--boot-url"):
        assert option in serve
    assert "--ca" in run_cli("build", "--help").stdout
    assert "system trust store" in run_cli("install", "--help").stdout
    assert str(INSTALLER_CA_PATH) in run_cli("agent", "--help").stdout
    assert "--tls" in run_cli("demo", "--help").stdout


def test_build_checks_the_ca_before_building(pem, tmp_path):
    ks = str(REPO / "kickstarts" / "installer.ks")
    key_in_it = run_cli("build", ks, "-o", str(tmp_path / "out"), "--format", "installer", "--ca",
                        str(pem["ca_and_key"]))
    assert key_in_it.returncode == 2 and "--ca:" in key_in_it.stderr and "private key" in key_in_it.stderr
    not_installer = run_cli("build", ks, "-o", str(tmp_path / "out"), "--ca", str(pem["ca"].cert))
    assert not_installer.returncode == 2 and "--format installer" in not_installer.stderr
    assert not (tmp_path / "out").exists()


def test_the_installer_stage_puts_the_ca_where_the_agent_looks(pem, tmp_path):
    from tarball_builder.installer.stage import add_ca

    digest = add_ca(tmp_path, pem["ca"].cert)
    placed = tmp_path / INSTALLER_CA_PATH.relative_to("/")
    assert placed.read_bytes() == pem["ca"].cert.read_bytes()
    assert stat.S_IMODE(placed.stat().st_mode) == 0o644
    assert digest == hashlib.sha256(placed.read_bytes()).hexdigest()


def test_the_agent_pins_the_installer_ca_by_default(pem, tmp_path, monkeypatch):
    import deployer.agent
    import deployer.agent_cli

    seen = []
    monkeypatch.setattr(deployer.agent, "run_agent", lambda options, out: seen.append(options) or 0)
    runner = CliRunner()
    args = ["--server", "https://svc:8443", "--token", "t" * 20, "--cmdline", str(tmp_path / "none")]
    monkeypatch.setattr(deployer.agent_cli, "INSTALLER_CA_PATH", tmp_path / "absent.pem")
    assert runner.invoke(deployer.agent_cli.agent_command, args).exit_code == 0
    monkeypatch.setattr(deployer.agent_cli, "INSTALLER_CA_PATH", pem["ca"].cert)
    assert runner.invoke(deployer.agent_cli.agent_command, args).exit_code == 0
    assert [options.ca for options in seen] == [None, str(pem["ca"].cert)]


def test_boot_scripts_send_firmware_to_the_boot_url_and_the_agent_to_the_service():
    from pxe.render import InstallerBoot, Renderer, RenderError

    boot = InstallerBoot(base_url="https://10.0.2.2:8443", token="d1.AAAAAAAAAAAAAAAAAAAAAAAAAAAA", deployment_id="d1",
                         mac="52:54:00:12:34:56", image="tiny")
    renderer = Renderer(boot_url="http://10.0.2.2:8080")
    ipxe = renderer.installer_ipxe(boot).splitlines()
    assert ipxe[2].startswith("kernel http://10.0.2.2:8080/installer/vmlinuz initrd=initrd.img "
                              "metalstream.server=https://10.0.2.2:8443 ")
    assert ipxe[3] == "initrd http://10.0.2.2:8080/installer/initrd.img"
    assert "chain --autofree http://10.0.2.2:8080/boot/" in renderer.chain_ipxe("https://10.0.2.2:8443")
    grub = renderer.installer_grub(boot)
    assert "linux (http,10.0.2.2:8080)/installer/vmlinuz" in grub and "server=https://10.0.2.2:8443" in grub
    assert "(http,10.0.2.2:8080)/boot/grub/" in renderer.chain_grub("https://10.0.2.2:8443")
    # Without a boot URL both are the service URL, as before.
    assert Renderer().installer_ipxe(boot).splitlines()[3] == "initrd https://10.0.2.2:8443/installer/initrd.img"
    with pytest.raises(RenderError):
        Renderer(boot_url="http://evil/x\nshell").chain_ipxe("https://10.0.2.2:8443")


def test_the_demo_counts_requests_by_kind_and_scheme():
    from lab.demo import render_traffic, traffic_by_scheme

    def line(request: str, status: int, scheme: str) -> str:
        return (f'127.0.0.1 - - [02/Dec/2026:01:33:17 +0000] "{request} HTTP/1.1" {status} 372 "-" '
                f'"python-requests/2.28.1" {scheme}')

    lines = [line("GET /boot.ipxe", 200, "http"), line("GET /boot/52-54-00-12-34-56.ipxe", 200, "http"),
             line("GET /installer/initrd.img", 200, "http"), line("GET /api/v1/agent/plan", 200, "https"),
             line("POST /api/v1/agent/events", 200, "https"), line("POST /api/v1/agent/result", 200, "https"),
             line("GET /images/debian-minimal.tar.zst", 200, "https"), line("GET /api/v1/deployments/x", 200, "https"),
             "[2026-12-02 01:33:16 +0000] [10321] [INFO] Listening at: http://127.0.0.1:37403 (10321)"]
    counts = traffic_by_scheme(lines)
    assert counts == {"agent": {"https": 3, "http": 0}, "image": {"https": 1, "http": 0},
                      "boot": {"https": 0, "http": 3}}
    assert render_traffic(counts).startswith("agent: 3 over https, 0 over plain http; image: 1 over https")
