"""choose_disks: every disk a layout names, chosen before any write; unmatched, ambiguous or doubled names fail."""
from __future__ import annotations

import pytest

from deployer.disks import Disk
from deployer.storage.choose import choose_disks
from metalstream.contracts.deployspec import Bootloader, ClearPart, DeploySpec, IgnoreDisk, PartSpec
from metalstream.contracts.plan import DiskHints, ImageRef, Plan
from metalstream.errors import BadInput

GIB = 1 << 30
DISKS = [
    Disk("sda", "/dev/sda", 20 * GIB, serial="S-A", model="QEMU HARDDISK", by_path="/dev/disk/by-path/pci-0-ata-1"),
    Disk("sdb", "/dev/sdb", 20 * GIB, serial="S-B", model="QEMU HARDDISK"),
    Disk("sdc", "/dev/sdc", 40 * GIB, serial="S-C", model="BIG DISK", logical_sector_size=4096),
]


def plan(storage=None, **kw):
    image = ImageRef(name="img", url="http://192.0.2.1/img.tar.zst", sha256="0" * 64, size=None)
    return Plan(image=image, storage=storage, **kw)


def test_a_layout_naming_no_disk_takes_the_disk_hints_disk():
    (disk,) = choose_disks(plan(disk_hints=DiskHints(serial="S-C")), DISKS)
    assert (disk.key, disk.path, disk.size, disk.sector_size) == ("", "/dev/sdc", 40 * GIB, 4096)
    assert disk.names == ("sdc", "/dev/sdc")
    (default,) = choose_disks(plan(), DISKS)
    assert default.path == "/dev/sda"  # the smallest, ties by name


def test_ondisk_names_pick_disks_by_name_path_or_by_path():
    storage = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="/dev/sdb"),
                                     PartSpec("/srv", grow=True, ondisk="disk/by-path/pci-0-ata-1")])
    chosen = choose_disks(plan(storage), DISKS)
    assert [(d.key, d.path) for d in chosen] == [("/dev/sdb", "/dev/sdb"), ("disk/by-path/pci-0-ata-1", "/dev/sda")]
    assert chosen[1].names == ("disk/by-path/pci-0-ata-1", "sda", "/dev/sda", "/dev/disk/by-path/pci-0-ata-1")


def test_per_disk_hints_pick_the_disk_for_a_name_and_order_follows_the_storage_section():
    storage = DeploySpec(clearpart=ClearPart(mode="all", drives=["system", "data"]),
                         partitions=[PartSpec("/", grow=True, ondisk="system"), PartSpec("/srv", ondisk="data")])
    chosen = choose_disks(plan(storage, disks={"data": DiskHints(serial="S-A"), "system": DiskHints(serial="s-c")}),
                          DISKS)
    assert [(d.key, d.path) for d in chosen] == [("system", "/dev/sdc"), ("data", "/dev/sda")]


def test_boot_drive_comes_first_then_only_use():
    storage = DeploySpec(bootloader=Bootloader(boot_drive="sdb"), ignoredisk=IgnoreDisk(only_use=["sda", "sdb"]))
    assert [d.key for d in choose_disks(plan(storage), DISKS)] == ["sdb", "sda"]


def test_a_wrong_hint_fails_naming_the_candidates():
    storage = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="data", line=4)])
    with pytest.raises(BadInput, match="no disk matches data .serial=NOPE.; disks present: /dev/sda") as e:
        choose_disks(plan(storage, disks={"data": DiskHints(serial="NOPE")}), DISKS)
    assert e.value.location == "plan.disks.data"


def test_an_unmatched_name_fails_at_its_kickstart_line():
    storage = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="nvme0n1", line=4)])
    with pytest.raises(BadInput, match="no disk matches nvme0n1") as e:
        choose_disks(plan(storage), DISKS)
    assert e.value.location == "storage.partitions[0] (kickstart line 4)"


def test_an_ambiguous_hint_fails_listing_the_matches():
    storage = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="data")])
    with pytest.raises(BadInput, match="2 disks match data .*refusing to guess: /dev/sda.*; /dev/sdb"):
        choose_disks(plan(storage, disks={"data": DiskHints(model="QEMU HARDDISK")}), DISKS)


def test_two_names_for_one_disk_fail():
    storage = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="sda"), PartSpec("/srv", ondisk="/dev/sda")])
    with pytest.raises(BadInput, match="/dev/sda and sda both name /dev/sda"):
        choose_disks(plan(storage), DISKS)


def test_ignoredisk_removes_candidates():
    storage = DeploySpec(ignoredisk=IgnoreDisk(ignore=["sdc"]), partitions=[PartSpec("/", ondisk="big")])
    with pytest.raises(BadInput, match="no disk matches big"):
        choose_disks(plan(storage, disks={"big": DiskHints(min_size_gib=30)}), DISKS)
    read_only = [Disk("sda", "/dev/sda", 20 * GIB, read_only=True)]
    with pytest.raises(BadInput, match="no disk matches sda"):
        choose_disks(plan(DeploySpec(partitions=[PartSpec("/", ondisk="sda")])), read_only)


def test_disk_hints_pick_which_named_disk_is_first():
    storage = DeploySpec(ignoredisk=IgnoreDisk(only_use=["sda", "sdc"]))
    assert [d.key for d in choose_disks(plan(storage, disk_hints=DiskHints(serial="S-C")), DISKS)] == ["sdc", "sda"]
    with pytest.raises(BadInput, match="match 0 of the disks the storage section names") as e:
        choose_disks(plan(storage, disk_hints=DiskHints(serial="S-B")), DISKS)
    assert e.value.location == "plan.disk_hints"
