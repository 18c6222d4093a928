"""`metalstream install` command line: sizes, bad input, and --ssh wired through agent-stream's remote module."""
from __future__ import annotations

import json

import pytest

from deployer.install_cli import parse_size
from metalstream.contracts.plan import ImageRef, Plan
from metalstream.errors import BadInput

from conftest import run_cli
from fixtures_images import write_image_manifest

GIB = 1 << 30


@pytest.mark.parametrize("text, size", [("4G", 4 * GIB), ("4GiB", 4 * GIB), ("512M", 512 << 20),
                                        ("1.5G", 3 * GIB // 2), ("1073741824", GIB), ("2t", 2 << 40)])
def test_parse_size(text, size):
    assert parse_size(text) == size


@pytest.mark.parametrize("text", ["four", "4X", "-1G", "10"])
def test_parse_size_rejects(text):
    with pytest.raises(BadInput) as info:
        parse_size(text)
    assert info.value.location == "--size"


def test_bad_plan_file_is_exit_2_with_the_field(tmp_path):
    plan = tmp_path / "plan.json"
    document = Plan(image=ImageRef("x", "/x.tar.zst", "a" * 64, None)).to_json()
    plan.write_text(json.dumps({**document, "boot_mode": "legacy"}))
    result = run_cli("install", "--plan", str(plan), "--to", str(tmp_path / "d.img"), "--size", "4G")
    assert result.returncode == 2
    assert f"{plan}: plan.boot_mode: must be one of bios, uefi, both (got 'legacy')" in result.stderr
    assert "Traceback" not in result.stderr and not (tmp_path / "d.img").exists()


def test_missing_image_and_target_errors(tmp_path):
    result = run_cli("install", "--to", str(tmp_path / "d.img"))
    assert result.returncode == 2 and "give an image manifest" in result.stderr
    (tmp_path / "m.tar.zst").write_bytes(b"not read: the target is checked first")
    manifest = write_image_manifest(tmp_path / "m.tar.zst", "m")
    result = run_cli("install", str(manifest), "--to", str(tmp_path / "absent.img"))
    assert result.returncode == 2 and "pass --size to create" in result.stderr


def test_install_ssh_option_runs_the_install_on_the_host(local_sshd, stream_test_image_manifest, tmp_path):
    manifest, _ = stream_test_image_manifest
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(4 * GIB)
    result = run_cli("install", str(manifest), "--to", str(disk), "--boot", "bios", "--dry-run",
                     "--ssh", f"{local_sshd.user}@{local_sshd.host}:{local_sshd.port}",
                     "--ssh-identity", str(local_sshd.key), "--ssh-known-hosts", str(local_sshd.known_hosts))
    assert result.returncode == 0, result.stdout + result.stderr
    assert "deployer.pyz install" in result.stderr
    assert "partition plan:" in result.stdout and 'name="bios"' in result.stdout and 'name="esp"' not in result.stdout
    assert disk.stat().st_blocks == 0
