"""The pure storage planner: plain layouts as plan_layout makes them, LVM/thinp/btrfs autopart, RAID1 over two
disks (UEFI and BIOS), btrfs subvolumes, LUKS, --ondisk layouts, and located bad input."""
from __future__ import annotations

import itertools

import pytest

from deployer.partition import plan_layout
from deployer.storage.model import Array, BtrfsVolume, Crypt, LogicalVolume, TargetDisk, VolumeGroup
from deployer.storage.planner import plan_storage
from metalstream.contracts.deployspec import (AutoPart, Bootloader, BtrfsSpec, ClearPart, DeploySpec, LogVolSpec,
                                              PartSpec, RaidSpec, VolGroupSpec)
from metalstream.errors import BadInput

GIB = 1 << 30
MIB = 1 << 20
RAID = "A19D880F-05FC-4D3B-A006-743F0F84911E"
LVM = "E6D6D379-F507-44C2-A23C-238F2A3DF928"
LINUX = "0FC63DAF-8483-4772-8E79-3D69D8477DE4"


def counter_uuids():
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def one(size_gib=40, key=""):
    return [TargetDisk(key, "/dev/vda", size_gib * GIB, names=("vda", "/dev/vda"))]


def two(size_gib=20):
    return [TargetDisk("sda", "/dev/sda", size_gib * GIB, names=("sda", "/dev/sda")),
            TargetDisk("sdb", "/dev/sdb", size_gib * GIB, names=("sdb", "/dev/sdb"))]


def plan(spec, mode="uefi", disks=None, **kw):
    kw.setdefault("memory_bytes", 4 * GIB)
    return plan_storage(spec, mode, disks or one(), new_uuid=counter_uuids(), **kw)


def mounts(p):
    return {f.mountpoint: f for f in p.filesystems if f.mountpoint}


PLAIN_SPECS = [
    None,
    DeploySpec(),
    DeploySpec(autopart=AutoPart(fstype="xfs", noswap=False)),
    DeploySpec(reqpart=True, reqpart_add_boot=True, autopart=AutoPart()),
    DeploySpec(partitions=[PartSpec("/boot", size_mib=512, line=3), PartSpec("swap", size_mib=2048, line=4),
                           PartSpec("/", grow=True, fstype="xfs", line=5), PartSpec("/srv", size_mib=100, grow=True)]),
    DeploySpec(partitions=[PartSpec("biosboot", fstype="biosboot"), PartSpec("/boot/efi", fstype="efi", size_mib=600),
                           PartSpec("/", grow=True, ondisk="vda")]),
    DeploySpec(partitions=[PartSpec("/", grow=True)], bootloader=Bootloader(location="none")),
    DeploySpec(partitions=[PartSpec("swap", recommended=True), PartSpec("/", grow=True)]),
]


@pytest.mark.parametrize("mode", ["bios", "uefi", "both"])
@pytest.mark.parametrize("spec", PLAIN_SPECS)
def test_plain_layouts_are_exactly_plan_layouts(spec, mode):
    expected = plan_layout(40 * GIB, mode, spec, image_bytes=2 * GIB, memory_bytes=4 * GIB, new_uuid=counter_uuids())
    p = plan(spec, mode, image_bytes=2 * GIB)
    assert len(p.disks) == 1 and p.disks[0].layout == expected and p.devices == ()
    formatted = [q for q in expected.partitions if q.fstype]
    assert [(f.device, f.fstype, f.uuid, f.mountpoint) for f in p.filesystems] == [
        (f"part::{q.number}", q.fstype, q.fs_uuid, None if q.fstype == "swap" else q.mountpoint) for q in formatted]
    assert p.root.device == f"part::{expected.root.number}"


def test_plain_layout_keeps_kickstart_lines_and_options():
    spec = DeploySpec(partitions=[PartSpec("/", grow=True, fsoptions="noatime", label="root", line=7)])
    assert (plan(spec).root.line, plan(spec).root.options, plan(spec).root.label) == (7, "noatime", "root")


def test_lvm_autopart_is_anacondas_layout():
    p = plan(DeploySpec(autopart=AutoPart(scheme="lvm", nohome=False, noswap=False, line=4)), disks=one(500))
    layout = p.disks[0].layout
    assert [(q.role, q.mountpoint, q.member) for q in layout.partitions] == [
        ("esp", "/boot/efi", None), ("boot", "/boot", None), ("member", None, "pv.autopart")]
    assert layout.partitions[2].type_guid == LVM and layout.length(layout.partitions[1]) == GIB
    (vg,) = p.volume_groups
    assert (vg.name, vg.pvs, vg.pesize_kib, vg.line) == ("system", ("part::3",), 4096, 4)
    lvs = {d.name: d for d in p.devices if isinstance(d, LogicalVolume)}
    assert list(lvs) == ["swap", "root", "home"]
    assert lvs["swap"].size_mib == 4096  # recommended for 4 GiB of memory
    assert lvs["root"].size_mib == 70 * 1024  # anaconda caps / at 70 GiB when there is a /home
    assert lvs["swap"].size_mib + lvs["root"].size_mib + lvs["home"].size_mib == vg.size_mib
    assert all(s.size_mib % 4 == 0 for s in lvs.values())
    assert mounts(p)["/"].device == "lv:system/root" and mounts(p)["/home"].device == "lv:system/home"
    assert [f.device for f in p.filesystems if f.fstype == "swap"] == ["lv:system/swap"]
    assert p.boot.device == "part::2" and not p.crypts


def test_lvm_autopart_without_home_or_swap_gives_root_everything():
    p = plan(DeploySpec(autopart=AutoPart(scheme="lvm", nohome=True, noswap=True)), disks=one(500))
    (vg,) = p.volume_groups
    (root,) = [d for d in p.devices if isinstance(d, LogicalVolume)]
    assert root.name == "root" and root.size_mib == vg.size_mib > 70 * 1024
    assert "/home" not in mounts(p)


def test_vg_size_is_the_pvs_extents_less_metadata():
    p = plan(DeploySpec(autopart=AutoPart(scheme="lvm")))
    layout = p.disks[0].layout
    pv_mib = layout.length(layout.partitions[-1]) // MIB
    assert p.volume_groups[0].size_mib == (pv_mib - 1) // 4 * 4


def test_swap_from_memory_needs_the_memory():
    with pytest.raises(BadInput, match="memory") as e:
        plan(DeploySpec(autopart=AutoPart(scheme="lvm", noswap=False, line=9)), memory_bytes=None)
    assert "kickstart line 9" in e.value.location


def test_thinp_autopart_pool_and_thin_volumes():
    p = plan(DeploySpec(autopart=AutoPart(scheme="thinp", nohome=False, noswap=False)), disks=one(500))
    (vg,) = p.volume_groups
    lvs = {d.name: d for d in p.devices if isinstance(d, LogicalVolume)}
    assert [(v.name, v.kind, v.pool) for v in lvs.values()] == [
        ("swap", "linear", None), ("pool00", "thinpool", None), ("root", "thin", "pool00"), ("home", "thin", "pool00")]
    pool = lvs["pool00"]
    assert pool.metadata_mib and lvs["swap"].size_mib + pool.size_mib + 2 * pool.metadata_mib <= vg.size_mib
    assert lvs["root"].size_mib == 70 * 1024 and lvs["root"].size_mib + lvs["home"].size_mib == pool.size_mib
    assert mounts(p)["/"].device == "lv:system/root"
    assert [d.ref for d in p.devices].index("lv:system/pool00") < [d.ref for d in p.devices].index("lv:system/root")


def test_btrfs_autopart_is_fedoras_layout():
    p = plan(DeploySpec(autopart=AutoPart(scheme="btrfs", nohome=False, noswap=True)))
    layout = p.disks[0].layout
    assert [(q.role, q.member) for q in layout.partitions] == [("esp", None), ("boot", None),
                                                                ("member", "btrfs.autopart")]
    assert layout.partitions[2].type_guid == LINUX
    (volume,) = p.btrfs_volumes
    assert (volume.label, volume.subvolumes, volume.members) == ("system", ("root", "home"), ("part::3",))
    root, home = mounts(p)["/"], mounts(p)["/home"]
    assert (root.fstype, root.subvol, root.uuid, root.device) == ("btrfs", "root", volume.uuid, volume.ref)
    assert (home.subvol, home.uuid) == ("home", volume.uuid)


def test_encrypted_lvm_autopart_encrypts_the_pv():
    p = plan(DeploySpec(autopart=AutoPart(scheme="lvm", encrypted=True, luks_version="luks1")))
    (crypt,) = p.crypts
    assert crypt.backing == "part::3" and crypt.name == f"luks-{crypt.uuid}" and crypt.luks_version == "luks1"
    assert p.volume_groups[0].pvs == (crypt.ref,)
    assert p.stack_under(p.root.device) == ["lv:system/root", crypt.ref, "part::3"]


def test_encrypted_autopart_without_boot_is_refused():
    with pytest.raises(BadInput, match="noboot"):
        plan(DeploySpec(autopart=AutoPart(scheme="lvm", encrypted=True, noboot=True, line=3)))


def raid1_spec(esp_on_raid: bool) -> DeploySpec:
    parts = [PartSpec("raid.11", size_mib=1024, ondisk="sda"), PartSpec("raid.12", size_mib=1024, ondisk="sdb"),
             PartSpec("raid.31", size_mib=1, grow=True, ondisk="sda"),
             PartSpec("raid.32", size_mib=1, grow=True, ondisk="sdb")]
    raids = [RaidSpec("/boot", "boot", "raid1", ["raid.11", "raid.12"], line=10),
             RaidSpec("/", "root", "1", ["raid.31", "raid.32"], fstype="xfs", line=11)]
    if esp_on_raid:
        parts += [PartSpec("raid.21", size_mib=600, ondisk="sda"), PartSpec("raid.22", size_mib=600, ondisk="sdb")]
        raids.append(RaidSpec("/boot/efi", "esp", "1", ["raid.21", "raid.22"], fstype="efi", line=12))
    return DeploySpec(partitions=parts, raids=raids)


def test_raid1_two_disks_uefi_esp_on_raid_with_metadata_1_0():
    p = plan(raid1_spec(esp_on_raid=True), "uefi", two())
    for disk in p.disks:
        assert [(q.role, q.member and q.member[:5], q.type_guid) for q in disk.layout.partitions] == [
            ("member", "raid.", RAID), ("member", "raid.", RAID), ("member", "raid.", RAID)]
    arrays = {a.name: a for a in p.arrays}
    assert arrays["esp"].metadata == "1.0" and arrays["boot"].metadata == arrays["root"].metadata == "1.2"
    assert arrays["root"].members == ("part:sda:2", "part:sdb:2") and arrays["root"].level == "raid1"
    assert all(len(a.uuid) == 35 and a.uuid.count(":") == 3 for a in arrays.values())
    assert len({a.uuid for a in arrays.values()}) == 3
    assert (mounts(p)["/boot/efi"].fstype, mounts(p)["/boot/efi"].device) == ("vfat", "md:esp")
    assert (mounts(p)["/"].fstype, mounts(p)["/"].device, mounts(p)["/"].line) == ("xfs", "md:root", 11)
    assert not p.notes


def test_raid1_two_disks_bios_gets_a_bios_boot_partition_on_each_disk():
    p = plan(raid1_spec(esp_on_raid=False), "bios", two())
    for disk in p.disks:
        assert [q.role for q in disk.layout.partitions] == ["biosboot", "member", "member"]
    assert [d.ref for d in p.devices] == ["md:boot", "md:root"]
    assert any("sdb" in note for note in p.notes)


def test_raid_layout_without_an_esp_puts_one_on_the_first_disk_only():
    p = plan(raid1_spec(esp_on_raid=False), "both", two())
    sda, sdb = p.disks
    assert [q.role for q in sda.layout.partitions] == ["biosboot", "esp", "member", "member"]
    assert [q.role for q in sdb.layout.partitions] == ["biosboot", "member", "member"]
    assert any("ESP on sda only" in note for note in p.notes)


@pytest.mark.parametrize("level,count,spares,usable", [
    ("raid0", 2, 0, 2 * 999), ("raid1", 3, 1, 999), ("raid5", 4, 0, 3 * 999), ("raid6", 4, 0, 2 * 999),
    ("raid10", 4, 0, 2 * 999), ("raid4", 3, 0, 2 * 999)])
def test_array_sizes_per_level(level, count, spares, usable):
    disks = [TargetDisk(f"d{i}", f"/dev/d{i}", 4 * GIB, names=(f"d{i}",)) for i in range(count)]
    parts = [PartSpec(f"raid.{i}", size_mib=1000, ondisk=f"d{i}") for i in range(count)]
    spec = DeploySpec(partitions=[*parts, PartSpec("/", grow=True)],
                      raids=[RaidSpec("pv.2", "data", level, [f"raid.{i}" for i in range(count)], spares=spares)],
                      volgroups=[VolGroupSpec("vg", ["pv.2"], pesize_kib=1024)],
                      logvols=[LogVolSpec("/srv", "srv", "vg", grow=True)])
    p = plan(spec, "uefi", disks)
    (array,) = p.arrays
    assert (array.level, array.spares, len(array.members)) == (level, spares, count)
    # the volume group on the array tells its usable size: 1 MiB extents of (usable - 1 MiB LVM metadata)
    assert p.volume_groups[0].pvs == ("md:data",) and p.volume_groups[0].size_mib == usable - 1


def test_btrfs_volume_with_two_subvolumes():
    spec = DeploySpec(partitions=[PartSpec("/boot", size_mib=1024), PartSpec("btrfs.01", size_mib=4000, ondisk="sda"),
                                  PartSpec("btrfs.02", size_mib=4000, ondisk="sdb")],
                      btrfs=[BtrfsSpec("none", members=["btrfs.01", "btrfs.02"], data_level="raid1",
                                       metadata_level="raid1", label="data", line=20),
                             BtrfsSpec("/", subvol=True, name="root", volume="data", line=21),
                             BtrfsSpec("/var", subvol=True, name="var", volume="data", fsoptions="compress=zstd")])
    p = plan(spec, "uefi", two())
    (volume,) = p.btrfs_volumes
    assert (volume.members, volume.data_level, volume.subvolumes) == (("part:sda:3", "part:sdb:1"), "raid1",
                                                                       ("root", "var"))
    assert [(f.mountpoint, f.subvol, f.options) for f in p.filesystems if f.fstype == "btrfs"] == [
        ("/", "root", None), ("/var", "var", "compress=zstd")]


def test_btrfs_volume_mounted_itself_has_no_subvol():
    spec = DeploySpec(partitions=[PartSpec("btrfs.01", size_mib=1, grow=True)],
                      btrfs=[BtrfsSpec("/", members=["btrfs.01"], label="top")])
    root = plan(spec).root
    assert (root.fstype, root.subvol, root.label) == ("btrfs", None, "top")


def test_luks_on_lvm_root():
    spec = DeploySpec(partitions=[PartSpec("/boot", size_mib=1024), PartSpec("pv.01", size_mib=1, grow=True,
                                                                             encrypted=True, cipher="aes-xts-plain64")],
                      volgroups=[VolGroupSpec("vg0", ["pv.01"])],
                      logvols=[LogVolSpec("/", "root", "vg0", size_mib=4096, grow=True),
                               LogVolSpec("/srv", "srv", "vg0", size_mib=1024, encrypted=True, luks_version="luks1")])
    p = plan(spec)
    pv_crypt, srv_crypt = p.crypts
    assert (pv_crypt.backing, pv_crypt.luks_version, pv_crypt.cipher) == ("part::3", "luks2", "aes-xts-plain64")
    assert (srv_crypt.backing, srv_crypt.luks_version) == ("lv:vg0/srv", "luks1")
    assert mounts(p)["/srv"].device == srv_crypt.ref and mounts(p)["/"].device == "lv:vg0/root"
    refs = [d.ref for d in p.devices]
    assert refs.index(pv_crypt.ref) < refs.index("vg:vg0") < refs.index("lv:vg0/srv") < refs.index(srv_crypt.ref)
    layout = p.disks[0].layout
    assert p.volume_groups[0].size_mib == (layout.length(layout.partitions[-1]) // MIB - 16 - 1) // 4 * 4


def test_encrypted_root_partition():
    p = plan(DeploySpec(partitions=[PartSpec("/boot", size_mib=1024), PartSpec("/", grow=True, encrypted=True)]))
    (crypt,) = p.crypts
    assert p.root.device == crypt.ref and crypt.backing == "part::3"
    assert p.root.uuid == p.disks[0].layout.partitions[2].fs_uuid


def test_encrypted_root_needs_a_separate_boot():
    with pytest.raises(BadInput, match="separate, unencrypted /boot") as e:
        plan(DeploySpec(partitions=[PartSpec("/", grow=True, encrypted=True, line=8)]))
    assert e.value.location == "storage.partitions[0] (kickstart line 8)"


def test_two_disk_ondisk_layout():
    spec = DeploySpec(partitions=[PartSpec("/boot", size_mib=1024), PartSpec("/", grow=True, ondisk="sda"),
                                  PartSpec("/srv", grow=True, ondisk="/dev/sdb"), PartSpec("swap", size_mib=512,
                                                                                           ondisk="sdb")])
    p = plan(spec, "uefi", two())
    sda, sdb = p.disks
    assert [q.mountpoint for q in sda.layout.partitions] == ["/boot/efi", "/boot", "/"]
    assert [q.mountpoint for q in sdb.layout.partitions] == ["/srv", "swap"]
    assert mounts(p)["/srv"].device == "part:sdb:1" and p.devices == ()


def test_a_disk_only_cleared_gets_an_empty_table_and_an_unnamed_one_is_left_alone():
    spec = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="sda"), PartSpec("pv.1", size_mib=1, grow=True)],
                      volgroups=[VolGroupSpec("vg", ["pv.1"])], logvols=[LogVolSpec("/srv", "srv", "vg", grow=True)],
                      clearpart=ClearPart(mode="all", drives=["sda", "sdb"]))
    p = plan(spec, "uefi", two())
    assert [(d.key, len(d.layout.partitions)) for d in p.disks] == [("sda", 3), ("sdb", 0)]
    spec.clearpart = None
    assert [d.key for d in plan(spec, "uefi", two()).disks] == ["sda"]


def test_logvol_percent_reserved_space_pesize_and_maxsize():
    spec = DeploySpec(partitions=[PartSpec("pv.1", size_mib=10241, line=2), PartSpec("/", size_mib=2048)],
                      volgroups=[VolGroupSpec("vg", ["pv.1"], pesize_kib=8192, reserved_space_mib=1000)],
                      logvols=[LogVolSpec("/a", "a", "vg", size_mib=1001),
                               LogVolSpec("/b", "b", "vg", percent=50),
                               LogVolSpec("/c", "c", "vg", size_mib=100, grow=True, max_size_mib=2000),
                               LogVolSpec("/d", "d", "vg", size_mib=100, grow=True)])
    p = plan(spec)
    vg = p.volume_groups[0]
    assert vg.size_mib == (1280 - 125) * 8  # 1280 extents of 8 MiB, 1000 MiB reserved rounded up to 125
    sizes = {d.name: d.size_mib for d in p.devices if isinstance(d, LogicalVolume)}
    assert sizes["a"] == 1008  # rounded up to extents
    assert sizes["b"] == (vg.size_mib - 1008 - 104 - 104) // 2 // 8 * 8
    assert sizes["c"] == 2000 and sum(sizes.values()) == vg.size_mib


# -- bad input, located at the kickstart line ---------------------------------------------------------------


def test_raid1_with_one_member_is_refused():
    spec = DeploySpec(partitions=[PartSpec("raid.01", size_mib=1, grow=True)],
                      raids=[RaidSpec("/", "root", "raid1", ["raid.01"], line=14)])
    with pytest.raises(BadInput, match="raid1 needs at least 2 active members") as e:
        plan(spec)
    assert e.value.location == "storage.raids[0] (kickstart line 14)"


def test_lv_larger_than_its_vg_is_refused():
    spec = DeploySpec(partitions=[PartSpec("pv.01", size_mib=2048)], volgroups=[VolGroupSpec("vg", ["pv.01"])],
                      logvols=[LogVolSpec("/", "root", "vg", size_mib=1024, line=12),
                               LogVolSpec("/srv", "srv", "vg", size_mib=4096, line=13)])
    with pytest.raises(BadInput, match="srv .4096 MiB. does not fit in volume group vg") as e:
        plan(spec)
    assert e.value.location == "storage.logvols[1] (kickstart line 13)"


def test_ondisk_naming_no_chosen_disk_is_refused():
    spec = DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="sdc", line=5), PartSpec("pv.1", ondisk="sda")])
    with pytest.raises(BadInput, match="--ondisk=sdc names no chosen disk .chosen: sda") as e:
        plan(spec, "uefi", two())
    assert e.value.location == "storage.partitions[0] (kickstart line 5)"
    with pytest.raises(BadInput, match="--ondisk=sdc"):
        plan(DeploySpec(partitions=[PartSpec("/", grow=True, ondisk="sdc", line=5)]))


def test_subvolume_outside_a_btrfs_volume_is_refused():
    spec = DeploySpec(partitions=[PartSpec("btrfs.01", size_mib=1, grow=True)],
                      btrfs=[BtrfsSpec("none", members=["btrfs.01"], label="data"),
                             BtrfsSpec("/", subvol=True, name="root", volume="other", line=30)])
    with pytest.raises(BadInput, match="outside any btrfs volume.*volumes: data") as e:
        plan(spec)
    assert e.value.location == "storage.btrfs[1] (kickstart line 30)"


@pytest.mark.parametrize("spec,location", [
    (DeploySpec(partitions=[PartSpec("/boot", size_mib=1024, encrypted=True, line=3), PartSpec("/", grow=True)]),
     "storage.partitions[0] (kickstart line 3)"),
    (DeploySpec(partitions=[PartSpec("raid.1", size_mib=1024), PartSpec("raid.2", size_mib=1024),
                            PartSpec("/", grow=True)],
                raids=[RaidSpec("/boot", "boot", "1", ["raid.1", "raid.2"], encrypted=True, line=6)]),
     "storage.raids[0] (kickstart line 6)"),
])
def test_encrypted_boot_is_refused(spec, location):
    with pytest.raises(BadInput, match="cannot be encrypted") as e:
        plan(spec)
    assert e.value.location == location


def test_disk_too_small():
    spec = DeploySpec(partitions=[PartSpec("raid.1", size_mib=30000, ondisk="sda"),
                                  PartSpec("raid.2", size_mib=30000, ondisk="sdb")],
                      raids=[RaidSpec("/", "root", "1", ["raid.1", "raid.2"])])
    with pytest.raises(BadInput, match="disk too small") as e:
        plan(spec, "uefi", two())
    assert e.value.location == "disk sda"


def test_root_lv_must_hold_the_image():
    spec = DeploySpec(partitions=[PartSpec("pv.1", size_mib=1, grow=True)], volgroups=[VolGroupSpec("vg", ["pv.1"])],
                      logvols=[LogVolSpec("/", "root", "vg", size_mib=2048, line=9),
                               LogVolSpec("/srv", "srv", "vg", grow=True)])
    with pytest.raises(BadInput, match="/ would get 2048 MiB but the image needs 3750 MiB") as e:
        plan(spec, image_bytes=3000 * MIB)
    assert e.value.location == "storage.logvols[0] (kickstart line 9)"
    assert plan(spec, image_bytes=1000 * MIB).root.device == "lv:vg/root"


@pytest.mark.parametrize("spec,message", [
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=100)], logvols=[LogVolSpec("/", "root", "vg", size_mib=10)]),
     "volume group 'vg' is not defined"),
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=100), PartSpec("/", grow=True)]),
     "pv.1 is a member of no volume group"),
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=100), PartSpec("/", grow=True)],
                volgroups=[VolGroupSpec("vg", ["pv.1", "pv.2"])]), "pv.2 is not a pv.. member"),
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=100), PartSpec("/", grow=True)],
                volgroups=[VolGroupSpec("vg", ["pv.1"]), VolGroupSpec("vg2", ["pv.1"])]), "already used by"),
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=1, grow=True)], volgroups=[VolGroupSpec("vg", ["pv.1"])],
                logvols=[LogVolSpec("/", "root", "vg", grow=True, thin=True, poolname="pool")]), "no thin pool"),
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=1, grow=True)], volgroups=[VolGroupSpec("vg", ["pv.1"])],
                logvols=[LogVolSpec("/", "root", "vg", percent=60), LogVolSpec("/a", "a", "vg", percent=60)]),
     "more than 100"),
    (DeploySpec(partitions=[PartSpec("raid.1", size_mib=100), PartSpec("raid.2", size_mib=100),
                            PartSpec("/", grow=True)],
                raids=[RaidSpec("/srv", "srv", "raid7", ["raid.1", "raid.2"])]), "unknown RAID level"),
    (DeploySpec(partitions=[PartSpec("raid.1", size_mib=600), PartSpec("raid.2", size_mib=600),
                            PartSpec("/", grow=True)],
                raids=[RaidSpec("/boot/efi", "esp", "0", ["raid.1", "raid.2"], fstype="efi")]), "must be RAID1"),
    (DeploySpec(partitions=[PartSpec("btrfs.1", size_mib=1, grow=True)],
                btrfs=[BtrfsSpec("/", members=["btrfs.1"], data_level="raid1")]), "raid1 needs at least 2"),
    (DeploySpec(partitions=[PartSpec("pv.1", size_mib=1, grow=True)], volgroups=[VolGroupSpec("vg", ["pv.1"])],
                logvols=[LogVolSpec("/srv", "srv", "vg", grow=True)]), "no device for /"),
    (DeploySpec(partitions=[PartSpec("/", grow=True), PartSpec("pv.1", size_mib=100)],
                volgroups=[VolGroupSpec("vg", ["pv.1"])], logvols=[LogVolSpec("/", "root", "vg", size_mib=10)]),
     "/ is given twice"),
])
def test_bad_stacks_are_located(spec, message):
    with pytest.raises(BadInput, match=message):
        plan(spec)


def test_the_plan_names_its_devices_in_creation_order():
    spec = raid1_spec(esp_on_raid=True)
    spec.raids[1] = RaidSpec("pv.9", "pv", "1", ["raid.31", "raid.32"], encrypted=True)
    spec.volgroups = [VolGroupSpec("vg", ["pv.9"])]
    spec.logvols = [LogVolSpec("/", "root", "vg", grow=True)]
    p = plan(spec, "uefi", two())
    kinds = [type(d).__name__ for d in p.devices]
    assert kinds == ["Array", "Array", "Crypt", "Array", "VolumeGroup", "LogicalVolume"]
    assert p.stack_under("lv:vg/root")[:3] == ["lv:vg/root", p.crypts[0].ref, "md:pv"]
    assert isinstance(p.device("md:pv"), Array) and isinstance(p.device(p.crypts[0].ref), Crypt)
    assert isinstance(p.device("vg:vg"), VolumeGroup) and not isinstance(p.device("vg:vg"), BtrfsVolume)


def test_plain_layout_with_several_chosen_disks_goes_on_the_first():
    expected = plan_layout(20 * GIB, "uefi", DeploySpec(autopart=AutoPart()), new_uuid=counter_uuids())
    p = plan(DeploySpec(autopart=AutoPart()), "uefi", two())
    assert [d.key for d in p.disks] == ["sda"] and p.disks[0].layout == expected
    cleared = plan(DeploySpec(autopart=AutoPart(), clearpart=ClearPart(mode="all")), "uefi", two())
    assert [(d.key, len(d.layout.partitions)) for d in cleared.disks] == [("sda", 2), ("sdb", 0)]
    assert cleared.notes == ("sdb: cleared (clearpart), no partitions",)


def test_esp_on_a_logical_volume_is_refused():
    spec = DeploySpec(partitions=[PartSpec("pv.1", size_mib=1, grow=True)], volgroups=[VolGroupSpec("vg", ["pv.1"])],
                      logvols=[LogVolSpec("/", "root", "vg", size_mib=2048),
                               LogVolSpec("/boot/efi", "esp", "vg", size_mib=600, fstype="efi", line=7)])
    with pytest.raises(BadInput, match="ESP cannot be a logical volume") as e:
        plan(spec)
    assert e.value.location == "storage.logvols[1] (kickstart line 7)"


def test_encrypted_btrfs_autopart_encrypts_the_btrfs_and_swap_partitions():
    p = plan(DeploySpec(autopart=AutoPart(scheme="btrfs", encrypted=True, noswap=False)))
    assert [c.backing for c in p.crypts] == ["part::3", "part::4"]
    assert p.btrfs_volumes[0].members == (p.crypts[1].ref,)
    assert [f.device for f in p.filesystems if f.fstype == "swap"] == [p.crypts[0].ref]


def test_encrypted_plain_autopart_encrypts_root_and_swap_and_keeps_boot_plain():
    p = plan(DeploySpec(autopart=AutoPart(encrypted=True, noswap=False, cipher="aes-xts-plain64", line=2)), "both")
    assert [q.role for q in p.disks[0].layout.partitions] == ["biosboot", "esp", "boot", "swap", "root"]
    assert [(c.backing, c.cipher, c.line) for c in p.crypts] == [("part::4", "aes-xts-plain64", 2),
                                                                 ("part::5", "aes-xts-plain64", 2)]
    assert p.root.device == p.crypts[1].ref and p.boot.device == "part::3"


def test_autopart_swap_from_memory_takes_at_most_a_tenth_of_the_disk():
    """anaconda's swap_suggestion: a 12 GiB machine would get 6 GiB of swap, but on a 6 GiB disk at most 614 MiB."""
    from deployer.storage.planner import plan_storage
    from deployer.storage.model import TargetDisk
    from metalstream.contracts.deployspec import AutoPart, DeploySpec

    for scheme in ("lvm", "btrfs"):
        spec = DeploySpec(autopart=AutoPart(scheme=scheme, noswap=False, nohome=False))
        plan = plan_storage(spec, "uefi", [TargetDisk("", "disk.img", 6 << 30)], image_bytes=1 << 30,
                            memory_bytes=12 << 30)
        swap = [f for f in plan.filesystems if f.fstype == "swap"]
        assert len(swap) == 1
        text = " ".join(plan.notes)
        sizes = [lv.size_mib for lv in plan.devices if getattr(lv, "name", "") == "swap"] or \
            [p.size * 512 // (1 << 20) for d in plan.disks for p in d.layout.partitions if p.role == "swap"]
        assert sizes and sizes[0] <= 6 * 1024 // 10 + 4, (scheme, sizes, text)
    big = plan_storage(DeploySpec(autopart=AutoPart(scheme="lvm", noswap=False)), "uefi",
                       [TargetDisk("", "disk.img", 200 << 30)], image_bytes=1 << 30, memory_bytes=12 << 30)
    assert [lv.size_mib for lv in big.devices if getattr(lv, "name", "") == "swap"] == [6 * 1024]


def test_an_encrypted_layout_without_a_passphrase_is_refused_at_plan_time_at_its_line(tmp_path):
    """`--encrypted` and no `encryption.passphrase`: refused while planning (also for --dry-run), at the kickstart
    line of the first encrypted device, and the disk image file is never created."""
    from deployer.blockdev import open_target
    from deployer.install import prepare_storage
    from metalstream.contracts.deployspec import PartSpec, VolGroupSpec
    from metalstream.contracts.plan import ImageRef, Plan

    spec = DeploySpec(reqpart=True, reqpart_add_boot=True,
                      partitions=[PartSpec("pv.01", size_mib=3000, grow=True, encrypted=True, line=4)],
                      volgroups=[VolGroupSpec("vg", ["pv.01"], line=5)],
                      logvols=[LogVolSpec("/", "root", "vg", fstype="ext4", size_mib=2000, grow=True, line=6)])
    image = ImageRef(name="img", url="/nonexistent/img.tar.zst", sha256="0" * 64, size=1)
    disk = tmp_path / "disk.img"
    with pytest.raises(BadInput, match="no passphrase") as refused:
        prepare_storage(Plan(image=image, storage=spec, boot_mode="uefi"),
                        {"vda": open_target(str(disk), create_size=6 << 30)})
    assert refused.value.location == "storage (kickstart line 4)"
    assert not disk.exists()
