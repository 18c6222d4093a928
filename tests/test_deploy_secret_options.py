"""Command-line options of plan 1.4's fields: `--disk NAME=HINTS` (metalstream deploy) and
`--encryption-passphrase-file FILE|-` (metalstream deploy and install): parsed by the plan's own rules, the
passphrase read from a file or stdin and never echoed; `install --ssh` hands it over in a file, not an argument."""
from __future__ import annotations

import io
import json
import subprocess

import pytest

from conftest import METALSTREAM, REPO
from deployer.plan import with_options
from metalstream.contracts.plan import ImageRef, Plan
from metalstream.errors import BadInput
from metalstream.remote.deployments_cli import parse_disk_option
from metalstream.secret_input import read_secret_line

PASSPHRASE = "luks-Qz4#cli-unique-0082 and spaces"
GIB = 1 << 30


def test_disk_options_are_parsed_into_the_apis_hints():
    assert parse_disk_option("sdb=serial=ABC,min_size_gib=10,max_size_gib=1.5e3,rotational=false") == (
        "sdb", {"serial": "ABC", "min_size_gib": 10, "max_size_gib": 1500, "rotational": False})
    assert parse_disk_option("data=by_path=pci-0000:00:1f.2-ata-2,model=QEMU HARDDISK") == (
        "data", {"by_path": "pci-0000:00:1f.2-ata-2", "model": "QEMU HARDDISK"})


@pytest.mark.parametrize("text, location", [
    ("sdb", "--disk"), ("=serial=A", "--disk"), ("sdb=colour=blue", "--disk sdb"), ("sdb=serial", "--disk sdb"),
    ("sdb=min_size_gib=big", "--disk sdb"), ("sdb=rotational=maybe", "--disk sdb"),
    ("sdb=min_size_gib=20,max_size_gib=10", "--disk sdb.min_size_gib"), ("sdb=serial=", "--disk sdb.serial"),
])
def test_bad_disk_options_are_located(text, location):
    with pytest.raises(BadInput) as info:
        parse_disk_option(text)
    assert info.value.location == location


def test_secrets_come_from_a_files_first_line_or_stdin(tmp_path, monkeypatch):
    secret = tmp_path / "passphrase"
    secret.write_text(f"{PASSPHRASE}\nsecond line ignored\n")
    assert read_secret_line(str(secret), "--x") == PASSPHRASE
    monkeypatch.setattr("sys.stdin", io.StringIO(PASSPHRASE + "\n"))
    assert read_secret_line("-", "--x") == PASSPHRASE
    for content in ("", "\nlater\n"):
        secret.write_text(content)
        with pytest.raises(BadInput, match="empty line") as info:
            read_secret_line(str(secret), "--x")
        assert info.value.location == "--x"
    with pytest.raises(BadInput, match="cannot read") as info:
        read_secret_line(str(tmp_path / "absent"), "--x")
    assert info.value.location == "--x"


def test_install_options_put_the_passphrase_into_the_plan_by_its_rule():
    plan = Plan(image=ImageRef("x", "/x.tar.zst", "a" * 64, None))
    assert with_options(plan, encryption_passphrase=PASSPHRASE).encryption_passphrase == PASSPHRASE
    assert with_options(plan).encryption_passphrase is None
    with pytest.raises(BadInput) as info:
        with_options(plan, encryption_passphrase="tab\there")
    assert info.value.location == "--encryption-passphrase-file" and "tab" not in info.value.reason
    assert PASSPHRASE not in repr(with_options(plan, encryption_passphrase=PASSPHRASE))


def _install(*args: str, stdin: str | None = None) -> subprocess.CompletedProcess:
    return subprocess.run([*METALSTREAM, "install", *args], input=stdin, capture_output=True, text=True, cwd=REPO,
                          timeout=600)


def test_install_refuses_an_unreadable_or_empty_passphrase_file_before_touching_the_target(tmp_path):
    plan = tmp_path / "plan.json"
    plan.write_text(json.dumps(Plan(image=ImageRef("x", "/x.tar.zst", "a" * 64, None)).to_json()))
    disk = tmp_path / "d.img"
    absent = _install("--plan", str(plan), "--to", str(disk), "--size", "4G",
                      "--encryption-passphrase-file", str(tmp_path / "absent"))
    assert absent.returncode == 2 and "--encryption-passphrase-file: cannot read" in absent.stderr, absent.stderr
    empty = _install("--plan", str(plan), "--to", str(disk), "--size", "4G", "--encryption-passphrase-file", "-",
                     stdin="")
    assert empty.returncode == 2 and "--encryption-passphrase-file: stdin starts with an empty line" in empty.stderr
    bad = _install("--plan", str(plan), "--to", str(disk), "--size", "4G", "--encryption-passphrase-file", "-",
                   stdin="bell\x07here\n")
    assert bad.returncode == 2 and "--encryption-passphrase-file: must be at most 512 characters" in bad.stderr
    assert "Traceback" not in absent.stderr + empty.stderr + bad.stderr and not disk.exists()


def test_install_over_ssh_hands_the_passphrase_over_in_a_file(local_sshd, stream_test_image_manifest, tmp_path):
    manifest, _ = stream_test_image_manifest
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(4 * GIB)
    result = _install(str(manifest), "--to", str(disk), "--boot", "bios", "--dry-run",
                      "--encryption-passphrase-file", "-",
                      "--ssh", f"{local_sshd.user}@{local_sshd.host}:{local_sshd.port}",
                      "--ssh-identity", str(local_sshd.key), "--ssh-known-hosts", str(local_sshd.known_hosts),
                      stdin=PASSPHRASE + "\n")
    assert result.returncode == 0, result.stdout + result.stderr
    assert "--encryption-passphrase-file /tmp/metalstream-remote." in result.stderr  # a file the remote side read
    assert PASSPHRASE not in result.stdout + result.stderr
    assert disk.stat().st_blocks == 0
