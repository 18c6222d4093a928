"""What the install does to be fast keeps its promise: direct-I/O loop devices, a host key generator at the
lowest priority, and no `requests` import for a local image (bench/README.md, "Where the time goes")."""
from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from deployer.blockdev import loop_device
from deployer.configure import HostKeyForge

from conftest import require_root, require_tools

REPO = Path(__file__).resolve().parent.parent
MIB = 1 << 20


def _loop_attribute(device: str, name: str) -> str:
    return Path(f"/sys/block/{Path(device).name}/loop/{name}").read_text().strip()


@pytest.mark.root
def test_loop_device_uses_direct_io_over_the_given_byte_range(tmp_path):
    require_root()
    require_tools("losetup")
    image = tmp_path / "disk.img"
    with open(image, "wb") as handle:
        handle.truncate(64 * MIB)
    with loop_device(image, offset=MIB, size=32 * MIB) as device:
        assert _loop_attribute(device, "dio") == "1"
        assert _loop_attribute(device, "offset") == str(MIB)
        assert _loop_attribute(device, "sizelimit") == str(32 * MIB)
        assert _loop_attribute(device, "backing_file") == str(image)
    listed = subprocess.run(["losetup", "--associated", str(image)], capture_output=True, text=True).stdout
    assert listed == ""


def _nice_of(pid: int) -> int:
    """Field 19 of /proc/PID/stat (after the parenthesised command name), kept while the child is a zombie."""
    stat = Path(f"/proc/{pid}/stat").read_text()
    return int(stat[stat.rindex(")") + 2:].split()[16])


def test_host_keys_are_generated_at_the_lowest_priority(tmp_path):
    require_tools("ssh-keygen")
    with HostKeyForge(tmp_path / "keys") as forge:
        assert _nice_of(forge.process.pid) == 19  # not waited for yet: a finished child is still there
        names = {key.name for key in forge.keys()}
    assert {"ssh_host_rsa_key", "ssh_host_ecdsa_key", "ssh_host_ed25519_key"} <= names
    assert not (tmp_path / "keys").exists()


def test_a_local_image_is_streamed_without_importing_requests(tmp_path):
    image = tmp_path / "image.bin"
    image.write_bytes(b"x" * 100_000)
    probe = ("import sys\nimport deployer.install\nfrom deployer.download import open_chunks\n"
             f"data = b''.join(open_chunks({str(image)!r}))\n"
             "print(len(data), 'requests' in sys.modules)\n")
    result = subprocess.run([sys.executable, "-c", probe], cwd=REPO, capture_output=True, text=True, check=True)
    assert result.stdout.split() == ["100000", "False"]
    http = subprocess.run([sys.executable, "-c", "import sys\nfrom deployer.download import open_chunks\n"
                           "open_chunks('http://127.0.0.1:9/image.tar.zst')\nprint('requests' in sys.modules)"],
                          cwd=REPO, capture_output=True, text=True, check=True)
    assert http.stdout.strip() == "True"
