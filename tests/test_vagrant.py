"""vagrant/Vagrantfile: `vagrant validate` (with the vagrant-libvirt plugin) accepts it and rejects a broken copy;
the server's provisioning script is valid bash. Boots nothing (this host has no usable libvirt/KVM)."""
from __future__ import annotations

import subprocess
from pathlib import Path

VAGRANT_DIR = Path(__file__).resolve().parent.parent / "vagrant"
PRINT_PROVISION = 'module Vagrant; def self.configure(*); end; end; load "Vagrantfile"; print SERVER_PROVISION'


def _require_vagrant() -> None:
    from conftest import require_tools

    require_tools("vagrant", "ruby")


def _validate(directory: Path) -> subprocess.CompletedProcess:
    return subprocess.run(["vagrant", "validate"], cwd=directory, capture_output=True, text=True, timeout=120)


def test_vagrantfile_validates_with_the_libvirt_provider():
    _require_vagrant()
    result = _validate(VAGRANT_DIR)
    assert result.returncode == 0, result.stdout + result.stderr
    assert "validated successfully" in result.stdout


def test_vagrant_validate_rejects_a_broken_copy(tmp_path: Path):
    _require_vagrant()
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    assert "libvirt.mgmt_attach = false" in text
    (tmp_path / "Vagrantfile").write_text(text.replace("libvirt.mgmt_attach = false", "libvirt.mgmt_atach = false"))
    result = _validate(tmp_path)
    assert result.returncode != 0
    assert "mgmt_atach" in result.stdout + result.stderr


def test_server_provisioning_script_is_valid_bash_and_runs_the_service(tmp_path: Path):
    _require_vagrant()
    script = subprocess.run(["ruby", "-e", PRINT_PROVISION], cwd=VAGRANT_DIR, capture_output=True, text=True,
                            check=True, timeout=60).stdout
    (tmp_path / "provision.sh").write_text(script)
    syntax = subprocess.run(["bash", "-n", str(tmp_path / "provision.sh")], capture_output=True, text=True)
    assert syntax.returncode == 0, syntax.stderr
    assert "bash .ci/setup" in script
    assert "metalstream serve --data-dir" in script and "--tftp 69" in script
    assert "dnsmasq-config" in script and "systemctl enable --now metalstream.service" in script


def test_client_boots_from_the_network_with_a_fixed_mac():
    text = (VAGRANT_DIR / "Vagrantfile").read_text()
    client = text[text.index('config.vm.define "client"'):]
    assert 'libvirt.boot "network"' in client
    assert "client.vm.box" not in client
    assert 'mac: CLIENT_MAC' in client and 'CLIENT_MAC   = "52:54:00:' in text
