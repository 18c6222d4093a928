"""qemu's own iPXE (TCG) runs the service's real boot scripts: chain by MAC, installer for a pending
deployment, local disk once installed (no install loop)."""
from __future__ import annotations

import re
import subprocess
import time

import pytest
import requests

from conftest import require_tools

MAC = "52:54:00:aa:00:10"


def _boot_until(server, tmp_path, name: str, pattern: str, timeout: float = 120) -> str:
    """PXE-boot a diskless VM at the server until its access log matches `pattern`; return the new log lines."""
    start = server.log_path.stat().st_size
    serial = tmp_path / f"{name}.serial"
    vm = subprocess.Popen([
        "qemu-system-x86_64", "-accel", "tcg", "-m", "256", "-nographic", "-no-reboot", "-boot", "n",
        "-netdev", f"user,id=n0,bootfile={server.url.replace('127.0.0.1', '10.0.2.2')}/boot.ipxe",
        "-device", f"virtio-net-pci,netdev=n0,mac={MAC}", "-serial", f"file:{serial}", "-monitor", "none",
        "-display", "none"], stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    try:
        deadline = time.monotonic() + timeout
        while True:
            with open(server.log_path, "rb") as f:
                f.seek(start)
                new = f.read().decode(errors="replace")
            if re.search(pattern, new):
                return new
            if vm.poll() is not None or time.monotonic() > deadline:
                pytest.fail(f"VM never requested {pattern!r} (qemu exit {vm.poll()}): "
                            f"{vm.stderr.read().decode() if vm.poll() is not None else ''} log: {new[-2000:]}")
            time.sleep(0.5)
    finally:
        if vm.poll() is None:
            vm.kill()
        vm.wait()
        vm.stderr.close()


@pytest.mark.e2e
def test_ipxe_in_qemu_follows_the_scripts(pxe_server, tmp_path):
    require_tools("qemu-system-x86_64")
    dep = requests.post(f"{pxe_server.url}/api/v1/deployments", json={"mac": MAC, "image": "small"},
                        headers=pxe_server.admin, timeout=10).json()
    log = _boot_until(pxe_server, tmp_path, "install", r"GET /installer/initrd\.img")
    assert re.search(r'"GET /boot\.ipxe HTTP/1\.[01]" 200', log)
    assert re.search(r'"GET /boot/52-54-00-aa-00-10\.ipxe HTTP/1\.[01]" 200', log)  # ${netX/mac:hexhyp} worked
    assert re.search(r'"GET /installer/vmlinuz HTTP/1\.[01]" 200', log)
    shown = requests.get(f"{pxe_server.url}/api/v1/deployments/{dep['id']}", headers=pxe_server.admin,
                         timeout=10).json()
    assert shown["state"] in ("booting", "failed")  # failed only if the 8 s silence timeout already passed

    # the agent reports success (as the real one would from the installer); the next PXE boot is local
    from sqlalchemy import create_engine, update

    from pxe import db
    if shown["state"] == "booting":
        script = requests.get(f"{pxe_server.url}/boot/{MAC}.ipxe", timeout=10).text
        token = script.split("metalstream.token=")[1].split()[0]
        result = requests.post(f"{pxe_server.url}/api/v1/agent/result", timeout=10,
                               headers={"Authorization": f"Bearer {token}"},
                               json={"success": True, "phase": "finish", "log": "", "root_uuid": "abcd-1234"})
        assert result.status_code == 200, result.text
    else:  # make it installed directly, the way a successful result would have
        engine = create_engine(f"sqlite:///{pxe_server.data_dir / 'metalstream.db'}")
        with engine.begin() as conn:
            conn.execute(update(db.deployments).where(db.deployments.c.id == dep["id"])
                         .values(state="installed", open_mac=MAC, token_hash=None))
        engine.dispose()
    log = _boot_until(pxe_server, tmp_path, "local", r'"GET /boot/52-54-00-aa-00-10\.ipxe HTTP/1\.[01]" 200')
    time.sleep(3)  # give iPXE time to act on the local-boot script (it must not fetch the installer)
    with open(pxe_server.log_path) as f:
        tail = f.read()[-5000:]
    after = tail[tail.rindex("GET /boot/52-54-00-aa-00-10.ipxe"):]
    assert "/installer/" not in after
