"""Fixtures for tests that put lab VMs behind BMC emulators (tests/test_lab_bmc.py, tests/test_e2e_power.py):
libvirtd for the module, and a powered-off libvirt domain that is always undefined afterwards.
Imported by those modules (not registered in conftest): only they need libvirt."""
from __future__ import annotations

import os

import pytest


@pytest.fixture(scope="module")
def libvirt_daemon():
    """libvirtd answering on qemu:///system (started here unless one runs; stopped by PID if started here)."""
    from conftest import require_root, require_tools
    from lab.bmc import BMC_VENV
    from lab.libvirt import LibvirtDaemon

    require_root()
    require_tools("libvirtd", "virtlogd", "virsh", "ipmitool", "qemu-system-x86_64")
    if not (BMC_VENV / "bin" / "sushy-emulator").exists():
        pytest.fail(f"{BMC_VENV} lacks the BMC emulators: run `bash .ci/setup`")
    with LibvirtDaemon() as daemon:
        yield daemon


def domain_name(prefix: str) -> str:
    """A domain name no other concurrent run uses (libvirt domains are host-wide)."""
    return f"{prefix}-{os.getpid() % 100000}"
