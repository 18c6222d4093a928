"""`autopart --type=lvm|thinp|btrfs` (and `autopart --encrypted`) as the `part`/`volgroup`/`logvol`/`btrfs`
commands anaconda's layout amounts to, so the planner sees one kind of input.

The layouts (the ESP or BIOS boot partition is added by the planner, per boot mode, as for `part` layouts):
- lvm:   /boot (ext4, 1 GiB) + one PV growing over the disk, volume group `system` holding `root` (/, grows;
         at most 70 GiB when there is a /home), `home` (/home, grows; not with --nohome) and `swap` (sized from
         memory as anaconda recommends; not with --noswap).
- thinp: the same volume group with `swap` and a thin pool `pool00` filling the rest; `root` and `home` are thin
         volumes growing within the pool.
- btrfs: /boot (ext4, 1 GiB) + a swap partition (not with --noswap) + one btrfs partition growing over the disk,
         a volume labelled `system` with the subvolumes `root` (/) and `home` (/home, not with --nohome).
- plain --encrypted: /boot + swap (not with --noswap) + / growing, swap and / encrypted.
Anaconda names the volume group and btrfs label after the product (`fedora`, `rhel`, `rl`); an image-neutral
deployer cannot, so both are `system`. `--encrypted` encrypts the PV, the btrfs and swap partitions or the
plain partitions (as anaconda does); /boot stays outside the encryption (the boot loader reads it before anyone
types a passphrase), so `--noboot` with `--encrypted` is refused.
"""
from __future__ import annotations

from dataclasses import replace

from metalstream.contracts.deployspec import AutoPart, BtrfsSpec, DeploySpec, LogVolSpec, PartSpec, VolGroupSpec
from metalstream.errors import BadInput

from ..partition import BOOT_DEFAULT_MIB, GIB_MIB, ROOT_MIN_MIB, SWAP_DEFAULT_MIB

VG_NAME = "system"
BTRFS_LABEL = "system"
THIN_POOL = "pool00"
ROOT_MAX_WITH_HOME_MIB = 70 * GIB_MIB
HOME_MIN_MIB = 500
MAX_SWAP_DISK_RATIO = 10  # anaconda's swap_suggestion: recommended swap takes at most a tenth of the disk


def needs_expanding(spec: DeploySpec | None) -> bool:
    auto = spec.autopart if spec else None
    return bool(auto and (auto.scheme != "plain" or auto.encrypted))


def expand_autopart(spec: DeploySpec, disk_mib: int | None = None) -> DeploySpec:
    """`spec` with its autopart replaced by the commands anaconda's layout for it amounts to, on a disk of
    `disk_mib` MiB (which caps the swap sized from memory, as anaconda does, unless it is for hibernation)."""
    auto = spec.autopart
    where = "storage.autopart" + (f" (kickstart line {auto.line})" if auto.line else "")
    if auto.scheme not in ("plain", "lvm", "thinp", "btrfs"):
        raise BadInput(f"unknown autopart type {auto.scheme!r} (plain, lvm, thinp, btrfs)", location=where)
    if spec.partitions or spec.volgroups or spec.logvols or spec.raids or spec.btrfs:
        raise BadInput("autopart cannot be combined with part, volgroup, logvol, raid or btrfs", location=where)
    if auto.noboot and auto.encrypted:
        raise BadInput("autopart --encrypted needs the unencrypted /boot that --noboot leaves out", location=where)
    line = auto.line
    crypt = {"encrypted": auto.encrypted, "luks_version": auto.luks_version, "cipher": auto.cipher}
    fstype = auto.fstype or "ext4"
    parts = [] if auto.noboot else [PartSpec("/boot", fstype="ext4", size_mib=BOOT_DEFAULT_MIB, line=line)]
    swap = None if auto.noswap else {"recommended": not auto.hibernation, "hibernation": auto.hibernation,
                                     "max_size_mib": disk_mib // MAX_SWAP_DISK_RATIO
                                     if disk_mib and not auto.hibernation else None}
    home = not auto.nohome
    if auto.scheme == "plain":
        if swap:
            parts.append(_plain_swap(auto))
        parts.append(PartSpec("/", fstype=fstype, size_mib=ROOT_MIN_MIB, grow=True, line=line, **crypt))
        return replace(spec, autopart=None, partitions=parts)
    if auto.scheme == "btrfs":
        if swap:
            parts.append(PartSpec("swap", fstype="swap", line=line, **swap, **crypt))
        parts.append(PartSpec("btrfs.autopart", size_mib=ROOT_MIN_MIB, grow=True, line=line, **crypt))
        volumes = [BtrfsSpec("none", members=["btrfs.autopart"], label=BTRFS_LABEL, line=line),
                   BtrfsSpec("/", subvol=True, name="root", volume=BTRFS_LABEL, line=line)]
        if home:
            volumes.append(BtrfsSpec("/home", subvol=True, name="home", volume=BTRFS_LABEL, line=line))
        return replace(spec, autopart=None, partitions=parts, btrfs=volumes)
    parts.append(PartSpec("pv.autopart", size_mib=ROOT_MIN_MIB, grow=True, line=line, **crypt))
    thin = auto.scheme == "thinp"
    lvs = []
    if swap:
        lvs.append(LogVolSpec("swap", "swap", VG_NAME, fstype="swap", line=line, **swap))
    if thin:
        lvs.append(LogVolSpec("none", THIN_POOL, VG_NAME, size_mib=ROOT_MIN_MIB, grow=True, thinpool=True,
                              line=line))
    volume = {"thin": True, "poolname": THIN_POOL} if thin else {}
    lvs.append(LogVolSpec("/", "root", VG_NAME, fstype=fstype, size_mib=ROOT_MIN_MIB, grow=True,
                          max_size_mib=ROOT_MAX_WITH_HOME_MIB if home else None, line=line, **volume))
    if home:
        lvs.append(LogVolSpec("/home", "home", VG_NAME, fstype=fstype, size_mib=HOME_MIN_MIB, grow=True, line=line,
                              **volume))
    return replace(spec, autopart=None, partitions=parts,
                   volgroups=[VolGroupSpec(VG_NAME, ["pv.autopart"], line=line)], logvols=lvs)


def _plain_swap(auto: AutoPart) -> PartSpec:
    """As the unencrypted plain autopart: 1 GiB, or sized for hibernation from memory."""
    crypt = {"encrypted": auto.encrypted, "luks_version": auto.luks_version, "cipher": auto.cipher}
    if auto.hibernation:
        return PartSpec("swap", fstype="swap", hibernation=True, line=auto.line, **crypt)
    return PartSpec("swap", fstype="swap", size_mib=SWAP_DEFAULT_MIB, line=auto.line, **crypt)
