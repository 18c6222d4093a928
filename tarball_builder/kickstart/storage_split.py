"""Storage stacks of the deploy split: `volgroup`, `logvol`, `raid` and `btrfs` lines and the encryption options
of `part`, `logvol`, `raid` and `autopart`, carried into the deploy spec with their lines.

Each line is checked on its own here; how the lines fit together (member names, RAID levels, sizes, what
/boot may sit on) is checked by storage_checks. Every function returns (line of the expanded text, spec element)
pairs: the spec elements carry the original line, the checks report at the expanded one.
"""
from __future__ import annotations

from metalstream.contracts.deployspec import MEMBER_PREFIXES, BtrfsSpec, LogVolSpec, RaidSpec, VolGroupSpec

from .adapter import Parsed
from .diagnostics import Findings

RAID_LEVELS = {"RAID0": "raid0", "RAID1": "raid1", "RAID4": "raid4", "RAID5": "raid5", "RAID6": "raid6",
               "RAID10": "raid10"}
LUKS_VERSIONS = ("luks1", "luks2")
VOLUME_FSTYPES = ("ext4", "xfs", "swap")  # file systems on a logical volume or an array
ESP_FSTYPES = ("efi", "vfat")


def encryption(what: str, data, line: int, findings: Findings) -> tuple[bool, str | None, str | None]:
    """(encrypted, luks_version, cipher) of a part/logvol/raid/autopart line."""
    version, cipher = data.luks_version or None, data.cipher or None
    if version is not None and version not in LUKS_VERSIONS:
        findings.error(line, f"{what}: --luks-version={version}: use {' or '.join(LUKS_VERSIONS)}")
    if (version or cipher) and not data.encrypted:
        findings.error(line, f"{what}: --luks-version and --cipher need --encrypted")
    return bool(data.encrypted), version, cipher


def _fstype(mountpoint: str, fstype: str | None) -> str | None:
    if fstype is None and mountpoint == "swap":
        return "swap"
    if fstype is None and mountpoint == "/boot/efi":
        return "efi"
    return fstype


def _check_fstype(what: str, mountpoint: str, fstype: str | None, line: int, findings: Findings,
                  allowed: tuple[str, ...] = VOLUME_FSTYPES) -> None:
    if fstype is not None and fstype not in allowed:
        findings.error(line, f"{what}: unsupported --fstype={fstype} here (supported: {', '.join(allowed)})")
    elif (fstype == "swap") != (mountpoint == "swap"):
        findings.error(line, f"{what}: --fstype=swap goes with the mount point swap only")


def volgroups(parsed: Parsed, findings: Findings, original) -> list[tuple[int, VolGroupSpec]]:
    groups = []
    for data in parsed.handler.volgroup.vgList:
        line = data.lineno
        pesize = data.pesize or None
        if pesize is not None and (pesize < 1024 or pesize & (pesize - 1)):
            findings.error(line, f"volgroup {data.vgname}: --pesize={pesize} KiB: use a power of two of at least "
                                 "1024 KiB")
        if data.reserved_space and data.reserved_percent:
            findings.error(line, f"volgroup {data.vgname}: give --reserved-space or --reserved-percent, not both")
        groups.append((line, VolGroupSpec(name=data.vgname, pvs=list(data.physvols), pesize_kib=pesize,
                                   reserved_space_mib=data.reserved_space or None,
                                   reserved_percent=data.reserved_percent or None, line=original(line))))
    return groups


def logvols(parsed: Parsed, findings: Findings, original) -> list[tuple[int, LogVolSpec]]:
    volumes = []
    for data in parsed.handler.logvol.lvList:
        line, mountpoint = data.lineno, data.mountpoint
        what = f"logvol {mountpoint}"
        fstype = _fstype(mountpoint, data.fstype or None)
        sized = bool(data.recommended or data.hibernation)
        if data.thin_pool:
            if mountpoint != "none":
                findings.error(line, f"{what}: a thin pool (--thinpool) holds no file system: its mount point is none")
            if data.encrypted:
                findings.error(line, f"{what}: --encrypted on a thin pool: encrypt its thin volumes or the physical "
                                     "volumes instead")
        elif mountpoint != "swap" and not mountpoint.startswith("/"):
            findings.error(line, f"{what!r}: mount point must be an absolute path or swap")
        elif mountpoint not in ("/boot", "/boot/efi"):  # those are refused whatever their type (storage_checks)
            _check_fstype(what, mountpoint, fstype, line, findings)
        if data.thin_volume and not data.pool_name:
            findings.error(line, f"{what}: --thin names no pool: add --poolname=POOL")
        if data.chunk_size and not data.thin_pool:
            findings.error(line, f"{what}: --chunksize is for thin pools (--thinpool) only")
        if sized and mountpoint != "swap":
            findings.error(line, f"{what}: --recommended/--hibernation size swap volumes only")
        _check_size(what, data, line, findings, percent=True)
        if data.thin_volume and not data.size:
            findings.error(line, f"{what}: a thin volume needs --size=MiB")
        encrypted, version, cipher = encryption(what, data, line, findings)
        volumes.append((line, LogVolSpec(
            mountpoint=mountpoint, name=data.name, vgname=data.vgname, fstype=fstype,
            size_mib=None if sized else data.size or None, grow=bool(data.grow), max_size_mib=data.maxSizeMB or None,
            percent=data.percent or None, thinpool=bool(data.thin_pool), thin=bool(data.thin_volume),
            poolname=data.pool_name or None, chunksize_kib=data.chunk_size or None, label=data.label or None,
            fsoptions=data.fsopts or None, recommended=sized, hibernation=bool(data.hibernation), encrypted=encrypted,
            luks_version=version, cipher=cipher, line=original(line))))
    return volumes


def _check_size(what: str, data, line: int, findings: Findings, percent: bool = False) -> None:
    if data.size is not None and data.size <= 0:
        findings.error(line, f"{what}: --size must be a positive number of MiB")
    if data.maxSizeMB and data.size and data.maxSizeMB < data.size:
        findings.error(line, f"{what}: --maxsize={data.maxSizeMB} is smaller than --size={data.size}")
    given = data.size or data.grow or data.recommended or data.hibernation or (percent and data.percent)
    if percent and data.percent and not 0 < data.percent <= 100:
        findings.error(line, f"{what}: --percent must be from 1 to 100")
    if percent and data.percent and data.size:
        findings.error(line, f"{what}: give --size or --percent, not both")
    if not given:
        findings.error(line, f"{what}: give --size=MiB, --grow{' or --percent' if percent else ''}")


def raids(parsed: Parsed, findings: Findings, original) -> list[tuple[int, RaidSpec]]:
    arrays = []
    for data in parsed.handler.raid.raidList:
        line, mountpoint = data.lineno, data.mountpoint
        what = f"raid {mountpoint}"
        member = mountpoint.startswith(MEMBER_PREFIXES)
        fstype = None if member else _fstype(mountpoint, data.fstype or None)
        if not data.device:
            findings.error(line, f"{what}: give --device=NAME (the array is /dev/md/NAME)")
        if member and data.fstype:
            findings.error(line, f"{what}: a member of a volume group or btrfs volume takes no --fstype")
        elif mountpoint == "/boot/efi":
            _check_fstype(what, mountpoint, fstype, line, findings, ESP_FSTYPES)
        elif not member and mountpoint != "swap" and not mountpoint.startswith("/"):
            findings.error(line, f"{what!r}: mount point must be an absolute path, swap or a member name "
                                 "(pv.NN, btrfs.NN)")
        elif not member:
            _check_fstype(what, mountpoint, fstype, line, findings)
        if data.spares < 0:
            findings.error(line, f"{what}: --spares must be 0 or more")
        encrypted, version, cipher = encryption(what, data, line, findings)
        arrays.append((line, RaidSpec(
            mountpoint=mountpoint, device=_array_name(data.device), level=RAID_LEVELS.get(data.level or "", ""),
            members=list(data.members), spares=max(data.spares, 0), fstype=fstype,
            chunksize_kib=data.chunk_size or None, label=data.label or None, fsoptions=data.fsopts or None,
            encrypted=encrypted, luks_version=version, cipher=cipher, line=original(line))))
    return arrays


def _array_name(device: str | None) -> str:
    """pykickstart reads `--device=md0` as "0": the array is named md0, as anaconda names it."""
    device = device or ""
    return f"md{device}" if device.isdigit() else device


def btrfs(parsed: Parsed, findings: Findings, original) -> list[tuple[int, BtrfsSpec]]:
    volumes = []
    for data in parsed.handler.btrfs.btrfsList:
        line, mountpoint = data.lineno, data.mountpoint
        what = f"btrfs {mountpoint}"
        if mountpoint != "none" and not mountpoint.startswith("/"):
            findings.error(line, f"{what!r}: mount point must be an absolute path or none")
        if data.subvol:
            if mountpoint == "none":
                findings.error(line, f"{what}: a subvolume needs a mount point")
            if len(data.devices) != 1:
                findings.error(line, f"{what}: a subvolume names one volume (its label or mount point), "
                                     f"not {' '.join(data.devices)}")
            if data.label or data.dataLevel or data.metaDataLevel:
                findings.error(line, f"{what}: --label, --data and --metadata belong to the volume, not to a subvolume")
            volume = data.devices[0] if data.devices else ""
            volumes.append((line, BtrfsSpec(mountpoint=mountpoint, subvol=True, name=data.name or None,
                                             volume=volume.removeprefix("LABEL="), line=original(line))))
            continue
        if data.name:
            findings.error(line, f"{what}: --name names a subvolume: add --subvol")
        volumes.append((line, BtrfsSpec(mountpoint=mountpoint, members=list(data.devices),
                                         data_level=data.dataLevel or None, metadata_level=data.metaDataLevel or None,
                                         label=data.label or None, line=original(line))))
    return volumes
