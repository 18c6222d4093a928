"""`metalstream dnsmasq-config`: the rendered configuration, its checks, dnsmasq's own syntax check, and
a real dnsmasq answering PXE clients in network namespaces (which file each kind of client asks for)."""
from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from pathlib import Path

import pytest

from metalstream import proc
from pxe.dnsmasq import dnsmasq_config

from conftest import REPO, require_root, require_tools, run_cli

URL = "http://10.0.0.5:8080"
BASE = ["--server-url", URL, "--subnet", "10.0.0.0/24", "--tftp-server", "10.0.0.5"]
PROBE = Path(__file__).resolve().parent / "dhcp_probe.py"


def _lines(**options) -> list[str]:
    return dnsmasq_config(server_url=URL, subnet="10.0.0.0/24", tftp_server="10.0.0.5", **options).splitlines()


def _settings(**options) -> list[str]:
    return [line for line in _lines(**options) if line and not line.startswith("#")]


def test_default_is_proxy_dhcp_with_ipxe_for_every_client():
    settings = _settings()
    assert "port=0" in settings and "dhcp-range=10.0.0.0,proxy,255.255.255.0" in settings
    assert 'pxe-service=tag:!ipxe,x86PC,"metalstream iPXE (BIOS)",undionly.kpxe,10.0.0.5' in settings
    for arch in (7, 9):
        assert f'pxe-service=tag:!ipxe,{arch},"metalstream iPXE (UEFI)",snponly.efi,10.0.0.5' in settings
    assert settings[-1] == f"dhcp-boot=tag:ipxe,{URL}/boot.ipxe"
    assert not any("shim" in line for line in settings)


def test_shim_loader_goes_to_uefi_pxe_clients_only():
    settings = _settings(uefi_loader="shim")
    services = [line for line in settings if line.startswith("pxe-service=")]
    assert services == [
        'pxe-service=tag:!ipxe,x86PC,"metalstream iPXE (BIOS)",undionly.kpxe,10.0.0.5',
        'pxe-service=tag:!ipxe,7,"metalstream shim + GRUB (UEFI Secure Boot)",shimx64.efi,10.0.0.5',
        'pxe-service=tag:!ipxe,9,"metalstream shim + GRUB (UEFI Secure Boot)",shimx64.efi,10.0.0.5',
    ]
    assert f"dhcp-boot=tag:ipxe,{URL}/boot.ipxe" in settings
    # Proxy DHCP: dnsmasq answers PXE clients only, so UEFI HTTP boot (architecture 16) is offered nothing here.
    assert not any("HTTPClient" in line or ",16," in line or "client-arch,16" in line for line in settings)
    comments = " ".join(line for line in _lines(uefi_loader="shim") if line.startswith("#"))
    assert "UEFI HTTP boot clients (architecture 16) are offered nothing" in comments
    assert "proxy DHCP answers PXE clients only" in comments.replace("# ", "")


def test_with_the_shim_and_dhcp_range_uefi_http_boot_gets_the_secure_boot_image():
    """Architecture 16 (UEFI HTTP boot, x86-64) gets the URL of the service's RAM disk image, and the offer carries
    the vendor class HTTPClient back, as UEFI requires of an HTTP boot offer."""
    settings = _settings(uefi_loader="shim", dhcp_range="10.0.0.100,10.0.0.199")
    http = ["dhcp-match=set:uefi-http,option:client-arch,16", f"dhcp-boot=tag:uefi-http,{URL}/boot/secureboot.img",
            "dhcp-option-force=tag:uefi-http,60,HTTPClient"]
    assert [line for line in settings if "uefi-http" in line] == http
    assert "dhcp-boot=tag:uefi-x64,tag:!ipxe,shimx64.efi,,10.0.0.5" in settings  # PXE clients: as before
    comments = " ".join(line for line in _lines(uefi_loader="shim", dhcp_range="10.0.0.100,10.0.0.199")
                        if line.startswith("#")).replace("# ", "")
    assert f"UEFI HTTP boot clients (architecture 16) get {URL}/boot/secureboot.img" in comments
    # iPXE for UEFI: HTTP boot clients are offered nothing (they fall back to PXE)
    assert not any("uefi-http" in line or "HTTPClient" in line
                   for line in _settings(dhcp_range="10.0.0.100,10.0.0.199"))


def test_dhcp_range_makes_dnsmasq_the_dhcp_server_and_names_boot_files_in_the_offer():
    settings = _settings(uefi_loader="shim", dhcp_range="10.0.0.100,10.0.0.199", interface="eth1")
    assert "dhcp-range=10.0.0.100,10.0.0.199,12h" in settings and "dhcp-authoritative" in settings
    assert not any("proxy" in line for line in settings) and "port=0" in settings
    assert settings[settings.index("interface=eth1") + 1] == "bind-interfaces"
    # dnsmasq answers a UEFI client's follow-up on udp/4011 only in proxy mode: no pxe-service here
    assert not any(line.startswith(("pxe-service=", "pxe-prompt=")) for line in settings)
    for line in ("dhcp-match=set:bios,option:client-arch,0", "dhcp-match=set:uefi-x64,option:client-arch,7",
                 "dhcp-match=set:uefi-x64,option:client-arch,9", "dhcp-boot=tag:bios,tag:!ipxe,undionly.kpxe,,10.0.0.5",
                 "dhcp-boot=tag:uefi-x64,tag:!ipxe,shimx64.efi,,10.0.0.5", f"dhcp-boot=tag:ipxe,{URL}/boot.ipxe"):
        assert line in settings, line
    assert "dhcp-boot=tag:uefi-x64,tag:!ipxe,snponly.efi,,10.0.0.5" in _settings(dhcp_range="10.0.0.100,10.0.0.199")


def test_help_explains_every_option():
    result = run_cli("dnsmasq-config", "--help")
    assert result.returncode == 0
    text = " ".join(result.stdout.split())
    for option in ("--server-url", "--subnet", "--tftp-server", "--interface", "--uefi-loader", "--dhcp-range"):
        assert option in text
    for phrase in ("shimx64.efi", "grubx64.efi", "client architecture 7 and 9", "UEFI HTTP boot clients (client "
                   "architecture 16) get the service's Secure Boot RAM disk image", "/boot/secureboot.img",
                   "isolated provisioning network", "[default: ipxe]"):
        assert phrase in text, phrase


@pytest.mark.parametrize("value, message", [
    ("10.0.0.100", "must be START,END"),
    ("10.0.0.100,10.0.0.150,10.0.0.160", "must be START,END"),
    ("ten,10.0.0.150", "START 'ten' is not an IPv4 address"),
    ("10.0.0.100,fe80::1", "END 'fe80::1' is not an IPv4 address"),
    ("10.0.1.100,10.0.1.150", "START 10.0.1.100 is outside --subnet 10.0.0.0/24"),
    ("10.0.0.100,10.0.1.5", "END 10.0.1.5 is outside --subnet 10.0.0.0/24"),
    ("10.0.0.0,10.0.0.5", "START 10.0.0.0 is the network address"),
    ("10.0.0.5,10.0.0.255", "END 10.0.0.255 is the broadcast address"),
    ("10.0.0.150,10.0.0.100", "START 10.0.0.150 is above END 10.0.0.100"),
    ("10.0.0.100\ndhcp-range=1,10.0.0.150", "is not an IPv4 address"),
])
def test_bad_dhcp_range_is_a_located_error(value, message):
    result = run_cli("dnsmasq-config", *BASE, "--dhcp-range", value)
    assert result.returncode == 2 and result.stdout == ""
    assert "--dhcp-range" in result.stderr and message in result.stderr, result.stderr


def test_unknown_uefi_loader_is_refused():
    result = run_cli("dnsmasq-config", *BASE, "--uefi-loader", "grub")
    assert result.returncode == 2 and result.stdout == "" and "--uefi-loader" in result.stderr


@pytest.mark.parametrize("extra", [[], ["--uefi-loader", "shim"], ["--dhcp-range", "10.0.0.100,10.0.0.199"],
                                   ["--uefi-loader", "shim", "--dhcp-range", "10.0.0.100,10.0.0.199",
                                    "--interface", "eth1"]])
def test_real_dnsmasq_accepts_every_variant(tmp_path, extra):
    require_tools("dnsmasq")
    result = run_cli("dnsmasq-config", *BASE, *extra)
    assert result.returncode == 0, result.stderr
    config = tmp_path / "metalstream.conf"
    config.write_text(result.stdout)
    checked = subprocess.run(["dnsmasq", "--test", f"--conf-file={config}"], capture_output=True, text=True)
    assert checked.returncode == 0 and "syntax check OK" in checked.stderr + checked.stdout, checked.stderr


@pytest.fixture
def pxe_lan(tmp_path):
    """Two network namespaces joined by a veth pair: the server side (10.77.0.1/24, where dnsmasq runs)
    and a client side (10.77.0.2/24) that plays the PXE firmware. Yields (start_dnsmasq, probe)."""
    require_root()
    require_tools("ip", "dnsmasq")
    tag = f"{os.getpid() % 100000}"
    server_ns, client_ns = f"mstd{tag}s", f"mstd{tag}c"
    server_if, client_if = f"mstd{tag}a", f"mstd{tag}b"
    running: list[subprocess.Popen] = []
    setup = [["ip", "netns", "add", server_ns], ["ip", "netns", "add", client_ns],
             ["ip", "link", "add", server_if, "type", "veth", "peer", "name", client_if],
             ["ip", "link", "set", server_if, "netns", server_ns], ["ip", "link", "set", client_if, "netns", client_ns],
             ["ip", "-n", server_ns, "addr", "add", "10.77.0.1/24", "dev", server_if],
             ["ip", "-n", client_ns, "addr", "add", "10.77.0.2/24", "dev", client_if],
             ["ip", "-n", server_ns, "link", "set", server_if, "up"],
             ["ip", "-n", client_ns, "link", "set", client_if, "up"]]

    def start_dnsmasq(*extra: str) -> None:
        """(Re)start dnsmasq in the server namespace with `metalstream dnsmasq-config ... EXTRA`."""
        while running:
            proc.terminate(running.pop(), grace=5)
        result = run_cli("dnsmasq-config", "--server-url", "http://10.77.0.1:8080", "--subnet", "10.77.0.0/24",
                         "--tftp-server", "10.77.0.1", "--interface", server_if, *extra)
        assert result.returncode == 0, result.stderr
        config = tmp_path / "dnsmasq.conf"
        config.write_text(result.stdout)
        child = proc.spawn(["ip", "netns", "exec", server_ns, "dnsmasq", "--keep-in-foreground",
                            f"--conf-file={config}", f"--dhcp-leasefile={tmp_path / 'leases'}", "--pid-file=",
                            f"--log-facility={tmp_path / 'dnsmasq.log'}"], stderr=subprocess.PIPE,
                           die_with_parent=True)
        running.append(child)
        deadline = time.monotonic() + 15
        while not proc.run(["ip", "netns", "exec", server_ns, "ss", "-H", "-uln", "sport = :67"],
                           timeout=10).stdout.strip():
            assert child.poll() is None, child.stderr.read().decode(errors="replace")
            assert time.monotonic() < deadline, "dnsmasq did not listen on udp/67"
            time.sleep(0.1)

    def probe(arch: int, *, ipxe: bool = False) -> dict:
        argv = ["ip", "netns", "exec", client_ns, sys.executable, PROBE, client_if, "10.77.0.2", "10.77.0.1",
                str(arch), *(["ipxe"] if ipxe else [])]
        return json.loads(proc.run(argv, timeout=60, cwd=REPO).stdout)

    try:
        for argv in setup:
            proc.run(argv, timeout=30)
        yield start_dnsmasq, probe
    finally:
        for child in running:
            proc.terminate(child, grace=5)
        for ns in (server_ns, client_ns):
            proc.run(["ip", "netns", "del", ns], timeout=30, check=False)


@pytest.mark.root
@pytest.mark.parametrize("mode", [[], ["--dhcp-range", "10.77.0.100,10.77.0.150"]], ids=["proxy", "full-dhcp"])
def test_each_client_asks_for_exactly_the_file_served(pxe_lan, mode):
    """The file names a real dnsmasq hands to PXE firmware (both UEFI x86-64 architectures, BIOS) and
    to iPXE are exactly what the TFTP server and the service serve: no '.0' layer suffix added."""
    start_dnsmasq, probe = pxe_lan
    for loader, uefi_file in (("shim", "shimx64.efi"), ("ipxe", "snponly.efi")):
        start_dnsmasq("--uefi-loader", loader, *mode)
        answers = {arch: probe(arch) for arch in (7, 9, 0)}
        for arch, expected in ((7, uefi_file), (9, uefi_file), (0, "undionly.kpxe")):
            assert (answers[arch]["boot_file"], answers[arch]["next_server"]) == (expected, "10.77.0.1"), \
                (loader, arch, answers[arch])
        for arch in (7, 0):  # iPXE chained from either loader
            assert probe(arch, ipxe=True)["boot_file"] == "http://10.77.0.1:8080/boot.ipxe", (loader, arch)
        if loader == "shim" and mode:  # UEFI HTTP boot, dnsmasq as the DHCP server: the Secure Boot image
            http_boot = probe(16)
            assert (http_boot["boot_file"], http_boot["offer"]["vendor_class"]) == (
                "http://10.77.0.1:8080/boot/secureboot.img", "HTTPClient"), http_boot
