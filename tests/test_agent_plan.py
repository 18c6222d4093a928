"""Deploy plan parsing and validation (docs/contracts.md §2)."""
from __future__ import annotations

import copy
import json

import pytest

from deployer.plan import load_plan_file, local_plan
from metalstream.contracts.deployspec import ClearPart, DeploySpec, NetworkDevice, PartSpec
from metalstream.contracts.manifests import image_manifest
from metalstream.contracts.plan import DiskHints, ImageRef, Plan
from metalstream.errors import BadInput

from conftest import public_key_line

PW_HASH = "$6$salt$IxDD3jeSOb5eB1CX5LBsqZFVkJdido3OUILO5Ifz5iwMuTS4XMS130MTSuDDl3aCI6WouIL9AjRbLCelDCy.g."


def _manifest() -> dict:
    return image_manifest(
        name="debian-minimal", tarball="debian-minimal.tar.zst", sha256="0" * 64, size=212345678,
        uncompressed_size=732000000, file_count=17012, arch="x86_64",
        distribution={"family": "debian", "id": "debian", "version": "12", "codename": "bookworm"},
        kernels=[{"version": "6.1.0-21-amd64", "kernel": "/boot/vmlinuz-6.1.0-21-amd64",
                  "initramfs": "/boot/initrd.img-6.1.0-21-amd64"}],
        bootloader={"bios_grub": True, "uefi_grub": True, "shim": False}, packages=[], kickstart_sha256="1" * 64,
        created=1700000000)


@pytest.fixture
def plan_json() -> dict:
    """A plan using every field, written by the contract's writer."""
    manifest = _manifest()
    return Plan(
        deployment_id="9f1c2e4a-0000-4000-8000-000000000001",
        image=ImageRef(name="debian-minimal", url="http://10.0.2.2:8080/images/debian-minimal.tar.zst",
                       sha256=manifest["sha256"], size=manifest["size"], manifest=manifest),
        disk_hints=DiskHints(model="QEMU HARDDISK", min_size_gib=8),
        boot_mode="uefi",
        storage=DeploySpec(clearpart=ClearPart(mode="all", initlabel=True, line=3), zerombr=True,
                           partitions=[PartSpec("/boot/efi", "efi", 600), PartSpec("/", "xfs", 4096, grow=True)]),
        hostname="node-17",
        network=[NetworkDevice(), NetworkDevice(device="eth1", bootproto="static", ip="192.0.2.10",
                                                netmask="255.255.255.0", gateway="192.0.2.1",
                                                nameservers=["192.0.2.53"])],
        root_password_hash=PW_HASH,
        ssh_keys=[public_key_line()],
        kernel_args="console=ttyS0,115200",
        report={"events_url": "http://10.0.2.2:8080/api/v1/agent/events",
                "result_url": "http://10.0.2.2:8080/api/v1/agent/result"},
    ).to_json()


def test_full_plan_parses_into_typed_fields(plan_json):
    plan = Plan.from_json(plan_json)
    assert plan.deployment_id == "9f1c2e4a-0000-4000-8000-000000000001"
    assert plan.boot_mode == "uefi"
    assert plan.disk_hints.given() == {"model": "QEMU HARDDISK", "min_size_gib": 8}
    assert plan.image.kernels[0].initramfs == "/boot/initrd.img-6.1.0-21-amd64"
    assert plan.storage.partitions[1].fstype == "xfs" and plan.storage.partitions[1].grow
    assert plan.network[1].ip == "192.0.2.10" and plan.network[0].bootproto == "dhcp"
    assert plan.wipe_allowed
    assert Plan.from_json(plan.to_json()).to_json() == plan.to_json()


def test_minimal_plan_gets_defaults(plan_json):
    minimal = {"format": "metalstream-plan/1", "deployment_id": "d1",
               "image": {"name": "x", "url": "/srv/x.tar.zst", "sha256": "a" * 64}}
    plan = Plan.from_json(minimal)
    assert plan.boot_mode == "both" and plan.storage is None and not plan.wipe_allowed
    assert plan.disk_hints.given() == {} and plan.ssh_keys == [] and plan.kernel_args == ""


@pytest.mark.parametrize("path, value, location", [
    (("surprise",), 1, "plan.surprise"),
    (("format",), "metalstream-plan/9", "plan.format"),
    (("image", "sha256"), "XYZ", "plan.image.sha256"),
    (("image", "sha256"), "A" * 64, "plan.image.sha256"),
    (("image", "size"), "big", "plan.image.size"),
    (("image", "url"), "ftp://host/x.tar.zst", "plan.image.url"),
    (("image", "extra"), True, "plan.image.extra"),
    (("image", "manifest", "kernels", 0, "kernel"), "boot/vmlinuz", "plan.image.manifest.kernels[0].kernel"),
    (("boot_mode",), "legacy", "plan.boot_mode"),
    (("hostname",), "node\n17", "plan.hostname"),
    (("hostname",), "node_17!", "plan.hostname"),
    (("kernel_args",), "quiet\x1b[2J", "plan.kernel_args"),
    (("kernel_args",), "quiet\ninit=/bin/sh", "plan.kernel_args"),
    (("root_password_hash",), "hunter2", "plan.root_password_hash"),
    (("ssh_keys", 0), "not a key", "plan.ssh_keys[0]"),
    (("disk_hints", "min_size_gib"), "8", "plan.disk_hints.min_size_gib"),
    (("disk_hints", "colour"), "red", "plan.disk_hints.colour"),
    (("disk_hints", "rotational"), "yes", "plan.disk_hints.rotational"),
    (("network", 1, "bootproto"), "bootp", "plan.network[1].bootproto"),
    (("network", 1, "ip"), "300.1.1.1", "plan.network[1].ip"),
    (("storage", "clearpart", "mode"), "some", "plan.storage.clearpart.mode"),
    (("storage", "nonsense"), 1, "plan.storage.nonsense"),
])
def test_bad_field_is_named(plan_json, path, value, location):
    data = copy.deepcopy(plan_json)
    target = data
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(BadInput) as info:
        Plan.from_json(data)
    assert info.value.location == location, str(info.value)


def test_plan_file_errors_carry_file_and_line(tmp_path):
    broken = tmp_path / "plan.json"
    broken.write_text('{\n  "format": "metalstream-plan/1",\n  "image": ,\n}\n')
    with pytest.raises(BadInput) as info:
        load_plan_file(broken)
    assert info.value.location == f"{broken}:3"
    wrong = tmp_path / "wrong.json"
    wrong.write_text(json.dumps({"format": "metalstream-plan/1", "deployment_id": "d", "image": {
        "name": "x", "url": "/x", "sha256": "0" * 63}}))
    with pytest.raises(BadInput) as info:
        load_plan_file(wrong)
    assert str(info.value).startswith(f"{wrong}: plan.image.sha256: ")


def test_local_plan_points_at_tarball_beside_manifest(tmp_path, plan_json):
    manifest = _manifest()
    path = tmp_path / "img.json"
    path.write_text(json.dumps(manifest))
    plan = local_plan(str(path), boot_mode="bios", hostname="web-1", kernel_args="console=ttyS0", wipe=True)
    assert plan.image.url == str(tmp_path / "debian-minimal.tar.zst")
    assert plan.image.sha256 == manifest["sha256"] and plan.image.size == manifest["size"]
    assert plan.boot_mode == "bios" and plan.hostname == "web-1" and plan.wipe_allowed
    assert local_plan(f"file://{path}").image.url == str(tmp_path / "debian-minimal.tar.zst")


def test_local_plan_rejects_a_non_manifest(tmp_path):
    path = tmp_path / "img.json"
    path.write_text(json.dumps({"format": "something-else"}))
    with pytest.raises(BadInput, match="format: not an image manifest: format is 'something-else'"):
        local_plan(str(path))
    with pytest.raises(BadInput, match="absent.json: no such file"):
        local_plan(str(tmp_path / "absent.json"))
