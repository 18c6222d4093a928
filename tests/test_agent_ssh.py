"""`install --ssh`: the deployer zipapp copied to a host over SSH (a real local sshd) and run there."""
from __future__ import annotations

import glob
import io
import json
import subprocess
import zipfile

import pytest

from deployer.remote import SshTarget, build_zipapp, install_over_ssh, parse_ssh_target
from metalstream.errors import BadInput, OperationFailed

from conftest import require_root, require_tools

GiB = 1 << 30
# The far side is a Debian rescue/installer system: Debian's python3 with python3-click/-requests/-pyudev.
RESCUE_PYTHON = "/usr/bin/python3"


def _remote_dirs() -> list[str]:
    return glob.glob("/tmp/metalstream-remote.*")


def _ssh_install(sshd, image, disk, plan=None, *, install_args=(), key=None):
    out, err = io.StringIO(), io.StringIO()
    code = install_over_ssh(sshd.host, sshd.user, sshd.port, str(key or sshd.key), image, str(disk), plan,
                            install_args=install_args, python=RESCUE_PYTHON, known_hosts=str(sshd.known_hosts),
                            out=out, err=err)
    return code, out.getvalue(), err.getvalue()


@pytest.mark.parametrize("text, expected", [
    ("root@10.0.0.5", SshTarget("root", "10.0.0.5", 22)),
    ("rescue.example:2222", SshTarget("root", "rescue.example", 2222)),
    ("ops@[fe80::1]:22", SshTarget("ops", "fe80::1", 22)),
])
def test_parse_ssh_target(text, expected):
    assert parse_ssh_target(text) == expected


@pytest.mark.parametrize("text", ["", "root@", "a@b@c", "host:99999", "host:port"])
def test_parse_ssh_target_rejects_with_location(text):
    with pytest.raises(BadInput, match="^--ssh: "):
        parse_ssh_target(text)


def test_zipapp_runs_on_debian_python_with_only_the_agent(tmp_path):
    require_tools(RESCUE_PYTHON)
    pyz = build_zipapp(tmp_path)
    names = zipfile.ZipFile(pyz).namelist()
    assert "__main__.py" in names and "deployer/stream.py" in names and "metalstream/contracts/plan.py" in names
    assert not [n for n in names if not n.startswith(("deployer/", "metalstream/")) and n != "__main__.py"]
    (tmp_path / "again").mkdir()
    assert build_zipapp(tmp_path / "again").read_bytes() == pyz.read_bytes()  # reproducible
    # -I: isolated, so neither the repo nor the venv can leak in; only Debian's packages and the zip.
    done = subprocess.run([RESCUE_PYTHON, "-I", str(pyz), "--help"], capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr
    assert "install" in done.stdout and "agent" in done.stdout
    assert "build" not in done.stdout.split("Commands:")[1].split()  # the builder is not shipped
    check = subprocess.run([RESCUE_PYTHON, "-I", "-c", "import sys; sys.path.insert(0, sys.argv[1]); "
                            "import deployer.remote, deployer.agent, deployer.stream, deployer.install; "
                            "print(sorted(m for m in sys.modules if m.split('.')[0] in "
                            "('tarball_builder', 'pxe', 'paramiko', 'zstandard')))", str(pyz)],
                           capture_output=True, text=True)
    assert check.returncode == 0, check.stderr
    assert check.stdout.strip() == "[]"


def test_dry_run_over_ssh_uploads_the_image_and_streams_output_back(local_sshd, stream_test_image_manifest,
                                                                   tmp_path):
    manifest, _ = stream_test_image_manifest
    disk = tmp_path / "disk.img"
    disk.write_bytes(b"")
    with open(disk, "r+b") as f:
        f.truncate(4 * GiB)
    before = _remote_dirs()
    code, out, err = _ssh_install(local_sshd, str(manifest), disk, install_args=["--boot", "uefi", "--dry-run"])
    assert code == 0, out + err
    assert "partition plan:" in out and "dry run: nothing was written" in out
    assert f"disk: {disk}" in out
    assert "running /usr/bin/python3 deployer.pyz install /tmp/metalstream-remote." in err
    assert disk.stat().st_blocks == 0  # still sparse and empty: nothing written
    assert _remote_dirs() == before  # the remote temp dir is removed


def test_remote_exit_status_and_errors_come_back(local_sshd, stream_test_image_manifest, tmp_path):
    manifest, _ = stream_test_image_manifest
    code, out, err = _ssh_install(local_sshd, str(manifest), tmp_path / "no-such-dir" / "disk.img",
                                  install_args=["--dry-run"])
    assert code == 2, out + err  # bad input on the far side: exit 2 here too
    assert "metalstream: error:" in err and "Traceback" not in err


def test_wrong_key_and_unknown_host_key_are_refused(local_sshd, stream_test_image_manifest, tmp_path):
    manifest, _ = stream_test_image_manifest
    with pytest.raises(OperationFailed, match="authentication failed"):
        _ssh_install(local_sshd, str(manifest), tmp_path / "d.img", key=local_sshd.other_key)
    known = local_sshd.known_hosts.read_text()
    other_host_key = " ".join(local_sshd.other_key.with_suffix(".pub").read_text().split()[:2])
    for problem, text in [("not listed", known.replace(f":{local_sshd.port} ", ":1 ")),
                          ("host key mismatch", known.split(" ")[0] + " " + other_host_key + "\n")]:
        strange = tmp_path / "known_hosts"
        strange.write_text(text)
        with pytest.raises(OperationFailed, match="ssh root@127.0.0.1") as info:
            install_over_ssh(local_sshd.host, "root", local_sshd.port, str(local_sshd.key), str(manifest),
                             str(tmp_path / "d.img"), None, known_hosts=str(strange))
        if problem == "host key mismatch":
            assert problem in str(info.value)


@pytest.mark.root
def test_real_install_over_ssh_onto_a_disk_image(local_sshd, debian_image, file_server, sparse_disk):
    require_root()
    require_tools("sfdisk", "mkfs.ext4", "mtools", "grub-mkimage")
    manifest = json.loads(debian_image.read_text())
    file_server.serve(manifest["tarball"], debian_image.parent / manifest["tarball"])
    manifest_url = file_server.serve("debian.json", debian_image)
    disk = sparse_disk(4 * GiB)
    code, out, err = _ssh_install(local_sshd, manifest_url, disk,
                                  install_args=["--boot", "uefi", "--hostname", "node-ssh"])
    assert code == 0, out[-3000:] + err[-3000:]
    assert "[stream] streaming image:" in out and "install succeeded" in out
    # The far side fetched the image itself over HTTP (nothing staged through SSH).
    assert [r["path"] for r in file_server.state.requests] == ["/debian.json", "/" + manifest["tarball"]]
    table = subprocess.run(["sfdisk", "--json", str(disk)], capture_output=True, text=True, check=True)
    partitions = json.loads(table.stdout)["partitiontable"]["partitions"]
    assert json.loads(table.stdout)["partitiontable"]["label"] == "gpt" and len(partitions) >= 2


def test_ssh_options_wire_into_a_click_command(local_sshd, stream_test_image_manifest, tmp_path):
    """How `metalstream install` takes --ssh: the options decorator plus run_ssh_install."""
    import click
    from click.testing import CliRunner

    from deployer.remote import run_ssh_install, ssh_options

    @click.command()
    @click.argument("image")
    @click.option("--to", "target")
    @ssh_options
    def install(image, target, ssh_target, ssh_identity, ssh_known_hosts):
        raise SystemExit(run_ssh_install(ssh_target, ssh_identity, ssh_known_hosts, image, target, None,
                                         ["--dry-run"], python=RESCUE_PYTHON))

    manifest, _ = stream_test_image_manifest
    disk = tmp_path / "disk.img"
    with open(disk, "wb") as f:
        f.truncate(4 * GiB)
    runner = CliRunner()
    ok = runner.invoke(install, [str(manifest), "--to", str(disk), "--ssh", f"root@127.0.0.1:{local_sshd.port}",
                                 "--ssh-identity", str(local_sshd.key), "--ssh-known-hosts",
                                 str(local_sshd.known_hosts)])
    assert ok.exit_code == 0, ok.output
    assert "dry run: nothing was written" in ok.output
    for bad, where in [(["--ssh", "a@b@c"], "--ssh"), (["--ssh", "root@h", "--ssh-identity", "/nonexistent"],
                                                       "--ssh-identity")]:
        result = runner.invoke(install, [str(manifest), "--to", str(disk), *bad])
        assert isinstance(result.exception, BadInput) and result.exception.location == where
