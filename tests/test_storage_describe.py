"""describe(plan): the --dry-run tree, disks → partitions → RAID/LUKS/LVM/btrfs → filesystems → mount points."""
from __future__ import annotations

import itertools

from deployer.storage.describe import describe
from deployer.storage.model import TargetDisk
from deployer.storage.planner import plan_storage
from metalstream.contracts.deployspec import AutoPart, DeploySpec, LogVolSpec, PartSpec, RaidSpec, VolGroupSpec

GIB = 1 << 30


def counter_uuids():
    numbers = itertools.count(1)
    return lambda: f"00000000-0000-4000-8000-{next(numbers):012d}"


def two_disks():
    return [TargetDisk("sda", "/dev/sda", 20 * GIB, names=("sda",)), TargetDisk("sdb", "/dev/sdb", 20 * GIB,
                                                                                 names=("sdb",))]


def test_raid_luks_lvm_thin_tree_exact_text():
    spec = DeploySpec(
        partitions=[PartSpec("raid.11", size_mib=1024, ondisk="sda"), PartSpec("raid.12", size_mib=1024, ondisk="sdb"),
                    PartSpec("raid.21", size_mib=1, grow=True, ondisk="sda"),
                    PartSpec("raid.22", size_mib=1, grow=True, ondisk="sdb")],
        raids=[RaidSpec("/boot", "boot", "1", ["raid.11", "raid.12"]),
               RaidSpec("pv.01", "pv", "raid1", ["raid.21", "raid.22"], encrypted=True)],
        volgroups=[VolGroupSpec("vg0", ["pv.01"])],
        logvols=[LogVolSpec("swap", "swap", "vg0", size_mib=1024),
                 LogVolSpec("/", "root", "vg0", size_mib=8192, fsoptions="noatime"),
                 LogVolSpec("none", "pool", "vg0", thinpool=True, grow=True),
                 LogVolSpec("/srv", "srv", "vg0", thin=True, poolname="pool", size_mib=20000)])
    text = describe(plan_storage(spec, "both", two_disks(), new_uuid=counter_uuids()))
    assert text == (
    "sda: /dev/sda, 20480 MiB, GPT\n"
    "  #1 1 MiB biosboot\n"
    "  #2 512 MiB esp\n"
    "    vfat uuid 0000-0000 → /boot/efi\n"
    "  #3 1024 MiB member raid.11\n"
    "    md/boot: raid1, 1023 MiB, 2 members, metadata 1.2, uuid 00000000:00004000:80000000:00000002\n"
    "      ext4 uuid 00000000-0000-4000-8000-000000000003 → /boot\n"
    "  #4 18941 MiB member raid.21\n"
    "    md/pv: raid1, 18940 MiB, 2 members, metadata 1.2, uuid 00000000:00004000:80000000:00000004\n"
    "      luks-00000000-0000-4000-8000-000000000005: LUKS2, 18924 MiB, cipher default\n"
    "        vg vg0: 18920 MiB, PE 4 MiB, 1 PV(s)\n"
    "          lv vg0/swap: 1024 MiB\n"
    "            swap uuid 00000000-0000-4000-8000-000000000006 → swap\n"
    "          lv vg0/root: 8192 MiB\n"
    "            ext4 uuid 00000000-0000-4000-8000-000000000007, options noatime → /\n"
    "          lv vg0/pool: thin pool 9664 MiB (metadata 20 MiB)\n"
    "            lv vg0/srv: thin, virtual 20000 MiB\n"
    "              ext4 uuid 00000000-0000-4000-8000-000000000008 → /srv\n"
    "sdb: /dev/sdb, 20480 MiB, GPT\n"
    "  #1 1 MiB biosboot\n"
    "  #2 1024 MiB member raid.12\n"
    "    md/boot (above)\n"
    "  #3 19453 MiB member raid.22\n"
    "    md/pv (above)\n"
    "note: ESP on sda only (the kickstart puts no ESP on RAID)\n"
    "note: BIOS boot partition added on sdb (it holds /boot): grub goes on every such disk\n"
    "note: thin volumes in vg0/pool promise 20000 MiB on a 9664 MiB pool (over-committed)")


def test_btrfs_tree_and_same_plan_same_text():
    def tree():
        spec = DeploySpec(autopart=AutoPart(scheme="btrfs", nohome=False, noswap=True))
        return describe(plan_storage(spec, "bios", [TargetDisk("", "/dev/vda", 20 * GIB)], new_uuid=counter_uuids()))

    text = tree()
    assert text == tree()
    assert text.splitlines()[-4:] == [
        "  #3 19453 MiB member btrfs.autopart",
        "    btrfs system: uuid 00000000-0000-4000-8000-000000000002, subvolumes root, home",
        "      btrfs uuid 00000000-0000-4000-8000-000000000002, subvol root → /",
        "      btrfs uuid 00000000-0000-4000-8000-000000000002, subvol home → /home",
    ]
