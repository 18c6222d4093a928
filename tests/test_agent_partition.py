"""The pure partition planner: layouts per boot mode, kickstart `part` layouts, too-small disks, wipe rules."""
from __future__ import annotations

import itertools

import pytest

from deployer.partition import check_disk_use, describe, plan_layout, render_sfdisk
from metalstream.contracts.deployspec import AutoPart, Bootloader, ClearPart, DeploySpec, PartSpec
from metalstream.errors import BadInput

GIB = 1 << 30
MIB = 1 << 20
BIOS = "21686148-6449-6E6F-744E-656564454649"
ESP = "C12A7328-F81F-11D2-BA4B-00A0C93EC93B"
ROOT = "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709"
SWAP = "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"
HEADER = "label: gpt\nunit: sectors\nfirst-lba: 2048\nsector-size: 512\n\n"


def counter_uuids():
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def layout(size, mode, storage=None, **kw):
    return plan_layout(size, mode, storage, new_uuid=counter_uuids(), **kw)


def test_both_modes_default_layout_exact_script():
    lay = layout(4 * GIB, "both")
    assert render_sfdisk(lay) == HEADER + (
        f'start=2048, size=2048, type={BIOS}, name="bios"\n'
        f'start=4096, size=1048576, type={ESP}, name="esp"\n'
        f'start=1052672, size=7333888, type={ROOT}, name="root"\n')
    assert [(p.role, p.fstype, p.mountpoint, p.fs_uuid) for p in lay.partitions] == [
        ("biosboot", None, None, None),
        ("esp", "vfat", "/boot/efi", "0000-0000"),
        ("root", "ext4", "/", "00000000-0000-4000-8000-000000000002"),
    ]


def test_uefi_only_has_no_bios_boot_partition():
    lay = layout(4 * GIB, "uefi")
    assert render_sfdisk(lay) == HEADER + (
        f'start=2048, size=1048576, type={ESP}, name="esp"\n'
        f'start=1050624, size=7335936, type={ROOT}, name="root"\n')


def test_bios_only_has_no_esp():
    lay = layout(4 * GIB, "bios")
    assert render_sfdisk(lay) == HEADER + (
        f'start=2048, size=2048, type={BIOS}, name="bios"\n'
        f'start=4096, size=8382464, type={ROOT}, name="root"\n')


@pytest.mark.parametrize("size", [4 * GIB, 8 * GIB + 12345 * 512, 20 * GIB - 512])
def test_partitions_are_aligned_contiguous_and_inside_the_usable_area(size):
    lay = layout(size, "both")
    sectors = size // 512
    for p in lay.partitions:
        assert p.start % 2048 == 0 and p.size % 2048 == 0
    for a, b in zip(lay.partitions, lay.partitions[1:]):
        assert b.start == a.end + 1
    assert lay.partitions[-1].end <= sectors - 34  # the backup GPT takes the last 33 sectors
    assert sectors - 34 - lay.partitions[-1].end < 2048  # and root grows to the last whole MiB


def test_kickstart_part_layout_with_boot_swap_and_grow():
    storage = DeploySpec(reqpart=True, partitions=[
        PartSpec("/boot", fstype="ext4", size_mib=512),
        PartSpec("swap", size_mib=256),
        PartSpec("/", fstype="xfs", size_mib=2048, grow=True),
        PartSpec("/srv", fstype="ext4", size_mib=1024, grow=True, max_size_mib=3072, label="data"),
    ])
    lay = layout(20 * GIB, "both", storage)
    assert [(p.role, p.mountpoint, p.fstype, lay.length(p) // MIB) for p in lay.partitions] == [
        ("biosboot", None, None, 1),
        ("esp", "/boot/efi", "vfat", 512),
        ("boot", "/boot", "ext4", 512),
        ("swap", "swap", "swap", 256),
        ("root", "/", "xfs", 20478 - 3072 - 1 - 512 - 512 - 256),
        ("data", "/srv", "ext4", 3072),
    ]
    assert lay.partitions[4].type_guid == ROOT and lay.partitions[3].type_guid == SWAP
    assert lay.partitions[5].name == "srv" and lay.partitions[5].label == "data"
    assert [p.mountpoint for p in lay.mount_order()] == ["/", "/boot", "/srv"]


def test_growing_partitions_share_space_by_weight():
    storage = DeploySpec(reqpart=True, partitions=[PartSpec("/", size_mib=1024, grow=True),
                                                   PartSpec("/var", size_mib=3072, grow=True)])
    lay = layout(10 * GIB, "uefi", storage)
    root, var = lay.partitions[1], lay.partitions[2]
    total = (lay.length(root) + lay.length(var)) // MIB
    assert total == 10238 - 512  # 10 GiB minus the first MiB, the last (backup GPT) and the ESP
    assert abs(lay.length(var) / lay.length(root) - 3) < 0.01
    assert var.type_guid == LINUX


@pytest.mark.parametrize("mode, added", [("uefi", [("esp", "/boot/efi", 512)]),
                                         ("bios", [("biosboot", None, 1)]),
                                         ("both", [("biosboot", None, 1), ("esp", "/boot/efi", 512)])])
def test_part_layout_naming_no_boot_partition_gets_what_the_firmware_needs(mode, added):
    # anaconda's convenience: with a bootloader to install and no biosboot/ESP named, act as `reqpart` does
    storage = DeploySpec(partitions=[PartSpec("/boot", size_mib=1024), PartSpec("/", grow=True)],
                         bootloader=Bootloader(location="mbr"))
    lay = layout(8 * GIB, mode, storage)
    assert [(p.role, p.mountpoint, lay.length(p) // MIB) for p in lay.partitions][:len(added)] == added
    assert [p.role for p in lay.partitions][len(added):] == ["boot", "root"]
    assert [p.role for p in layout(8 * GIB, mode, DeploySpec(partitions=[PartSpec("/", grow=True)])).partitions] \
        == [role for role, _mount, _size in added] + ["root"]  # no bootloader line: one is installed too


def test_part_layout_naming_some_boot_partitions_must_name_all_the_firmware_needs():
    storage = DeploySpec(partitions=[PartSpec("/boot/efi", fstype="efi", size_mib=600), PartSpec("/", grow=True)])
    assert [p.role for p in layout(8 * GIB, "uefi", storage).partitions] == ["esp", "root"]
    with pytest.raises(BadInput, match="needs a biosboot partition.*part biosboot") as info:
        layout(8 * GIB, "both", storage)
    assert info.value.location == "storage.partitions"


@pytest.mark.parametrize("mode", ["uefi", "bios", "both"])
def test_without_boot_code_no_boot_partition_is_needed(mode):
    storage = DeploySpec(partitions=[PartSpec("/", grow=True)], bootloader=Bootloader(location="none"))
    assert [p.role for p in layout(8 * GIB, mode, storage).partitions] == ["root"]
    storage.reqpart = True  # asked for explicitly: still added
    assert [p.role for p in layout(8 * GIB, mode, storage).partitions][-1:] == ["root"]
    assert len(layout(8 * GIB, mode, storage).partitions) == (3 if mode == "both" else 2)


@pytest.mark.parametrize("parts, location, message", [
    ([PartSpec("/boot/efi", fstype="efi", size_mib=100), PartSpec("/", grow=True)],
     "storage.partitions[0] (kickstart line 7)", "at least 512 MiB"),
    ([PartSpec("/", fstype="btrfs", grow=True)], "storage.partitions[0] (kickstart line 7)", "unsupported filesystem"),
    ([PartSpec("/srv")], "storage.partitions", "no partition for /"),
    ([PartSpec("/", grow=True), PartSpec("/", size_mib=100)], "storage.partitions[1] (kickstart line 7)",
     "given twice"),
])
def test_bad_part_specs_are_located(parts, location, message):
    for p in parts:
        p.line = 7
    with pytest.raises(BadInput, match=message) as info:
        layout(8 * GIB, "both", DeploySpec(reqpart=True, partitions=parts))
    assert info.value.location == location


def test_autopart_fstype_and_swap():
    lay = layout(8 * GIB, "bios", DeploySpec(autopart=AutoPart(fstype="xfs", noswap=False)))
    assert [(p.role, p.fstype) for p in lay.partitions] == [("biosboot", None), ("swap", "swap"), ("root", "xfs")]


def test_too_small_disk_is_refused_with_sizes():
    with pytest.raises(BadInput, match=r"disk too small: 1024 MiB, the layout needs at least 1539 MiB"):
        layout(1 * GIB, "both")
    with pytest.raises(BadInput, match=r"image needs 3663 MiB \(2930 MiB unpacked"):
        layout(4 * GIB, "both", image_bytes=2930 * MIB)
    with pytest.raises(BadInput, match="layout needs at least"):
        layout(256 * MIB, "both", DeploySpec(reqpart=True, partitions=[PartSpec("/", size_mib=4096)]))


def test_describe_lists_every_partition():
    text = describe(layout(4 * GIB, "both"))
    assert "biosboot" in text and "/boot/efi" in text and "0000-0000" in text
    assert len(text.splitlines()) == 4


def test_existing_partitions_need_permission():
    names = ("sda", "/dev/sda")
    check_disk_use(None, disk_names=names, existing=())  # a blank disk needs nothing
    with pytest.raises(BadInput, match=r"already holds sda1, sda2; .*pass --wipe"):
        check_disk_use(None, disk_names=names, existing=("sda1", "sda2"))
    check_disk_use(DeploySpec(clearpart=ClearPart(mode="all")), disk_names=names, existing=("sda1",))
    check_disk_use(DeploySpec(zerombr=True), disk_names=names, existing=("sda1",))
    check_disk_use(DeploySpec(clearpart=ClearPart(mode="all", drives=["sda"])), disk_names=names, existing=("sda1",))
    with pytest.raises(BadInput, match="already holds"):
        check_disk_use(DeploySpec(clearpart=ClearPart(mode="all", drives=["sdb"])), disk_names=names,
                       existing=("sda1",))
    with pytest.raises(BadInput, match="use `clearpart --all`"):
        check_disk_use(DeploySpec(clearpart=ClearPart(mode="linux")), disk_names=names, existing=("sda1",))


def test_ondisk_must_be_the_target():
    storage = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="sdb")])
    with pytest.raises(BadInput) as info:
        check_disk_use(storage, disk_names=("sda", "/dev/sda"), existing=())
    assert info.value.location == "storage.partitions[0].ondisk"
    check_disk_use(storage, disk_names=("sdb", "/dev/sdb"), existing=())


def test_4k_sector_disks_are_planned_in_their_own_sectors():
    lay = layout(4 * GIB, "both", sector_size=4096)
    assert render_sfdisk(lay) == "label: gpt\nunit: sectors\nfirst-lba: 256\nsector-size: 4096\n\n" + (
        f'start=256, size=256, type={BIOS}, name="bios"\n'
        f'start=512, size=131072, type={ESP}, name="esp"\n'
        f'start=131584, size=916736, type={ROOT}, name="root"\n')
    assert lay.partitions[-1].end <= 4 * GIB // 4096 - 6  # backup GPT: 4 entry sectors + header
