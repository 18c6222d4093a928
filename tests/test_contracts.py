"""metalstream.contracts: formats and their versions, writers and readers, and the shared field rules."""
from __future__ import annotations

import json
import math
import os

import pytest

from metalstream.contracts import events, formats, manifests, rules
from metalstream.contracts.deployspec import Bootloader, DeploySpec, PartSpec
from metalstream.contracts.plan import DiskHints, ImageRef, Plan
from metalstream.errors import BadInput

from conftest import public_key_line


def _image_manifest(**overrides) -> dict:
    values = dict(name="debian", tarball="debian.tar.zst", sha256="1" * 64, size=10, uncompressed_size=20,
                  file_count=3, arch="x86_64", distribution={"family": "debian", "id": "debian", "version": "12"},
                  kernels=[{"version": "6.1", "kernel": "/boot/vmlinuz-6.1", "initramfs": "/boot/initrd.img-6.1"}],
                  bootloader={"bios_grub": True, "uefi_grub": True}, packages=[], kickstart_sha256="2" * 64,
                  created=1700000000)
    values.update(overrides)
    return manifests.image_manifest(**values)


@pytest.mark.parametrize("value", ["metalstream-image/1", "metalstream-image/1.0", "metalstream-image/1.7"])
def test_every_minor_version_of_the_known_major_is_read(value):
    assert formats.check_format(value, formats.IMAGE, "format") == value


@pytest.mark.parametrize("value, message", [
    ("metalstream-image/2", "major version 2, but metalstream .* reads major version 1 only .*newer"),
    ("metalstream-image/0.9", "major version 0, .*too old"),
    ("metalstream-plan/1", "not an image manifest"),
    ("metalstream-image/x", "malformed format version"),
    ("metalstream-image/1.x", "malformed format version"),
    (None, "not an image manifest"),
])
def test_other_major_versions_and_other_documents_are_refused(value, message):
    with pytest.raises(BadInput, match=message) as info:
        formats.check_format(value, formats.IMAGE, "m.json: format")
    assert info.value.location == "m.json: format"


def test_image_manifest_writer_output_passes_its_reader_and_later_minor_fields_are_kept():
    manifest = _image_manifest()
    assert manifest["format"] == "metalstream-image/1" and manifest["builder"]["name"] == "metalstream"
    assert manifest["bootloader"] == {"bios_grub": True, "uefi_grub": True, "shim": False}
    newer = {**manifest, "format": "metalstream-image/1.3", "signature": "from a later release"}
    assert manifests.read_image_manifest(newer, "m.json") is newer


@pytest.mark.parametrize("field, value, location", [
    ("name", "../etc", "m.json: name"),
    ("tarball", "dir/x.tar.zst", "m.json: tarball"),
    ("sha256", "A" * 64, "m.json: sha256"),
    ("size", 0, "m.json: size"),
    ("size", 2**63, "m.json: size"),
    ("file_count", True, "m.json: file_count"),
    ("kernels", [{"version": "6", "kernel": "boot/vmlinuz", "initramfs": "/boot/i"}], "m.json: kernels[0].kernel"),
    ("kernels", [{"version": "6", "kernel": "/boot/../../vmlinuz", "initramfs": "/i"}], "m.json: kernels[0].kernel"),
    ("bootloader", {"bios_grub": "yes", "uefi_grub": True, "shim": False}, "m.json: bootloader.bios_grub"),
])
def test_image_manifest_reader_names_the_bad_field(field, value, location):
    data = {**_image_manifest(), field: value}
    with pytest.raises(BadInput) as info:
        manifests.read_image_manifest(data, "m.json")
    assert info.value.location == location


def test_installer_manifest_round_trip_and_files(tmp_path):
    (tmp_path / "vmlinuz").write_bytes(b"k" * 10)
    (tmp_path / "initrd").write_bytes(b"i" * 20)
    manifest = manifests.installer_manifest(
        name="installer", kernel=manifests.file_entry(tmp_path / "vmlinuz"),
        initramfs=manifests.file_entry(tmp_path / "initrd"), kernel_version="6.1", created=1, kickstart_sha256="3" * 64,
        initramfs_uncompressed_size=30, file_count=2, module_count=0, agent_sha256="4" * 64)
    path = manifests.write_document(tmp_path / "installer.json", manifest)
    loaded = manifests.read_installer_manifest(manifests.load_document(path), str(path))
    assert loaded["kernel"] == {"file": "vmlinuz", "sha256": manifests.file_sha256(tmp_path / "vmlinuz"), "size": 10}
    with pytest.raises(BadInput, match="not an installer manifest") as info:
        manifests.read_installer_manifest(_image_manifest(), str(path))
    assert info.value.location == f"{path}: format"


def test_documents_are_read_only_from_regular_files_of_bounded_size(tmp_path):
    fifo = tmp_path / "fifo.json"
    os.mkfifo(fifo)
    with pytest.raises(BadInput, match="not a regular file"):
        manifests.load_document(fifo)  # would block forever if opened for a plain read
    with pytest.raises(BadInput, match="not a regular file"):
        manifests.load_document("/dev/zero")
    big = tmp_path / "big.json"
    big.write_text(" " * 2048 + "{}")
    with pytest.raises(BadInput, match="larger than 1024 bytes"):
        manifests.load_document(big, max_bytes=1024)
    broken = tmp_path / "broken.json"
    broken.write_text('{\n  "format": ,\n}')
    with pytest.raises(BadInput) as info:
        manifests.load_document(broken)
    assert info.value.location == f"{broken}:2"


def test_plan_written_by_the_contract_reads_back_identical():
    manifest = _image_manifest()
    plan = Plan(image=ImageRef("debian", "http://s/images/debian.tar.zst", manifest["sha256"], 10, manifest),
                disk_hints=DiskHints(model="QEMU HARDDISK", max_size_gib=64.5), boot_mode="uefi",
                storage=DeploySpec(partitions=[PartSpec("/", "xfs", grow=True, line=9)],
                                   bootloader=Bootloader(append="quiet splash", line=4)),
                hostname="node-1", root_password_hash="!", ssh_keys=[public_key_line()], kernel_args="quiet")
    document = json.loads(json.dumps(plan.to_json()))
    assert Plan.from_json(document) == plan
    assert Plan.from_json(document).to_json() == document


@pytest.mark.parametrize("path, value, location", [
    (("format",), "metalstream-plan/2", "plan.format"),
    (("storage", "partitions", 0, "size_mib"), "4096", "plan.storage.partitions[0].size_mib"),
    (("storage", "partitions", 0, "grow"), 1, "plan.storage.partitions[0].grow"),
    (("storage", "partitions", 0, "mountpoint"), None, "plan.storage.partitions[0].mountpoint"),
    (("storage", "bootloader", "append"), "quiet; reboot", "plan.storage.bootloader.append"),
    (("storage", "bootloader", "append"), "metalstream.server=http://evil", "plan.storage.bootloader.append"),
])
def test_plan_reader_checks_the_storage_section_too(path, value, location):
    plan = Plan(image=ImageRef("x", "/x.tar.zst", "0" * 64, None),
                storage=DeploySpec(partitions=[PartSpec("/", "ext4", 4096)], bootloader=Bootloader())).to_json()
    target = plan
    for key in path[:-1]:
        target = target[key]
    target[path[-1]] = value
    with pytest.raises(BadInput) as info:
        Plan.from_json(plan)
    assert info.value.location == location


def test_plan_with_several_image_urls_round_trips_as_minor_version_1():
    manifest = _image_manifest()
    urls = (f"http://cache-rack2:8080/images/debian.tar.zst?sha256={manifest['sha256']}",
            "http://s/images/debian.tar.zst")
    plan = Plan(image=ImageRef("debian", urls[0], manifest["sha256"], 10, manifest, urls=urls))
    document = json.loads(json.dumps(plan.to_json()))
    assert document["format"] == "metalstream-plan/1.4"  # a 1.1 field, written by the 1.4 writer
    assert document["image"]["url"] == urls[0] and document["image"]["urls"] == list(urls)
    assert Plan.from_json(document) == plan
    assert Plan.from_json(document).to_json() == document


def test_a_single_source_plan_has_only_the_fields_a_1_0_reader_knows():
    plan = Plan(image=ImageRef("x", "/x.tar.zst", "0" * 64, None)).to_json()
    assert list(plan["image"]) == ["name", "url", "sha256", "size", "manifest"]
    older = {**plan, "format": "metalstream-plan/1"}
    assert Plan.from_json(older).image.urls == ("/x.tar.zst",)
    with pytest.raises(ValueError, match="must start with url"):
        ImageRef("x", "/x.tar.zst", "0" * 64, None, urls=("/y.tar.zst", "/x.tar.zst"))


@pytest.mark.parametrize("urls, location", [
    (["http://mirror/x.tar.zst", "/x.tar.zst"], "plan.image.urls"),  # the preferred source is `url`
    ([], "plan.image.urls"),
    ("/x.tar.zst", "plan.image.urls"),
    (["/x.tar.zst"] * 17, "plan.image.urls"),
    (["/x.tar.zst", "ftp://mirror/x.tar.zst"], "plan.image.urls[1]"),
    (["/x.tar.zst", "http://mirror/x.tar.zst\n"], "plan.image.urls[1]"),
    (["/x.tar.zst", ""], "plan.image.urls[1]"),
])
def test_plan_image_urls_are_checked_one_by_one(urls, location):
    plan = Plan(image=ImageRef("x", "/x.tar.zst", "0" * 64, None)).to_json()
    plan["image"]["urls"] = urls
    with pytest.raises(BadInput) as info:
        Plan.from_json(plan)
    assert info.value.location == location


def test_events_written_by_the_agent_are_read_by_the_service():
    event = events.event_document("stream", "streaming\nimage" + "x" * 5000, 5, 10, 1700000000.5)
    assert "\n" not in event["message"] and len(event["message"]) == events.MAX_MESSAGE
    assert events.read_event(event)["bytes_done"] == 5
    result = events.result_document(success=False, phase="mkfs", error="mkfs.ext4 failed", log="l" * 10,
                                    root_uuid=None, time=1700000001.0)
    assert events.read_result(result)["error"] == "mkfs.ext4 failed"


@pytest.mark.parametrize("changes, location", [
    ({"time": math.nan}, "time"),
    ({"time": math.inf}, "time"),
    ({"time": -1}, "time"),
    ({"bytes_done": 2**63}, "bytes_done"),
    ({"bytes_total": 10**4000}, "bytes_total"),
    ({"bytes_done": 11, "bytes_total": 10}, "bytes_done"),
    ({"message": "a\x1b[2Jb"}, "message"),
    ({"phase": "dance"}, "phase"),
])
def test_event_reader_refuses_values_no_client_should_store(changes, location):
    event = {**events.event_document("stream", "streaming", 5, 10, 1700000000.0), **changes}
    with pytest.raises(BadInput) as info:
        events.read_event(event)
    assert info.value.location == location


@pytest.mark.parametrize("value", ["aa:bb:cc:dd:ee:ff", "AA-BB-CC-DD-EE-FF", "aabbccddeeff", "AABBCCDDEEFF",
                                   " aa:bb:cc:dd:ee:ff "])
def test_mac_normalisation(value):
    assert rules.mac(value, "mac") == "aa:bb:cc:dd:ee:ff"


@pytest.mark.parametrize("value", ["aa:bb:cc:dd:ee", "aa:bb:cc:dd:ee:ff:00", "aa:bb-cc:dd:ee:ff", "gg:bb:cc:dd:ee:ff",
                                   "aabb.ccdd.eeff", "", "aa:bb:cc:dd:ee:f\n", None, 5])
def test_bad_macs(value):
    with pytest.raises(BadInput) as info:
        rules.mac(value, "mac")
    assert info.value.location == "mac"


def test_hostnames_are_lower_cased_and_checked_label_by_label():
    assert rules.hostname("Node-17.Example.org", "hostname") == "node-17.example.org"
    for bad in ("-a", "a-", "a..b", "a_b", "x" * 64, "a b", "ä", "", "a;b", "a.b.", "."):
        with pytest.raises(BadInput):
            rules.hostname(bad, "hostname")


def test_numbers_must_be_finite_and_within_a_bigint():
    assert rules.number(8.5, "n") == 8.5
    for bad in (math.nan, math.inf, -math.inf, True, "8", -0.5):
        with pytest.raises(BadInput):
            rules.number(bad, "n")
    assert rules.integer(2**63 - 1, "n") == 2**63 - 1
    with pytest.raises(BadInput):
        rules.integer(2**63, "n")
