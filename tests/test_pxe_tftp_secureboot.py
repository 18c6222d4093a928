"""The TFTP side of the Secure Boot path, through the real TFTP child process and real UDP on loopback:
signed shim and grub, the chain config, per-MAC GRUB configs rendered from the deployment store (on SQLite
and PostgreSQL), the installer's kernel and initramfs, refused names, and first-stage fetches attributed
to deployments through a neighbour table: on loopback (which has no entries in the kernel's) a file in
/proc/net/arp's format, and the kernel's own between two network namespaces (needs root)."""
from __future__ import annotations

import io
import os
import sys
import time
from pathlib import Path

import pytest

from fixtures_pxe import PXE_MAC, free_udp_port, write_signed_installer
from pxe import deployments, firststage_store, supervisor, tftp

ARP_HEADER = "IP address       HW type     Flags       HW address            Mask     Device\n"
OTHER_MAC = "52:54:00:ab:cd:ef"


def arp_line(address: str, mac: str, flags: str = "0x2", device: str = "lo") -> str:
    return f"{address:<17}0x1         {flags:<12}{mac:<22}*        {device}\n"


@pytest.fixture(scope="session")
def signed_installer(tmp_path_factory) -> Path:
    """A fake installer that carries (fake, small) signed loaders: shim and network grub beside its kernel."""
    return write_signed_installer(tmp_path_factory.mktemp("signed-installer"), kernel_repeats=400, initrd_bytes=200000)


class Tftp:
    """A running TFTP child (tftp.start) and a client for it."""

    def __init__(self, root: Path, port: int, neighbours: Path):
        self.root, self.port, self.neighbours = root, port, neighbours

    def fetch(self, name: str, **options) -> bytes:
        import tftpy
        out = io.BytesIO()
        tftpy.TftpClient("127.0.0.1", self.port, options=options).download(name, out, timeout=2, retries=2)
        return out.getvalue()

    def refused(self, name: str) -> bool:
        """True when the server answered with a TFTP error (not a timeout: a dead server refuses nothing)."""
        import tftpy
        try:
            self.fetch(name)
        except tftpy.TftpTimeout:
            raise AssertionError(f"no answer for {name!r}: is the TFTP server still running?") from None
        except tftpy.TftpFileNotFoundError:
            return True
        except tftpy.TftpException as exc:
            return "ERR" in str(exc)
        return False


def start_tftp(tmp_path: Path, db_url: str, installer: Path | None, public_url: str | None = "http://10.0.2.2:8080"):
    root = tmp_path / "tftp-root"
    root.mkdir(exist_ok=True)
    (root / "snponly.efi").write_bytes(b"MZ unsigned ipxe\n" * 100)
    (root / "undionly.kpxe").write_bytes(b"\x55\xaa" * 1000)
    neighbours = tmp_path / "arp"
    neighbours.write_text(ARP_HEADER)
    port = free_udp_port()
    child = tftp.start(root, "127.0.0.1", port, boot=tftp.BootOptions(
        db_url=db_url, installer=installer, public_url=public_url, http_scheme="http", http_host="127.0.0.1",
        http_port=8080, neighbours=neighbours))
    client = Tftp(root, port, neighbours)
    client.pid = child.pid
    return child, client


@pytest.fixture
def sb_env(pxe_env, signed_installer, tmp_path):
    """pxe_env (SQLite, then PostgreSQL) plus a TFTP child on the same database with the signed installer."""
    from metalstream import proc
    child, client = start_tftp(tmp_path, pxe_env.service.config.db_url, signed_installer)
    try:
        yield pxe_env, client
        assert child.poll() is None, "the TFTP child died during the test"
    finally:
        proc.terminate(child, grace=5)


def _row(env, dep_id: str):
    return deployments.get_row(env.service.engine, dep_id)


def _events(env, dep_id: str) -> list[str]:
    return [e["message"] for e in deployments.get(env.service.engine, dep_id)["events"]]


def _wait_for(predicate, timeout: float = 10.0):
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        value = predicate()
        if value:
            return value
        time.sleep(0.1)
    return predicate()


# --- files ---------------------------------------------------------------------------------------------

def test_signed_loaders_chain_config_and_installer_files_over_tftp(sb_env, signed_installer):
    _env, client = sb_env
    directory = signed_installer.parent
    assert client.fetch("shimx64.efi") == (directory / "shimx64.efi").read_bytes()
    assert client.fetch("/grubx64.efi", tsize=0, blksize=1024) == (directory / "grubx64.efi").read_bytes()
    assert client.fetch("installer/vmlinuz") == (directory / "vmlinuz").read_bytes()
    assert client.fetch("/installer/initrd.img", blksize=1428) == (directory / "initrd.img").read_bytes()
    assert client.fetch("snponly.efi") == (client.root / "snponly.efi").read_bytes()
    assert client.fetch("grub/grub.cfg", tsize=0).decode() == (
        "# metalstream: signed network GRUB (loaded by shim over TFTP): fetch this machine's own config, keyed by "
        "its MAC,\n# from the same TFTP server ($prefix is (tftp,SERVER)/grub)\n"
        "set timeout=0\n"
        "configfile $prefix/${net_default_mac}.cfg\n"
        'echo "metalstream: no boot configuration for ${net_default_mac} from this TFTP server; back to the '
        'firmware"\n'
        "sleep 5\n"
        "exit\n")
    # GRUB tries $prefix/x86_64-efi/grub.cfg first: it must not exist, so GRUB goes on to grub/grub.cfg
    assert client.refused("grub/x86_64-efi/grub.cfg")


def test_names_outside_the_served_set_are_refused(sb_env, tmp_path):
    _env, client = sb_env
    (tmp_path / "secret").write_text("not for you")
    (client.root / "link-out").symlink_to(tmp_path / "secret")
    for name in ("../secret", "link-out", "grub/../../secret", "installer/../../secret", "grub/../shimx64.efi",
                 "installer/../installer/vmlinuz", "grub\\grub.cfg", "..\\secret", "grub/not-a-mac.cfg",
                 "grub/52:54:00:12:34:5.cfg", "grub/52:54:00:12:34:56:78.cfg", "grub/52:54:00:12:34:56.cfg/x",
                 "grub/x86_64-efi/52:54:00:12:34:56.cfg", "grub/.cfg", "installer/kernel", "installer",
                 "grub/%2e%2e/secret", "grub/52:54:00:12:34:56.cfg\n", "grub/52:54:00:12:34:56.cfg "):
        assert client.refused(name), name


def test_request_names_are_cleaned_before_anything_is_opened():
    assert tftp.clean_name("/grub//52:54:00:12:34:56.cfg") == "grub/52:54:00:12:34:56.cfg"
    assert tftp.clean_name("shimx64.efi") == "shimx64.efi"
    for name in ("", "/", "..", "grub/../x", "./x", "x\x00.cfg", "grub\\grub.cfg", "x\n", "caf\u00e9", "x\ty"):
        assert tftp.clean_name(name) is None, name


def test_without_signed_loaders_the_secure_boot_files_are_not_served(pxe_env, pxe_installer, tmp_path):
    from metalstream import proc
    child, client = start_tftp(tmp_path, pxe_env.service.config.db_url, pxe_installer)
    try:
        assert client.refused("shimx64.efi") and client.refused("grubx64.efi")
        assert client.fetch("installer/vmlinuz") == (pxe_installer.parent / "vmlinuz").read_bytes()
        assert client.fetch("undionly.kpxe") == (client.root / "undionly.kpxe").read_bytes()
    finally:
        proc.terminate(child, grace=5)


# --- per-MAC GRUB configs -----------------------------------------------------------------------------

def test_pending_deployment_gets_the_installer_over_tftp_with_a_working_token(sb_env):
    env, client = sb_env
    dep = env.pending()
    cfg = client.fetch(f"grub/{PXE_MAC}.cfg").decode()
    token = cfg.split("metalstream.token=")[1].split()[0]
    assert cfg == (
        f"# metalstream deployment {dep['id']}: install tiny on {PXE_MAC} (signed shim + grub over TFTP)\n"
        "set timeout=0\n"
        'menuentry "metalstream: install tiny" {\n'
        "    linux /installer/vmlinuz metalstream.server=http://10.0.2.2:8080 "
        f"metalstream.token={token} metalstream.deployment={dep['id']} console=ttyS0,115200\n"
        "    initrd /installer/initrd.img\n"
        "}\n")
    row = _row(env, dep["id"])
    assert row["state"] == "booting" and row["boot_path"] == "shim-grub"
    assert _events(env, dep["id"])[-1] == "installer boot script served (boot: signed shim + grub over TFTP)"
    # booting again over TFTP (the name spelled another way) reissues the token; the first one is void
    again = client.fetch(f"grub/{PXE_MAC.upper().replace(':', '-')}.cfg").decode()
    second = again.split("metalstream.token=")[1].split()[0]
    assert second != token
    assert env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"}).status_code == 401
    plan = env.client.get("/api/v1/agent/plan", headers={"Authorization": f"Bearer {second}"})
    assert plan.status_code == 200, plan.get_json()
    assert "reissued" in _events(env, dep["id"])[-2]


def test_unknown_or_finished_macs_get_their_local_disk_over_tftp(sb_env):
    env, client = sb_env
    local = client.fetch(f"grub/{OTHER_MAC}.cfg").decode()
    assert local.startswith(f"# metalstream: no install pending for {OTHER_MAC}; boot this machine's own disk")
    assert "configfile /boot/grub/grub.cfg" in local and "metalstream.token" not in local
    assert "search --no-floppy --set=root --file /boot/grub/grub.cfg" in local  # nothing installed is known for it
    dep = env.pending()
    assert env.client.delete(f"/api/v1/deployments/{dep['id']}", headers=env.admin).status_code == 200
    cfg = client.fetch(f"grub/{PXE_MAC.replace(':', '')}.cfg").decode()
    assert cfg.endswith("\nexit\n") and "metalstream.token" not in cfg
    assert _row(env, dep["id"])["boot_path"] is None


def test_without_an_installer_a_pending_machine_is_told_so_on_its_console(pxe_env, tmp_path):
    from metalstream import proc
    dep = pxe_env.pending()
    child, client = start_tftp(tmp_path, pxe_env.service.config.db_url, None)
    try:
        cfg = client.fetch(f"grub/{PXE_MAC}.cfg").decode()
        assert client.refused("shimx64.efi") and client.refused("installer/vmlinuz")
    finally:
        proc.terminate(child, grace=5)
    assert 'echo "metalstream: a deployment is pending for 52:54:00:12:34:56 but no installer is configured' in cfg
    assert cfg.endswith("sleep 30\nexit\n") and "metalstream.token" not in cfg
    assert _row(pxe_env, dep["id"])["state"] == "pending"


def test_the_http_boot_scripts_record_their_boot_path(pxe_env):
    first = pxe_env.pending()
    pxe_env.boot_token()
    assert _row(pxe_env, first["id"])["boot_path"] == "ipxe"
    assert "installer boot script served (boot: iPXE over HTTP)" in _events(pxe_env, first["id"])
    second = pxe_env.pending(OTHER_MAC)
    assert "metalstream.token=" in pxe_env.client.get(f"/boot/grub/{OTHER_MAC}.cfg").get_data(as_text=True)
    assert _row(pxe_env, second["id"])["boot_path"] == "grub-http"
    assert "installer boot script served (boot: GRUB over HTTP)" in _events(pxe_env, second["id"])


# --- first-stage attribution --------------------------------------------------------------------------

def test_a_first_stage_fetch_is_recorded_on_the_macs_deployment_and_failed_when_silent(sb_env):
    env, client = sb_env
    dep = env.pending()
    client.neighbours.write_text(ARP_HEADER + arp_line("10.0.0.9", OTHER_MAC, device="eth0")
                                 + arp_line("127.0.0.1", PXE_MAC))
    before = time.time()
    client.fetch("snponly.efi")
    client.fetch("snponly.efi")  # firmware asks twice (size, then the file): one event
    row = _wait_for(lambda: (r := _row(env, dep["id"]))["first_stage"] and r)
    stage = row["first_stage"]
    assert stage["loader"] == "snponly.efi" and stage["client"] == "127.0.0.1" and stage["mac"] == PXE_MAC
    assert before <= stage["at"] <= time.time() and row["last_seen_at"] == pytest.approx(stage["at"])
    assert row["state"] == "pending"
    time.sleep(0.5)
    fetched = [m for m in _events(env, dep["id"]) if "fetched" in m]
    assert fetched == ["firmware fetched snponly.efi (iPXE for UEFI, unsigned) over TFTP from 127.0.0.1"]
    timeout = env.service.config.agent_timeout
    supervisor.tick(env.service, now=stage["at"] + timeout - 1)
    assert _row(env, dep["id"])["state"] == "pending"
    supervisor.tick(env.service, now=stage["at"] + timeout + 1)
    shown = deployments.get(env.service.engine, dep["id"])
    assert shown["state"] == "failed" and "Secure Boot on refuses unsigned loaders" in shown["error"]
    assert "snponly.efi (unsigned iPXE)" in shown["error"]
    assert shown["events"][-1]["message"] == shown["error"]


def test_a_fetch_then_the_boot_config_is_not_failed_by_the_first_stage_sweep(sb_env):
    env, client = sb_env
    dep = env.pending()
    client.neighbours.write_text(ARP_HEADER + arp_line("127.0.0.1", PXE_MAC))
    client.fetch("shimx64.efi")
    assert _wait_for(lambda: _row(env, dep["id"])["first_stage"])
    client.fetch("grubx64.efi")
    assert _wait_for(lambda: _row(env, dep["id"])["first_stage"]["loader"] == "grubx64.efi")
    assert "shim fetched grubx64.efi (signed network GRUB) over TFTP from 127.0.0.1" in _events(env, dep["id"])
    client.fetch(f"grub/{PXE_MAC}.cfg")
    row = _row(env, dep["id"])
    assert row["state"] == "booting" and row["boot_path"] == "shim-grub"
    at = row["first_stage"]["at"]
    assert firststage_store.reap_silent_after_first_stage(env.service.engine, 60, now=at + 3600) == []
    assert _row(env, dep["id"])["state"] == "booting"


def test_a_fetch_by_an_address_without_a_neighbour_entry_is_only_logged(pxe_env, caplog):
    from pxe.tftpboot import FirstStageRecorder
    dep = pxe_env.pending()
    recorder = FirstStageRecorder(pxe_env.service.engine, lambda: {"10.0.0.9": PXE_MAC}, delays=(0.0, 0.05))
    with caplog.at_level("INFO", logger="metalstream.pxe.tftp"):
        assert recorder.record("snponly.efi", "10.0.0.8", time.time()) is None
    assert "10.0.0.8 fetched snponly.efi: no MAC for it in the neighbour table" in caplog.text
    assert _row(pxe_env, dep["id"])["first_stage"] is None
    assert recorder.record("undionly.kpxe", "10.0.0.9", time.time()) == dep["id"]
    unknown = FirstStageRecorder(pxe_env.service.engine, lambda: {"10.0.0.7": OTHER_MAC}, delays=(0.0,))
    assert unknown.record("snponly.efi", "10.0.0.7", time.time()) is None


def test_the_tftp_child_stops_early_with_a_bad_installer_manifest(tmp_path):
    from metalstream.errors import OperationFailed
    bad = tmp_path / "installer.json"
    bad.write_text('{"format": "metalstream-installer/1"}')
    with pytest.raises(OperationFailed, match="cannot serve the boot files: .*installer.json"):
        start_tftp(tmp_path, f"sqlite:///{tmp_path / 'x.db'}", bad)


def test_the_database_url_is_not_on_the_childs_command_line(sb_env):
    env, client = sb_env
    cmdline = Path(f"/proc/{client.pid}/cmdline").read_bytes().split(b"\0")
    assert b"pxe.tftp" in cmdline and env.service.config.db_url.encode() not in b" ".join(cmdline)


# --- metalstream serve --------------------------------------------------------------------------------

def test_serve_offers_the_signed_path_over_its_tftp_and_says_so(tmp_path, signed_installer, pxe_image_manifest):
    """The real `metalstream serve --tftp`: start lines, then a deployment made over HTTP gets the installer
    when its machine asks the TFTP child for grub/MAC.cfg, with the agent's URL being the public URL."""
    import requests

    from fixtures_pxe import cli_admin_token
    from lab.service_proc import ServiceProcess
    from metalstream import proc
    data_dir = tmp_path / "data"
    proc.run([sys.executable, "-m", "metalstream", "image", "add", "--create", "--data-dir", str(data_dir), pxe_image_manifest])
    admin = cli_admin_token(data_dir)
    port = free_udp_port()
    service = ServiceProcess(data_dir, installer=signed_installer, options=["--tftp", str(port)])
    with service:
        log = service.log_path.read_text()
        assert "metalstream: boot path iPXE over HTTP:" in log
        assert f"metalstream: boot path signed shim + grub over TFTP (Secure Boot): udp/{port} serves shimx64.efi" in log
        client = Tftp(data_dir / "tftp", port, Path("/proc/net/arp"))
        assert client.fetch("shimx64.efi") == (signed_installer.parent / "shimx64.efi").read_bytes()
        dep = requests.post(f"{service.url}/api/v1/deployments", json={"mac": PXE_MAC, "image": "tiny"},
                            headers=admin, timeout=10).json()
        cfg = client.fetch(f"grub/{PXE_MAC}.cfg").decode()
        assert f"metalstream.server={service.guest_url} " in cfg and f"metalstream.deployment={dep['id']}" in cfg
        token = cfg.split("metalstream.token=")[1].split()[0]
        plan = requests.get(f"{service.url}/api/v1/agent/plan", headers={"Authorization": f"Bearer {token}"},
                            timeout=10)
        assert plan.status_code == 200
        shown = requests.get(f"{service.url}/api/v1/deployments/{dep['id']}", headers=admin, timeout=10).json()
        assert "installer boot script served (boot: signed shim + grub over TFTP)" in [
            e["message"] for e in shown["events"]]


@pytest.mark.parametrize("tftp_on", [True, False])
def test_serve_says_when_the_installer_has_no_signed_loaders(tmp_path, pxe_installer, signed_installer, tftp_on):
    from lab.service_proc import ServiceProcess
    installer = pxe_installer if tftp_on else signed_installer
    options = ["--tftp", str(free_udp_port())] if tftp_on else []
    with ServiceProcess(tmp_path / "data", installer=installer, options=options) as service:
        log = service.log_path.read_text()
    if tftp_on:
        assert "metalstream: no signed shim + grub path (Secure Boot): the installer carries no signed shim and grub" \
            in log
    else:
        assert "the installer carries signed shim and grub but TFTP is off (add --tftp 69)" in log
    assert "boot path signed shim + grub over TFTP" not in log


def test_the_agents_url_over_tftp_is_the_public_url_else_the_listener_seen_from_the_client():
    from pxe.tftpboot import ServiceAddress
    assert ServiceAddress("https://ms.example:8443/", "http", "0.0.0.0", 8080).for_client("127.0.0.1") == \
        "https://ms.example:8443"
    assert ServiceAddress(None, "http", "0.0.0.0", 8080).for_client("127.0.0.1") == "http://127.0.0.1:8080"
    assert ServiceAddress(None, "https", "127.0.0.5", 8443).for_client("127.0.0.1") == "https://127.0.0.5:8443"
    # --bind [::]:8080: the host arrives with its brackets
    assert ServiceAddress(None, "http", "[::]", 8080).for_client("127.0.0.1") == "http://127.0.0.1:8080"


@pytest.mark.parametrize("bind", ["127.0.0.1:8080", "[::1]:8080", "localhost:8080"])
def test_serve_refuses_a_loopback_agent_url_for_the_signed_path(tmp_path, signed_installer, bind):
    from metalstream import proc
    result = proc.run([sys.executable, "-m", "metalstream", "serve", "--data-dir", str(tmp_path / "data"),
                       "--bind", bind, "--installer", signed_installer, "--tftp", str(free_udp_port())],
                      timeout=60, check=False)
    assert result.returncode == 2
    assert "--public-url" in result.stderr and "machines cannot reach this host's loopback address" in result.stderr
    assert not (tmp_path / "data").exists() or not any((tmp_path / "data").glob("*.db"))  # refused before the database


# --- through the kernel's neighbour table -------------------------------------------------------------

@pytest.fixture
def two_namespaces():
    """Two network namespaces joined by a veth pair: the TFTP server's side (10.78.0.1/24) and a client side
    (10.78.0.2/24) whose interface has PXE_MAC, playing the firmware. Yields (server_ns, client_ns)."""
    from conftest import require_root, require_tools
    from metalstream import proc
    require_root()
    require_tools("ip")
    tag = f"{os.getpid() % 100000}"
    server_ns, client_ns = f"msb1{tag}s", f"msb1{tag}c"
    server_if, client_if = f"msb1{tag}a", f"msb1{tag}b"
    setup = [["ip", "netns", "add", server_ns], ["ip", "netns", "add", client_ns],
             ["ip", "link", "add", server_if, "type", "veth", "peer", "name", client_if],
             ["ip", "link", "set", server_if, "netns", server_ns], ["ip", "link", "set", client_if, "netns", client_ns],
             ["ip", "-n", client_ns, "link", "set", client_if, "address", PXE_MAC],
             ["ip", "-n", server_ns, "addr", "add", "10.78.0.1/24", "dev", server_if],
             ["ip", "-n", client_ns, "addr", "add", "10.78.0.2/24", "dev", client_if],
             ["ip", "-n", server_ns, "link", "set", server_if, "up"],
             ["ip", "-n", client_ns, "link", "set", client_if, "up"]]
    try:
        for argv in setup:
            proc.run(argv, timeout=30)
        yield server_ns, client_ns
    finally:
        for ns in (server_ns, client_ns):
            proc.run(["ip", "netns", "del", ns], timeout=30, check=False)


@pytest.mark.root
def test_a_first_stage_fetch_is_attributed_through_the_kernels_neighbour_table(
        two_namespaces, tmp_path, pxe_installer, pxe_image_manifest):
    """The TFTP child in its own namespace reads the kernel's /proc/net/arp there: the fetch from 10.78.0.2
    is stored on the deployment of that interface's MAC."""
    import subprocess

    from conftest import REPO
    from metalstream import proc
    from pxe import db, imagestore
    server_ns, client_ns = two_namespaces
    db_url = f"sqlite:///{tmp_path / 'ms.db'}"
    engine = db.make_engine(db_url)
    (tmp_path / "images").mkdir()
    imagestore.register(engine, tmp_path / "images", pxe_image_manifest)
    dep, _ = deployments.create(engine, {"mac": PXE_MAC, "image": "tiny"}, None, None)
    root = tmp_path / "tftp-root"
    root.mkdir()
    (root / "snponly.efi").write_bytes(b"MZ unsigned ipxe\n" * 100)
    server = proc.spawn(["ip", "netns", "exec", server_ns, sys.executable, "-m", "pxe.tftp", root, "10.78.0.1", "69",
                         "--http", "http://10.78.0.1:8080", "--installer", pxe_installer],
                        stdout=subprocess.PIPE, stderr=None, env={tftp.DB_URL_ENV: db_url}, cwd=REPO,
                        die_with_parent=True)
    try:
        assert tftp._status_line(server, 30) == tftp.READY
        fetch = ("import tftpy; tftpy.TftpClient('10.78.0.1', 69).download('snponly.efi', "
                 f"{str(tmp_path / 'got')!r}, timeout=2, retries=2)")
        proc.run(["ip", "netns", "exec", client_ns, sys.executable, "-c", fetch], timeout=60, cwd=REPO)
        assert (tmp_path / "got").read_bytes() == (root / "snponly.efi").read_bytes()
        row = _wait_for(lambda: (r := deployments.get_row(engine, dep["id"]))["first_stage"] and r)
        assert row["first_stage"]["mac"] == PXE_MAC and row["first_stage"]["client"] == "10.78.0.2"
        assert row["first_stage"]["loader"] == "snponly.efi" and row["state"] == "pending"
        assert "firmware fetched snponly.efi (iPXE for UEFI, unsigned) over TFTP from 10.78.0.2" in [
            e["message"] for e in deployments.get(engine, dep["id"])["events"]]
    finally:
        proc.terminate(server, grace=5)
        engine.dispose()
