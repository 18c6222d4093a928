"""The storage planner: deploy spec + boot mode + chosen disks → StoragePlan (pure: nothing here touches a disk).

A plain layout on one disk is exactly `partition.plan_layout`'s. Otherwise, per disk, the `part` commands
become GPT partitions through the same machinery (`partition.request_from_part` / `place`):
- a `part` with `--ondisk=NAME` goes on the chosen disk answering to NAME; one without goes on the first
  chosen disk (anaconda may spread such partitions over several disks; metalstream never guesses, so a layout
  meant to span disks names them);
- member partitions (`part raid.01`, `part pv.01`, `part btrfs.01`) get the Linux RAID, Linux LVM or Linux
  partition type and are used by the `raid`, `volgroup` or `btrfs` that lists them;
- boot partitions: a layout naming neither a BIOS boot partition nor an ESP (or saying `reqpart`) gets what
  the boot mode needs on the first disk, as on one disk. The ESP is not mirrored by guesswork: it goes on the
  first disk only, unless the kickstart puts it on RAID1 itself (`raid /boot/efi --level=1 --fstype=efi`),
  which is then made with metadata 1.0 so the firmware reads each member as a plain FAT filesystem. A BIOS boot
  partition is added (BIOS boot modes) to every disk holding the device /boot (or /) lives on, whether or not
  the layout names one elsewhere, so grub goes on each of them and a RAID1 system still boots from any one disk.
Then, in creation order: LUKS on partitions, RAID arrays (usable size per level), LUKS on arrays, volume groups
and logical volumes (sizes: deployer.storage.lvm), LUKS on logical volumes, btrfs volumes and subvolumes.
Errors are BadInput located at the spec (`storage.logvols[1] (kickstart line 14)`), all before any write.
"""
from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field, replace
from typing import Callable

from metalstream.contracts.deployspec import BtrfsSpec, DeploySpec, LogVolSpec, PartSpec, RaidSpec
from metalstream.errors import BadInput

from ..partition import (DATA_FSTYPES, MIB, Layout, Request, boot_requests, check_boot_mode, fs_uuid, place,
                         plan_layout, request_from_part, root_need_mib, sort_requests)
from . import lvm
from .autopart import expand_autopart, needs_expanding
from .model import (Array, BtrfsVolume, Crypt, Filesystem, LogicalVolume, PlannedDisk, StackDevice, StoragePlan,
                    TargetDisk, VolumeGroup, part_ref)

LUKS_HEADER_MIB = {"luks1": 2, "luks2": 16}
RAID_LEVELS = {"raid0": 2, "raid1": 2, "raid4": 3, "raid5": 3, "raid6": 4, "raid10": 4}  # least active members
BTRFS_LEVELS = {"single": 1, "dup": 1, "raid0": 1, "raid1": 2, "raid1c3": 3, "raid1c4": 4, "raid10": 2,
                "raid5": 2, "raid6": 3}
UNENCRYPTED_MOUNTS = ("/boot", "/boot/efi")


def plan_storage(spec: DeploySpec | None, boot_mode: str, disks: list[TargetDisk], *, image_bytes: int = 0,
                 memory_bytes: int | None = None,
                 new_uuid: Callable[[], str] = lambda: str(uuidlib.uuid4())) -> StoragePlan:
    """Every device and filesystem the deployment makes on `disks` (chosen by choose_disks; the first takes
    partitions naming no disk). Raises BadInput, located, for a layout that cannot be made."""
    check_boot_mode(boot_mode)
    if not disks:
        raise BadInput("no disk chosen", location="disk")
    memory_mib = memory_bytes // MIB if memory_bytes is not None else None
    if needs_expanding(spec):
        spec = expand_autopart(spec, disks[0].size // MIB if disks else None)
    parts = spec.partitions if spec else []
    if (spec is None or not spec.stacked) and (
            len(disks) == 1 or all(not p.ondisk or _answers_to(disks[0], p.ondisk) for p in parts)):
        plain = _plain(spec, boot_mode, disks[0], image_bytes, memory_bytes, new_uuid)
        cleared = tuple(PlannedDisk(d.key, d.path, Layout(d.size, d.sector_size, ())) for d in disks[1:]
                        if _cleared(spec, d))
        return replace(plain, disks=plain.disks + cleared,
                       notes=tuple(f"{d.key or d.path}: cleared (clearpart), no partitions" for d in cleared))
    return _Planner(spec, boot_mode, disks, memory_mib, new_uuid).plan(image_bytes)


def _part_where(index: int, part: PartSpec) -> str:
    return lvm.where("partitions", index, part.line)


def _disk_for(name: str, disks: list[TargetDisk], location: str) -> TargetDisk:
    for disk in disks:
        if _answers_to(disk, name):
            return disk
    chosen = "; ".join(f"{d.key or d.path} ({d.path})" for d in disks)
    raise BadInput(f"--ondisk={name} names no chosen disk (chosen: {chosen}); name it in the plan's `disks` "
                   "or fix the name", location=location)


def _plain(spec: DeploySpec | None, boot_mode: str, disk: TargetDisk, image_bytes: int, memory_bytes: int | None,
           new_uuid: Callable[[], str]) -> StoragePlan:
    for i, part in enumerate(spec.partitions if spec else []):
        if part.ondisk:
            _disk_for(part.ondisk, [disk], _part_where(i, part))
    layout = plan_layout(disk.size, boot_mode, spec, image_bytes=image_bytes, sector_size=disk.sector_size,
                         memory_bytes=memory_bytes, new_uuid=new_uuid)
    lines = {}
    for part in spec.partitions if spec else []:
        lines.setdefault(part.mountpoint, []).append(part.line)
    filesystems = tuple(
        Filesystem(part_ref(disk.key, p.number), p.fstype, p.mountpoint if p.fstype != "swap" else None, p.fs_uuid,
                   label=p.label, options=p.fsoptions,
                   line=lines[p.mountpoint][0] if len(lines.get(p.mountpoint, ())) == 1 else None)
        for p in layout.partitions if p.fstype)
    return StoragePlan(disks=(PlannedDisk(disk.key, disk.path, layout),), filesystems=filesystems)


@dataclass
class _Member:
    ref: str
    size_mib: int
    where: str
    used_by: str | None = None


@dataclass
class _Planner:
    spec: DeploySpec
    boot_mode: str
    disks: list[TargetDisk]
    memory_mib: int | None
    new_uuid: Callable[[], str]
    devices: list[StackDevice] = field(default_factory=list)
    filesystems: list[Filesystem] = field(default_factory=list)
    members: dict[str, _Member] = field(default_factory=dict)
    sizes: dict[str, int] = field(default_factory=dict)  # MiB each reference holds
    wheres: dict[str, str] = field(default_factory=dict)  # reference → the spec it comes from
    notes: list[str] = field(default_factory=list)
    btrfs_members: dict[str, tuple[str, ...]] = field(default_factory=dict)  # volume uuid → member references

    def plan(self, image_bytes: int) -> StoragePlan:
        self._check_mounts()
        planned = self._partitions()
        self._arrays()
        self._volume_groups()
        self._btrfs()
        for name, member in self.members.items():
            if member.used_by is None:
                raise BadInput(f"{name} is a member of no {_kind_of(name)}", location=member.where)
        plan = StoragePlan(disks=tuple(planned), devices=tuple(self.devices), filesystems=tuple(self.filesystems),
                           notes=tuple(self.notes))
        self._check_root(plan, image_bytes)
        return plan

    # -- checks over the whole spec -------------------------------------------------------------------------

    def _mounted_specs(self) -> list[tuple[str, str, bool]]:
        """(mount point, where, encrypted) of every part, raid, logvol and btrfs that is mounted."""
        s = self.spec
        found = [(p.mountpoint, _part_where(i, p), p.encrypted) for i, p in enumerate(s.partitions)]
        found += [(r.mountpoint, lvm.where("raids", i, r.line), r.encrypted) for i, r in enumerate(s.raids)]
        found += [(v.mountpoint, lvm.where("logvols", i, v.line), v.encrypted) for i, v in enumerate(s.logvols)]
        found += [(b.mountpoint, lvm.where("btrfs", i, b.line), False) for i, b in enumerate(s.btrfs)]
        return [(m, w, e) for m, w, e in found if m.startswith("/")]

    def _check_mounts(self) -> None:
        seen: dict[str, str] = {}
        for mountpoint, where, encrypted in self._mounted_specs():
            if mountpoint in seen:
                raise BadInput(f"{mountpoint} is given twice (also at {seen[mountpoint]})", location=where)
            seen[mountpoint] = where
            if encrypted and mountpoint in UNENCRYPTED_MOUNTS:
                raise BadInput(f"{mountpoint} cannot be encrypted: the firmware and boot loader read it before "
                               "anyone can type the passphrase", location=where)
        if "/" not in seen:
            raise BadInput("no device for / (a `part`, `raid`, `logvol` or `btrfs` mounted at /)", location="storage")

    # -- partitions ------------------------------------------------------------------------------------------

    def _partitions(self) -> list[PlannedDisk]:
        requests: dict[str, list[Request]] = {d.key: [] for d in self.disks}
        for i, part in enumerate(self.spec.partitions):
            request = request_from_part(part, i, self.memory_mib)
            disk = _disk_for(part.ondisk, self.disks, _part_where(i, part)) if part.ondisk else self.disks[0]
            requests[disk.key].append(request)
        self._boot_partitions(requests)
        planned = []
        for disk in self.disks:
            wanted = sort_requests(requests[disk.key])
            if not wanted and not _cleared(self.spec, disk):
                continue
            layout = place(wanted, disk.size, disk.sector_size, self.new_uuid, location=f"disk {disk.key or disk.path}")
            planned.append(PlannedDisk(disk.key, disk.path, layout))
            if not wanted:
                self.notes.append(f"{disk.key or disk.path}: cleared (clearpart), no partitions")
            self._partition_devices(disk, layout, wanted)
        return planned

    def _boot_partitions(self, requests: dict[str, list[Request]]) -> None:
        spec, first = self.spec, self.disks[0].key
        boot_code = not (spec.bootloader is not None and spec.bootloader.location == "none")
        roles = {r.role for disk in requests.values() for r in disk}
        mounts = {m for m, _, _ in self._mounted_specs()}
        if "/boot/efi" in mounts:
            roles.add("esp")
        if spec.reqpart or boot_code and not roles & {"biosboot", "esp"}:
            with_boot = spec.reqpart and spec.reqpart_add_boot and "/boot" not in mounts
            added = [r for r in boot_requests(self.boot_mode, with_boot=with_boot) if r.role not in roles]
            requests[first][:0] = added
            if len(self.disks) > 1 and any(r.role == "esp" for r in added):
                self.notes.append(f"ESP on {first or self.disks[0].path} only (the kickstart puts no ESP on RAID)")
        elif boot_code:
            needed = {"biosboot": "part biosboot --fstype=biosboot --size=1",
                      "esp": "part /boot/efi --fstype=efi --size=600"}
            for req in boot_requests(self.boot_mode):
                if req.role not in roles and req.role != "biosboot":  # biosboot: added below
                    raise BadInput(f"boot mode {self.boot_mode!r} needs a {req.role} partition: add "
                                   f"`{needed[req.role]}` or `reqpart`", location="storage.partitions")
        if not boot_code or self.boot_mode == "uefi":
            return
        boot = "/boot" if "/boot" in mounts else "/"
        for key in self._disks_holding(boot):
            if not any(r.role == "biosboot" for r in requests[key]):
                requests[key].insert(0, boot_requests("bios")[0])
                self.notes.append(f"BIOS boot partition added on {key} (it holds {boot}): grub goes on every "
                                  "such disk")

    def _disks_holding(self, mountpoint: str) -> list[str]:
        """Keys of the disks under the device mounted at `mountpoint`, traced through the spec's member names."""
        s = self.spec
        by_member: dict[str, list[str]] = {}
        for i, p in enumerate(s.partitions):
            disk = _disk_for(p.ondisk, self.disks, _part_where(i, p)) if p.ondisk else self.disks[0]
            by_member.setdefault(p.mountpoint, []).append(disk.key)

        def under(names: list[str]) -> list[str]:
            return [k for n in names for k in by_member.get(n, [])]

        for r in s.raids:
            by_member.setdefault(r.mountpoint, []).extend(under(r.members))
        for v in s.volgroups:
            by_member.setdefault(f"vg:{v.name}", []).extend(under(v.pvs))
        for lv in s.logvols:
            by_member.setdefault(lv.mountpoint, []).extend(by_member.get(f"vg:{lv.vgname}", []))
        volumes = [b for b in s.btrfs if not b.subvol]
        for b in volumes:
            by_member.setdefault(b.mountpoint, []).extend(under(b.members))
        for b in s.btrfs:
            if b.subvol:
                parent = next((v for v in volumes if b.volume in (v.label, v.mountpoint)), None)
                by_member.setdefault(b.mountpoint, []).extend(under(parent.members) if parent else [])
        return list(dict.fromkeys(by_member.get(mountpoint, [])))

    def _partition_devices(self, disk: TargetDisk, layout: Layout, requests: list[Request]) -> None:
        for request, part in zip(requests, layout.partitions):
            ref = part_ref(disk.key, part.number)
            size = layout.length(part) // MIB
            self.sizes[ref] = size
            self.wheres[ref] = request.where
            spec = self.spec.partitions[request.source] if request.source is not None else None
            if part.role == "member":
                ref = self._encrypt(ref, spec, request.where) if spec.encrypted else ref
                self._add_member(part.member, ref, request.where)
            elif part.fstype:
                device = self._encrypt(ref, spec, request.where) if spec and spec.encrypted else ref
                self.filesystems.append(Filesystem(device, part.fstype, part.mountpoint if part.fstype != "swap"
                                                   else None, part.fs_uuid, label=part.label,
                                                   options=part.fsoptions, line=spec.line if spec else None))

    # -- stacks ----------------------------------------------------------------------------------------------

    def _add_member(self, name: str, ref: str, where: str) -> None:
        if name in self.members:
            raise BadInput(f"{name} is given twice (also at {self.members[name].where})", location=where)
        self.members[name] = _Member(ref, self.sizes[ref], where)

    def _take(self, names: list[str], prefix: str, user: str, where: str) -> list[_Member]:
        taken = []
        for name in names:
            member = self.members.get(name)
            if member is None or not name.startswith(prefix):
                known = ", ".join(n for n in self.members if n.startswith(prefix)) or "none"
                raise BadInput(f"{name} is not a {prefix}* member of this kickstart (known: {known})", location=where)
            if member.used_by is not None:
                raise BadInput(f"{name} is already used by {member.used_by}", location=where)
            member.used_by = user
            taken.append(member)
        return taken

    def _encrypt(self, backing: str, spec: PartSpec | RaidSpec | LogVolSpec, where: str) -> str:
        version = spec.luks_version or "luks2"
        if version not in LUKS_HEADER_MIB:
            raise BadInput(f"unknown LUKS version {version!r} (luks1, luks2)", location=where)
        value = self.new_uuid()
        crypt = Crypt(f"luks-{value}", backing, value, version, spec.cipher, spec.line)
        self.devices.append(crypt)
        self.sizes[crypt.ref] = self.sizes[backing] - LUKS_HEADER_MIB[version]
        self.wheres[crypt.ref] = where
        return crypt.ref

    def _fs_on(self, device: str, mountpoint: str, fstype: str | None, spec: RaidSpec | LogVolSpec,
               where: str) -> None:
        if spec.encrypted:
            device = self._encrypt(device, spec, where)
        if mountpoint == "swap" or fstype == "swap":
            fstype, mountpoint = "swap", None
        elif mountpoint == "/boot/efi" or fstype in ("efi", "vfat"):
            fstype = "vfat"
        else:
            fstype = fstype or "ext4"
            if fstype not in DATA_FSTYPES:
                raise BadInput(f"unsupported filesystem {fstype!r} for {mountpoint} (use "
                               f"{' or '.join(DATA_FSTYPES)})", location=where)
            if not mountpoint.startswith("/"):
                raise BadInput(f"unsupported mount point {mountpoint!r} (/..., swap, or a member name)",
                               location=where)
        self.filesystems.append(Filesystem(device, fstype, mountpoint, fs_uuid(fstype, self.new_uuid),
                                           label=spec.label, options=spec.fsoptions, line=spec.line))

    def _arrays(self) -> None:
        for i, raid in enumerate(self.spec.raids):
            where = lvm.where("raids", i, raid.line)
            level = raid.level.lower()
            level = level if level.startswith("raid") else f"raid{level}"
            if level not in RAID_LEVELS:
                raise BadInput(f"unknown RAID level {raid.level!r} ({', '.join(RAID_LEVELS)})", location=where)
            name = raid.device.removeprefix("/dev/md/").removeprefix("/dev/")
            if any(isinstance(d, Array) and d.name == name for d in self.devices):
                raise BadInput(f"RAID device {name} is given twice", location=where)
            members = self._take(raid.members, "raid.", f"raid {name}", where)
            active = len(members) - raid.spares
            if raid.spares < 0 or active < RAID_LEVELS[level]:
                raise BadInput(f"{level} needs at least {RAID_LEVELS[level]} active members; {name} has {active} "
                               f"({len(members)} listed, {raid.spares} spare)", location=where)
            esp = raid.mountpoint == "/boot/efi" or raid.fstype in ("efi", "vfat")
            if esp and level != "raid1":
                raise BadInput("an ESP on RAID must be RAID1: the firmware reads one member as a plain FAT "
                               "filesystem", location=where)
            hexdigits = self.new_uuid().replace("-", "")
            array = Array(name, level, tuple(m.ref for m in members), raid.spares, "1.0" if esp else "1.2",
                          raid.chunksize_kib, ":".join(hexdigits[k:k + 8] for k in range(0, 32, 8)), raid.line)
            self.devices.append(array)
            self.sizes[array.ref] = array_mib(level, [m.size_mib for m in members[:active]])
            self.wheres[array.ref] = where
            if raid.mountpoint.startswith(("pv.", "btrfs.")):
                self._add_member(raid.mountpoint, self._encrypt(array.ref, raid, where) if raid.encrypted
                                 else array.ref, where)
            else:
                self._fs_on(array.ref, raid.mountpoint, raid.fstype, raid, where)

    def _volume_groups(self) -> None:
        names = set()
        for i, vg in enumerate(self.spec.volgroups):
            where = lvm.where("volgroups", i, vg.line)
            if vg.name in names:
                raise BadInput(f"volume group {vg.name} is given twice", location=where)
            names.add(vg.name)
            pe_kib = vg.pesize_kib or lvm.DEFAULT_PE_KIB
            if pe_kib < 1024 or pe_kib & (pe_kib - 1):
                raise BadInput(f"--pesize={pe_kib}: a power of two KiB, at least 1024", location=where)
            pvs = self._take(vg.pvs, "pv.", f"volume group {vg.name}", where)
            if not pvs:
                raise BadInput(f"volume group {vg.name} lists no physical volume", location=where)
            extents = lvm.vg_extents([m.size_mib for m in pvs], pe_kib, vg.reserved_space_mib, vg.reserved_percent)
            if extents <= 0:
                raise BadInput(f"volume group {vg.name} has no room left for logical volumes", location=where)
            group = VolumeGroup(vg.name, tuple(m.ref for m in pvs), pe_kib, extents * pe_kib // 1024, vg.line)
            self.devices.append(group)
            self.wheres[group.ref] = where
            self._logical_volumes(group, extents)
        for i, lv in enumerate(self.spec.logvols):
            if lv.vgname not in names:
                raise BadInput(f"volume group {lv.vgname!r} is not defined (volgroup)",
                               location=lvm.where("logvols", i, lv.line))

    def _logical_volumes(self, group: VolumeGroup, extents: int) -> None:
        lvs = [(i, lv) for i, lv in enumerate(self.spec.logvols) if lv.vgname == group.name]
        seen: set[str] = set()
        for i, lv in lvs:
            where = lvm.where("logvols", i, lv.line)
            if lv.name in seen:
                raise BadInput(f"logical volume {group.name}/{lv.name} is given twice", location=where)
            seen.add(lv.name)
            if lv.thin and not any(p.thinpool and p.name == lv.poolname for _, p in lvs):
                raise BadInput(f"thin volume {lv.name}: no thin pool {lv.poolname!r} in volume group {group.name}",
                               location=where)
        sized, notes = lvm.size_volumes(group.name, extents, group.pesize_kib, lvs, self.memory_mib)
        self.notes += notes
        to_mib = group.pesize_kib // 1024
        ordered = [(i, lv) for i, lv in lvs if not lv.thin] + [(i, lv) for i, lv in lvs if lv.thin]
        for i, lv in ordered:
            where = lvm.where("logvols", i, lv.line)
            kind = "thinpool" if lv.thinpool else "thin" if lv.thin else "linear"
            volume = LogicalVolume(group.name, lv.name, sized[i].extents * to_mib, kind,
                                   lv.poolname if lv.thin else None, lv.chunksize_kib if lv.thinpool else None,
                                   lv.line, sized[i].metadata_extents * to_mib if lv.thinpool else None)
            self.devices.append(volume)
            size = volume.size_mib
            if lv.thin:
                size = min(size, self.sizes[f"lv:{group.name}/{lv.poolname}"])
            self.sizes[volume.ref] = size
            self.wheres[volume.ref] = where
            if lv.mountpoint == "/boot/efi":
                raise BadInput("the ESP cannot be a logical volume: the firmware reads only partitions (and RAID1 "
                               "members with metadata 1.0)", location=where)
            if lv.thinpool:
                if lv.mountpoint not in ("none", ""):
                    raise BadInput("a thin pool holds thin volumes, not a filesystem: mount point none",
                                   location=where)
                continue
            self._fs_on(volume.ref, lv.mountpoint, lv.fstype, lv, where)

    def _btrfs(self) -> None:
        volumes: list[tuple[BtrfsSpec, str, list[str], int]] = []  # spec, uuid, subvolume names, index
        for i, b in enumerate(self.spec.btrfs):
            if b.subvol:
                continue
            where = lvm.where("btrfs", i, b.line)
            members = self._take(b.members, "btrfs.", f"btrfs volume {b.label or b.mountpoint}", where)
            if not members:
                raise BadInput("a btrfs volume needs member partitions (part btrfs.01 ...)", location=where)
            for level in (b.data_level, b.metadata_level):
                if level is not None and level not in BTRFS_LEVELS:
                    raise BadInput(f"unknown btrfs profile {level!r} ({', '.join(BTRFS_LEVELS)})", location=where)
                if level is not None and len(members) < BTRFS_LEVELS[level]:
                    raise BadInput(f"btrfs {level} needs at least {BTRFS_LEVELS[level]} members, the volume has "
                                   f"{len(members)}", location=where)
            value = self.new_uuid()
            volumes.append((b, value, [], i))
            ref = f"btrfs:{value}"
            total = sum(m.size_mib for m in members)
            self.sizes[ref] = total // 2 if b.data_level in ("raid1", "raid10", "dup") else total
            self.wheres[ref] = where
            self.btrfs_members[value] = tuple(m.ref for m in members)
            if b.mountpoint != "none":
                self.filesystems.append(Filesystem(ref, "btrfs", b.mountpoint, value, label=b.label,
                                                   options=b.fsoptions, line=b.line))
        for i, b in enumerate(self.spec.btrfs):
            if not b.subvol:
                continue
            where = lvm.where("btrfs", i, b.line)
            parent = next((v for v in volumes if b.volume is not None and b.volume in
                           (v[0].label, v[0].mountpoint) and b.volume != "none"), None)
            if parent is None:
                known = ", ".join(v[0].label or v[0].mountpoint for v in volumes) or "none"
                raise BadInput(f"subvolume {b.name or b.mountpoint} is outside any btrfs volume: {b.volume!r} is no "
                               f"volume's label or mount point (volumes: {known})", location=where)
            if not b.name:
                raise BadInput("a btrfs subvolume needs --name", location=where)
            if b.name in parent[2]:
                raise BadInput(f"subvolume {b.name} is given twice", location=where)
            parent[2].append(b.name)
            self.filesystems.append(Filesystem(f"btrfs:{parent[1]}", "btrfs", b.mountpoint, parent[1],
                                               options=b.fsoptions, subvol=b.name, line=b.line))
        for b, value, subvolumes, _ in volumes:
            self.devices.append(BtrfsVolume(value, self.btrfs_members[value], b.label, b.data_level,
                                            b.metadata_level, tuple(subvolumes), b.line))

    # -- the result ------------------------------------------------------------------------------------------

    def _check_root(self, plan: StoragePlan, image_bytes: int) -> None:
        root = plan.root
        where = self.wheres.get(root.device, "storage")
        need = root_need_mib(image_bytes)
        if self.sizes[root.device] < need:
            raise BadInput(f"disk too small: / would get {self.sizes[root.device]} MiB but the image needs {need} MiB "
                           f"({image_bytes / MIB:.0f} MiB unpacked + headroom)", location=where)
        encrypted = any(isinstance(plan.device(r), Crypt) for r in plan.stack_under(root.device))
        if encrypted and plan.boot is root:
            raise BadInput("an encrypted / needs a separate, unencrypted /boot (part /boot --size=1024): the boot "
                           "loader reads the kernel before anyone can type the passphrase", location=where)


def _cleared(spec: DeploySpec | None, disk: TargetDisk) -> bool:
    """`clearpart --all` covers the disk: planned with an empty partition table even if nothing goes on it."""
    clear = spec.clearpart if spec else None
    return bool(clear and clear.mode == "all" and (not clear.drives or any(
        _answers_to(disk, name) for name in clear.drives)))


def _answers_to(disk: TargetDisk, name: str) -> bool:
    wanted = name.strip().removeprefix("/dev/")
    return wanted == disk.key or wanted in {n.removeprefix("/dev/") for n in (*disk.names, disk.path)}


def _kind_of(name: str) -> str:
    return {"pv.": "volume group (volgroup)", "raid.": "RAID array (raid)", "btrfs.": "btrfs volume (btrfs)"}[
        next(p for p in ("pv.", "raid.", "btrfs.") if name.startswith(p))]


def array_mib(level: str, sizes: list[int]) -> int:
    """Usable size of an array over active members of `sizes` MiB (less mdadm's superblock area per member)."""
    smallest = min(sizes) - 1
    count = len(sizes)
    return {"raid0": sum(s - 1 for s in sizes), "raid1": smallest, "raid4": (count - 1) * smallest,
            "raid5": (count - 1) * smallest, "raid6": (count - 2) * smallest, "raid10": count * smallest // 2}[level]
