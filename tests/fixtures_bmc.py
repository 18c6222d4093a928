"""Fixtures for tests that put lab VMs behind BMC emulators: libvirtd for the module, and a small powered-off
libvirt domain that is always undefined afterwards."""
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


@pytest.fixture
def domain(libvirt_daemon, tmp_path, request):
    """A powered-off BIOS domain with a 1 GiB disk. Nothing serves its boot URL: the firmware fails to fetch it
    and goes on, so the domain just runs once powered on."""
    from lab.libvirt import LibvirtVm
    from lab.vm import VmSpec, create_disk

    prefix = request.module.__name__.removeprefix("test_").replace("_", "-")
    spec = VmSpec(domain_name(prefix), firmware="bios", boot_url="http://10.0.2.2:9/boot.ipxe",
                  lab_dir=tmp_path / "lab", disk_size_gib=1, memory_mib=256, cpus=1)
    create_disk(spec)
    with LibvirtVm(spec) as vm:
        assert vm.state() == "shut off"
        yield vm
