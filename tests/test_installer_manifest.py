"""The installer manifest's optional `secure_boot` loaders: the contract (metalstream.contracts.manifests)
and the service's reader that checks the files beside it (pxe.imagestore.read_installer_manifest)."""
from __future__ import annotations

import copy
from pathlib import Path

import pytest

from metalstream.contracts import manifests
from metalstream.errors import BadInput
from pxe import imagestore


def _installer(directory: Path, *, signed: bool = True) -> Path:
    """installer.json with small files beside it; with `signed`, shim and grub too."""
    files = {"vmlinuz": b"k" * 10, "initrd": b"i" * 20, "installer.shimx64.efi": b"MZ shim",
             "installer.grubnetx64.efi": b"MZ grub"}
    for name, data in files.items():
        (directory / name).write_bytes(data)
    secure_boot = {"shim": manifests.file_entry(directory / "installer.shimx64.efi"),
                   "grub": manifests.file_entry(directory / "installer.grubnetx64.efi")} if signed else None
    manifest = manifests.installer_manifest(
        name="installer", kernel=manifests.file_entry(directory / "vmlinuz"),
        initramfs=manifests.file_entry(directory / "initrd"), kernel_version="6.1", created=1,
        kickstart_sha256="3" * 64, initramfs_uncompressed_size=30, file_count=2, module_count=0,
        agent_sha256="4" * 64, secure_boot=secure_boot)
    return manifests.write_document(directory / "installer.json", manifest)


def test_secure_boot_is_written_only_when_given_and_reads_back(tmp_path):
    signed = manifests.load_document(_installer(tmp_path))
    assert signed["secure_boot"]["shim"] == {"file": "installer.shimx64.efi", "size": 7,
                                             "sha256": manifests.file_sha256(tmp_path / "installer.shimx64.efi")}
    assert manifests.read_installer_manifest(signed, "m.json") is signed
    plain = manifests.load_document(_installer(tmp_path, signed=False))
    assert "secure_boot" not in plain
    assert manifests.read_installer_manifest(plain, "m.json") is plain


@pytest.mark.parametrize("change, location", [
    (lambda sb: sb.pop("grub"), "m.json: secure_boot.grub"),
    (lambda sb: sb.pop("shim"), "m.json: secure_boot.shim"),
    (lambda sb: sb["shim"].update(file="../shimx64.efi"), "m.json: secure_boot.shim.file"),
    (lambda sb: sb["grub"].update(sha256="no"), "m.json: secure_boot.grub.sha256"),
    (lambda sb: sb["grub"].update(size=0), "m.json: secure_boot.grub.size"),
    (lambda sb: sb.update(shim="installer.shimx64.efi"), "m.json: secure_boot.shim"),
])
def test_secure_boot_reader_names_the_bad_field(tmp_path, change, location):
    data = manifests.load_document(_installer(tmp_path))
    change(data["secure_boot"])
    with pytest.raises(BadInput) as info:
        manifests.read_installer_manifest(data, "m.json")
    assert info.value.location == location


def test_secure_boot_that_is_no_object_is_refused(tmp_path):
    data = {**manifests.load_document(_installer(tmp_path)), "secure_boot": ["shim", "grub"]}
    with pytest.raises(BadInput) as info:
        manifests.read_installer_manifest(data, "m.json")
    assert info.value.location == "m.json: secure_boot"


def test_service_reader_adds_absolute_loader_paths(tmp_path):
    path = _installer(tmp_path)
    installer = imagestore.read_installer_manifest(path)
    assert installer["shim_path"] == str((tmp_path / "installer.shimx64.efi").resolve())
    assert installer["grub_path"] == str((tmp_path / "installer.grubnetx64.efi").resolve())
    assert installer["kernel_path"] == str((tmp_path / "vmlinuz").resolve())


def test_service_reader_has_no_loader_paths_without_signed_loaders(tmp_path):
    installer = imagestore.read_installer_manifest(_installer(tmp_path, signed=False))
    assert "shim_path" not in installer and "grub_path" not in installer
    assert Path(installer["initramfs_path"]).is_file()


@pytest.mark.parametrize("damage, message", [
    (lambda p: p.write_bytes(b"MZ shin"), "has sha256"),
    (lambda p: p.write_bytes(b"MZ shim, longer"), "the manifest says 7"),
    (lambda p: p.unlink(), "does not exist"),
])
def test_service_reader_checks_the_loaders_like_the_kernel(tmp_path, damage, message):
    path = _installer(tmp_path)
    damage(tmp_path / "installer.shimx64.efi")
    with pytest.raises(BadInput, match=message) as info:
        imagestore.read_installer_manifest(path)
    assert info.value.location == f"{path}: secure_boot.shim"


def test_later_minor_versions_keep_unknown_loader_fields(tmp_path):
    data = manifests.load_document(_installer(tmp_path))
    newer = copy.deepcopy(data)
    newer["format"] = "metalstream-installer/1.4"
    newer["secure_boot"]["mok"] = {"file": "installer.mmx64.efi", "sha256": "5" * 64, "size": 1}
    assert manifests.read_installer_manifest(newer, "m.json") is newer
    # The service checks and exposes the loaders it knows; the later field's file is not its business.
    installer = imagestore.read_installer_manifest(manifests.write_document(tmp_path / "newer.json", newer))
    assert "mok_path" not in installer and installer["shim_path"].endswith("installer.shimx64.efi")
