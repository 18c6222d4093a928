"""`metalstream serve` and the processes it owns: the TFTP child dies with it, a TFTP child that cannot
start stops the service, and no gunicorn state is shared between services (real processes, loopback)."""
from __future__ import annotations

import os
import signal
import socket
import time
from pathlib import Path

import pytest
import requests

from fixtures_pxe import free_udp_port
from lab.service_proc import ServiceProcess
from metalstream.errors import OperationFailed


def _cmdline(pid: int) -> list[str]:
    try:
        return Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace").split("\0")
    except FileNotFoundError:
        return []


def _alive(pid: int) -> bool:
    """Running, not merely a zombie (an orphan's zombie may linger: PID 1 here need not reap it)."""
    try:
        state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
    except FileNotFoundError:
        return False
    return state not in ("Z", "X")


def _wait_gone(pid: int, timeout: float = 5) -> bool:
    deadline = time.monotonic() + timeout
    while _alive(pid):
        if time.monotonic() > deadline:
            return False
        time.sleep(0.1)
    return True


def _kill_leftovers(pids: list[int]) -> None:
    for pid in pids:
        if _alive(pid):
            os.kill(pid, signal.SIGKILL)


def _udp_port_free(port: int) -> bool:
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as probe:
        try:
            probe.bind(("127.0.0.1", port))
        except OSError:
            return False
    return True


def test_tftp_child_dies_with_a_killed_service(tmp_path, pxe_installer):
    port = free_udp_port()
    service = ServiceProcess(tmp_path / "data", installer=pxe_installer, options=["--tftp", str(port)])
    with service:
        children = service.pids()[1:]
        [tftp] = [pid for pid in children if "pxe.tftp" in _cmdline(pid)]
        try:
            service.process.send_signal(signal.SIGKILL)
            service.process.wait(10)
            assert _wait_gone(tftp), f"TFTP child {tftp} outlived its killed parent"
            assert _udp_port_free(port)
        finally:
            _kill_leftovers(children)


def test_serve_fails_loudly_when_its_tftp_port_is_taken(tmp_path, pxe_installer):
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as taken:
        taken.bind(("127.0.0.1", 0))
        port = taken.getsockname()[1]
        service = ServiceProcess(tmp_path / "data", installer=pxe_installer, options=["--tftp", str(port)])
        try:
            with pytest.raises(OperationFailed, match="exited with status 1"):
                service.start(timeout=30)
        finally:
            service.stop()
    log = service.log_path.read_text()
    assert f"metalstream: error: TFTP on udp/{port} (127.0.0.1) could not start: Address already in use" in log
    assert "serving on http" not in log
    with pytest.raises(requests.ConnectionError):
        requests.get(f"{service.url}/boot.ipxe", timeout=2)


def test_services_share_no_gunicorn_control_socket(tmp_path, pxe_installer, monkeypatch):
    home = tmp_path / "home"
    home.mkdir()
    monkeypatch.setenv("HOME", str(home))  # gunicorn's default control socket is $HOME/.gunicorn/gunicorn.ctl
    monkeypatch.delenv("XDG_RUNTIME_DIR", raising=False)
    first = ServiceProcess(tmp_path / "first", installer=pxe_installer)
    second = ServiceProcess(tmp_path / "second", installer=pxe_installer)
    with first, second:
        for service in (first, second):
            assert requests.get(f"{service.url}/boot.ipxe", timeout=5).status_code == 200
        assert not (home / ".gunicorn").exists()
    assert list(home.iterdir()) == []
