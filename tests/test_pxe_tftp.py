"""TFTP (tftpy serving Debian's iPXE binaries, safe paths) and the proxy-DHCP dnsmasq config."""
from __future__ import annotations

import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from conftest import require_tools, run_cli
from pxe import tftp


@pytest.fixture
def tftp_root(tmp_path) -> Path:
    root = tmp_path / "tftp"
    root.mkdir()
    (root / "undionly.kpxe").write_bytes(b"\x55\xaa" * 3000)
    (root / "efi").mkdir()
    (root / "efi" / "snponly.efi").write_bytes(b"MZ" * 10)
    (tmp_path / "secret").write_text("not for you")
    (root / "link-out").symlink_to(tmp_path / "secret")
    (root / "link-in").symlink_to(root / "undionly.kpxe")
    return root


def test_resolve_allows_only_files_inside_the_root(tftp_root):
    assert tftp.resolve(tftp_root, "undionly.kpxe") == tftp_root / "undionly.kpxe"
    assert tftp.resolve(tftp_root, "/undionly.kpxe") == tftp_root / "undionly.kpxe"
    assert tftp.resolve(tftp_root, "efi/snponly.efi") == tftp_root / "efi" / "snponly.efi"
    assert tftp.resolve(tftp_root, "link-in") == tftp_root / "undionly.kpxe"
    for name in ("../secret", "efi/../../secret", "..", "link-out", "efi", "", "undionly.kpxe\x00.txt",
                 "..\\secret", "efi\\snponly.efi", "%2e%2e/secret", "missing", "/", "./undionly.kpxe\n"):
        assert tftp.resolve(tftp_root, name) is None, name


def test_populate_copies_debian_ipxe_binaries(tmp_path):
    if not Path("/usr/lib/ipxe/undionly.kpxe").exists():
        pytest.fail("Debian's ipxe package is missing: run `bash .ci/setup`")
    copied = tftp.populate(tmp_path / "root")
    assert "undionly.kpxe" in copied
    for name in copied:
        path = tmp_path / "root" / name
        assert not path.is_symlink() and path.read_bytes() == Path("/usr/lib/ipxe", name).read_bytes()


def _free_udp_port() -> int:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_real_tftp_transfer_and_refusals(tftp_root, tmp_path):
    import tftpy
    port = _free_udp_port()
    # the server runs in a child process (tftpy's listen loop has no clean stop from another thread)
    code = f"from pathlib import Path; from pxe import tftp; tftp.run(Path({str(tftp_root)!r}), '127.0.0.1', {port})"
    server = subprocess.Popen([sys.executable, "-c", code], stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        time.sleep(0.5)
        client = tftpy.TftpClient("127.0.0.1", port)
        out = tmp_path / "got"
        client.download("undionly.kpxe", str(out), timeout=2, retries=2)
        assert out.read_bytes() == (tftp_root / "undionly.kpxe").read_bytes()
        for name in ("../secret", "link-out", "efi/../../secret", "..\\secret"):
            target = tmp_path / "refused"
            with pytest.raises(tftpy.TftpException):
                client.download(name, str(target), timeout=2, retries=1)
            assert not target.exists() or target.read_bytes() != b"not for you"
        upload = tmp_path / "upload"
        upload.write_bytes(b"evil")
        with pytest.raises(tftpy.TftpException):
            client.upload("new.bin", str(upload), timeout=2, retries=1)
        assert not (tftp_root / "new.bin").exists()
    finally:
        server.terminate()
        server.wait(timeout=10)


def test_dnsmasq_config_is_proxy_only_and_valid():
    result = run_cli("dnsmasq-config", "--server-url", "http://10.0.0.5:8080", "--subnet", "10.0.0.0/24",
                     "--tftp-server", "10.0.0.5", "--interface", "eth1")
    assert result.returncode == 0, result.stderr
    config = result.stdout
    assert "dhcp-range=10.0.0.0,proxy,255.255.255.0" in config.splitlines()
    assert "dhcp-boot=tag:ipxe,http://10.0.0.5:8080/boot.ipxe" in config.splitlines()
    assert "port=0" in config.splitlines()
    assert not any(line.startswith("dhcp-range=") and "proxy" not in line for line in config.splitlines())
    require_tools("dnsmasq")
    checked = subprocess.run(["dnsmasq", "--test", "-C", "/dev/stdin"], input=config, capture_output=True, text=True)
    assert checked.returncode == 0 and "syntax check OK" in checked.stderr + checked.stdout, checked.stderr


@pytest.mark.parametrize("args,field", [
    (["--server-url", "http://x/$(reboot)", "--subnet", "10.0.0.0/24", "--tftp-server", "10.0.0.5"], "--server-url"),
    (["--server-url", "http://x", "--subnet", "ten", "--tftp-server", "10.0.0.5"], "--subnet"),
    (["--server-url", "http://x", "--subnet", "10.0.0.0/24", "--tftp-server", "x\ndhcp-range=1"], "--tftp-server"),
])
def test_dnsmasq_config_bad_input(args, field):
    result = run_cli("dnsmasq-config", *args)
    assert result.returncode == 2 and field in result.stderr and result.stdout == ""


def test_an_error_attributing_a_sent_file_is_logged_not_raised(caplog):
    """tftpy's serving loop only catches TftpException: anything else from attribution would end the server."""
    class FailingBoot:
        def served(self, name, client, at):
            raise RuntimeError("database is locked")

    tftp._note_served(FailingBoot(), "snponly.efi", "10.0.0.9")
    assert "'snponly.efi': sent, but attributing the fetch failed" in caplog.text
