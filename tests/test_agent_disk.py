"""Disk inventory (pyudev, real) and pure disk selection by hints."""
from __future__ import annotations

import subprocess

import pytest

from deployer.disks import GIB, Disk, list_disks, select_disk
from metalstream.contracts.plan import DiskHints
from metalstream.errors import BadInput

SDA = Disk("sda", "/dev/sda", 480 * GIB, serial="S1", wwn="0x5000c500a1b2c3d4", model="SAMSUNG MZ7LH480",
           by_path="/dev/disk/by-path/pci-0000:00:17.0-ata-1", rotational=False)
SDB = Disk("sdb", "/dev/sdb", 480 * GIB, serial="S2", wwn="0x5000c500a1b2c3d5", model="SAMSUNG MZ7LH480",
           by_path="/dev/disk/by-path/pci-0000:00:17.0-ata-2", rotational=False, partitions=("sdb1",))
SDC = Disk("sdc", "/dev/sdc", 4000 * GIB, serial="H1", model="HGST HUS726T4", rotational=True)
USB = Disk("sdd", "/dev/sdd", 32 * GIB, serial="U1", model="Cruzer", removable=True)
TINY = Disk("vdb", "/dev/vdb", 2 * GIB)
DISKS = [SDA, SDB, SDC, USB, TINY]


@pytest.mark.parametrize("hints, expected", [
    (DiskHints(serial="S2"), SDB),
    (DiskHints(serial="s2"), SDB),  # serials compare case-insensitively
    (DiskHints(wwn="0x5000c500a1b2c3d4"), SDA),
    (DiskHints(by_path="pci-0000:00:17.0-ata-2"), SDB),
    (DiskHints(by_path="/dev/disk/by-path/pci-0000:00:17.0-ata-1"), SDA),
    (DiskHints(name="/dev/sdc"), SDC),
    (DiskHints(name="sdc"), SDC),
    (DiskHints(rotational=True), SDC),
    (DiskHints(model="SAMSUNG MZ7LH480", serial="S1"), SDA),
    (DiskHints(min_size_gib=1000), SDC),
    (DiskHints(max_size_gib=3), TINY),
])
def test_hints_pick_exactly_one_disk(hints, expected):
    assert select_disk(DISKS, hints) == expected


def test_ambiguous_hints_fail_listing_the_candidates():
    with pytest.raises(BadInput) as info:
        select_disk(DISKS, DiskHints(model="SAMSUNG MZ7LH480"))
    message = str(info.value)
    assert info.value.location == "plan.disk_hints"
    assert "2 disks match the hints (model=SAMSUNG MZ7LH480)" in message
    assert "/dev/sda 480.0 GiB" in message and "/dev/sdb 480.0 GiB" in message and "/dev/sdc" not in message


def test_unmatched_hints_fail_listing_every_disk():
    with pytest.raises(BadInput, match=r"no disk matches the hints \(serial=NOPE\); disks present: /dev/sda .*/dev/vdb"):
        select_disk(DISKS, DiskHints(serial="NOPE"))
    with pytest.raises(BadInput, match="no disk matches"):
        select_disk(DISKS, DiskHints(serial="S1", rotational=True))  # every hint must match


def test_default_policy_smallest_non_removable_of_8_gib():
    assert select_disk(DISKS, DiskHints()) == SDA  # sda/sdb tie on size: the first by name
    assert select_disk([SDC, USB, TINY], DiskHints()) == SDC
    with pytest.raises(BadInput, match="no non-removable disk of at least 8 GiB"):
        select_disk([USB, TINY], DiskHints())


def test_ignoredisk_filters_before_matching():
    assert select_disk(DISKS, DiskHints(), ignore=["sda"]) == SDB
    assert select_disk(DISKS, DiskHints(), only_use=["/dev/sdc"]) == SDC
    assert select_disk(DISKS, DiskHints(model="SAMSUNG MZ7LH480"), only_use=["sdb"]) == SDB


def test_read_only_disks_are_never_chosen():
    ro = Disk("sde", "/dev/sde", 16 * GIB, read_only=True)
    assert select_disk([ro, SDC], DiskHints()) == SDC
    with pytest.raises(BadInput):
        select_disk([ro, SDC], DiskHints(name="sde"))


def test_inventory_lists_the_same_whole_disks_as_lsblk():
    listed = subprocess.run(["lsblk", "-d", "-n", "-b", "-o", "NAME,TYPE,SIZE"], capture_output=True, text=True,
                            check=True).stdout.split("\n")
    expected = {}
    for line in listed:
        if not line.strip():
            continue
        name, kind, size = line.split()
        if kind == "disk" and int(size) > 0 and not name.startswith(("loop", "zram", "ram", "nbd", "md")):
            expected[name] = int(size)
    disks = list_disks()
    assert {d.name: d.size for d in disks} == expected
    for d in disks:
        assert d.path == f"/dev/{d.name}"
