"""The Secure Boot parts of the contracts: which packages make the signed chain, and the plan's `secure_boot`
(written only when true, read from the top level or the storage's deploy add-on, UEFI only), also through
the real `metalstream install --plan ... --dry-run`."""
from __future__ import annotations

import json

import pytest

from metalstream.contracts.deployspec import DeploySpec, SecureBoot
from metalstream.contracts.plan import ImageRef, Plan
from metalstream.contracts.secureboot import image_refusal, missing_signed_packages
from metalstream.errors import BadInput

from conftest import run_cli
from fixtures_images import make_image


@pytest.mark.parametrize("family, names, missing", [
    ("debian", ["shim-signed", "grub-efi-amd64-signed", "linux-image-amd64"], []),
    ("debian", ["shim-signed:amd64", "grub-efi-amd64-signed=1+2.06+13", "linux-image-6.1.0-21-amd64"], []),
    ("debian", ["shim-signed", "grub-efi-amd64-signed", "linux-image-6.1.0-21-amd64-unsigned"], ["linux-image-*"]),
    ("debian", ["shim-unsigned", "grub-efi-amd64-bin", "linux-image-amd64"], ["shim-signed", "grub-efi-amd64-signed"]),
    ("debian", [], ["shim-signed", "grub-efi-amd64-signed", "linux-image-*"]),
    ("rpm", ["shim-x64", "grub2-efi-x64", "kernel"], []),
    ("rpm", ["shim-x64", "grub2-efi-x64", "kernel-core"], []),
    ("rpm", ["shim-x64", "grub2-efi-x64-modules", "kernel"], ["grub2-efi-x64"]),
    ("test", ["shim-signed"], None),
])
def test_the_signed_chain_of_each_family(family, names, missing):
    assert missing_signed_packages(family, names) == missing


def test_an_image_manifest_needs_the_packages_and_the_binaries():
    manifest = {"distribution": {"family": "rpm"}, "bootloader": {"shim": True, "uefi_grub": True},
                "packages": [{"name": n} for n in ("shim-x64", "grub2-efi-x64", "kernel-core")]}
    assert image_refusal("fedora", manifest) is None
    manifest["bootloader"]["shim"] = False
    assert image_refusal("fedora", manifest) == ("image fedora lists the signed packages but its tree has no shim "
                                                 "EFI binary (removed by %post?): rebuild it")


def _plan(**changes) -> Plan:
    return Plan(image=ImageRef("x", "/x.tar.zst", "0" * 64, None), **changes)


def test_secure_boot_is_written_only_when_asked_for_and_round_trips():
    assert "secure_boot" not in _plan().to_json()
    document = json.loads(json.dumps(_plan(secure_boot=True, boot_mode="uefi").to_json()))
    assert document["secure_boot"] is True and document["format"] == "metalstream-plan/1.4"
    assert Plan.from_json(document).secure_boot is True
    assert Plan.from_json({**document, "secure_boot": False}).secure_boot is False


def test_the_storages_deploy_add_on_asks_for_it_too():
    document = _plan(storage=DeploySpec(secure_boot=SecureBoot(line=7))).to_json()
    assert document["storage"]["secure_boot"] == {"required": True, "line": 7} and "secure_boot" not in document
    assert Plan.from_json(document).secure_boot is True
    assert "secure_boot" not in _plan(storage=DeploySpec()).to_json()["storage"]  # what a 1.1 agent reads


@pytest.mark.parametrize("changes, words", [
    ({"secure_boot": "yes"}, "expected"),
    ({"secure_boot": True, "boot_mode": "bios"}, "UEFI"),
    ({"boot_mode": "bios", "storage": DeploySpec(secure_boot=SecureBoot()).to_dict()}, "UEFI"),
])
def test_the_plan_reader_refuses_bad_secure_boot(changes, words):
    document = {**_plan().to_json(), **changes}
    with pytest.raises(BadInput) as info:
        Plan.from_json(document)
    assert info.value.location == "plan.secure_boot" and words in info.value.reason


@pytest.fixture(scope="module")
def image(tmp_path_factory) -> tuple[dict, str]:
    directory = tmp_path_factory.mktemp("image")
    (directory / "tree" / "etc").mkdir(parents=True)
    (directory / "tree" / "etc" / "os-release").write_text("ID=debian\n")
    manifest_path = make_image(directory / "tree", directory, "sb", family="debian", release="bookworm")
    manifest = json.loads(manifest_path.read_text())
    return manifest, str(directory / manifest["tarball"])


@pytest.mark.parametrize("boot_mode, secure_boot, refused", [
    ("uefi", True, None),
    ("both", True, None),
    ("bios", True, "plan.secure_boot: Secure Boot needs UEFI"),
    ("both", "on", "plan.secure_boot: expected true or false"),
])
def test_metalstream_install_reads_secure_boot_through_the_same_contract(tmp_path, image, boot_mode, secure_boot,
                                                                         refused):
    manifest, tarball = image
    plan = _plan(boot_mode=boot_mode).to_json()
    plan["image"] = ImageRef(manifest["name"], tarball, manifest["sha256"], manifest["size"], manifest).to_json()
    plan["secure_boot"] = secure_boot
    path = tmp_path / "plan.json"
    path.write_text(json.dumps(plan))
    result = run_cli("install", "--plan", str(path), "--to", str(tmp_path / "disk.img"), "--size", "4G", "--dry-run")
    if refused is None:
        assert result.returncode == 0, result.stderr
    else:
        assert result.returncode == 2 and f"{path}: {refused}" in result.stderr, result.stderr
