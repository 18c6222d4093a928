"""The VM lab: qemu command lines, and real UEFI/BIOS network boots fetching the iPXE script over HTTP."""
from __future__ import annotations

import http.server
import threading
from pathlib import Path

import pytest

from lab.vm import LabVm, VmSpec, create_disk, mac_for, qemu_argv
from metalstream.errors import BadInput

from conftest import require_tools


def test_mac_is_stable_and_locally_administered():
    assert mac_for("node1") == mac_for("node1")
    assert mac_for("node1") != mac_for("node2")
    assert mac_for("node1").startswith("52:54:00:")


def test_qemu_argv_uefi_boots_network_first_then_disk(tmp_path):
    spec = VmSpec("n1", firmware="uefi", boot_url="http://10.0.2.2:8080/boot.ipxe", ssh_port=2222, lab_dir=tmp_path)
    argv = qemu_argv(spec)
    assert argv[:2] == ["qemu-system-x86_64", "-name"]
    assert argv[argv.index("-accel") + 1] == "tcg"
    assert "user,id=n0,bootfile=http://10.0.2.2:8080/boot.ipxe,hostfwd=tcp:127.0.0.1:2222-:22" in argv
    assert f"virtio-net-pci,netdev=n0,mac={spec.mac},bootindex=1" in argv
    assert "virtio-blk-pci,drive=disk0,serial=ms-n1,bootindex=2" in argv
    assert f"if=pflash,format=raw,file={tmp_path}/n1/OVMF_VARS.fd" in argv


def test_qemu_argv_bios_has_no_pflash(tmp_path):
    argv = qemu_argv(VmSpec("n1", firmware="bios", lab_dir=tmp_path))
    assert not any("pflash" in a for a in argv)


def test_qemu_argv_secure_boot_runs_enforcing_ovmf_on_a_tap_in_the_namespace(tmp_path):
    spec = VmSpec("n1", firmware="uefi-secureboot", tap="mstap0", netns="mssb1", lab_dir=tmp_path)
    argv = qemu_argv(spec)
    assert argv[:5] == ["ip", "netns", "exec", "mssb1", "qemu-system-x86_64"]
    assert argv[argv.index("-machine") + 1] == "q35,smm=on"  # OVMF's Secure Boot build needs SMM
    assert "driver=cfi.pflash01,property=secure,value=on" in argv
    assert "if=pflash,format=raw,readonly=on,file=/usr/share/OVMF/OVMF_CODE_4M.secboot.fd" in argv
    assert "tap,id=n0,ifname=mstap0,script=no,downscript=no" in argv
    assert f"virtio-net-pci,netdev=n0,mac={spec.mac},bootindex=1,romfile=" in argv  # firmware PXE, no iPXE ROM
    assert "name=opt/org.tianocore/IPv4PXESupport,string=no" not in argv
    spec.boot_first = "disk"
    argv = qemu_argv(spec)
    assert f"virtio-net-pci,netdev=n0,mac={spec.mac},bootindex=2,romfile=" in argv
    assert "virtio-blk-pci,drive=disk0,serial=ms-n1,bootindex=1" in argv


def test_secure_boot_vm_gets_variables_with_microsofts_keys(tmp_path):
    spec = VmSpec("n1", firmware="uefi-secureboot", tap="mstap0", lab_dir=tmp_path, disk_size_gib=1)
    create_disk(spec)
    assert spec.vars_file.read_bytes() == Path("/usr/share/OVMF/OVMF_VARS_4M.ms.fd").read_bytes()


@pytest.mark.parametrize("field,kwargs", [
    ("name", {"name": "Bad Name"}), ("firmware", {"name": "ok", "firmware": "coreboot"}),
    ("accel", {"name": "ok", "accel": "hvf"}),
    ("tap", {"name": "ok", "tap": "mstap0", "ssh_port": 2222}), ("boot_first", {"name": "ok", "boot_first": "usb"}),
])
def test_bad_vm_settings_are_rejected_with_the_field(field, kwargs):
    with pytest.raises(BadInput) as err:
        VmSpec(**kwargs)
    assert err.value.location == field


class _ScriptHandler(http.server.SimpleHTTPRequestHandler):
    requests: list[str] = []

    def log_message(self, *args):  # keep test output quiet; requests are recorded instead
        pass

    def do_GET(self):
        type(self).requests.append(self.path)
        body = b"#!ipxe\necho lab test\nshell\n"
        self.send_response(200)
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)


@pytest.mark.root
@pytest.mark.e2e
@pytest.mark.parametrize("firmware", ["uefi", "bios"])
def test_vm_network_boots_and_fetches_the_ipxe_script(tmp_path, firmware):
    require_tools("qemu-system-x86_64")
    handler = type("Handler", (_ScriptHandler,), {"requests": []})
    server = http.server.ThreadingHTTPServer(("127.0.0.1", 0), handler)
    thread = threading.Thread(target=server.serve_forever, daemon=True)
    thread.start()
    port = server.server_address[1]
    spec = VmSpec("pxe-" + firmware, firmware=firmware, boot_url=f"http://10.0.2.2:{port}/boot.ipxe",
                  disk_size_gib=1, memory_mib=512, lab_dir=tmp_path)
    create_disk(spec)
    try:
        with LabVm(spec) as vm:
            for _ in range(180):
                if handler.requests or not vm.is_running():
                    break
                threading.Event().wait(1)
            assert vm.is_running(), vm.serial_text()[-2000:]
    finally:
        server.shutdown()
        server.server_close()
    assert handler.requests == ["/boot.ipxe"]
    assert not Path(spec.pid_file).exists()


def test_extra_disks_and_a_typeable_console(tmp_path):
    extra = [tmp_path / "b.img", tmp_path / "c.img"]
    spec = VmSpec("storage", lab_dir=tmp_path, extra_disks=extra, serial_input=True)
    argv = qemu_argv(spec)
    drives = [argv[i + 1] for i, a in enumerate(argv) if a == "-drive" and "if=none" in argv[i + 1]]
    assert [d.split(",")[0] for d in drives] == [f"file={spec.disk}", f"file={extra[0]}", f"file={extra[1]}"]
    devices = [argv[i + 1] for i, a in enumerate(argv) if a == "-device" and a and "virtio-blk" in argv[i + 1]]
    assert [d.rsplit("bootindex=", 1)[1] for d in devices] == ["2", "3", "4"]
    assert "serial=ms-storage-d2" in devices[2]
    chardev = argv[argv.index("-chardev") + 1]
    assert f"path={spec.serial_socket}" in chardev and f"logfile={spec.serial_log}" in chardev
    assert argv[argv.index("-serial") + 1] == "chardev:console"
    plain = qemu_argv(VmSpec("plain", lab_dir=tmp_path))
    assert "-chardev" not in plain and plain[plain.index("-serial") + 1].startswith("file:")
