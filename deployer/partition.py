"""The partition plan: pure data in, GPT layout out (sectors, 1 MiB aligned), rendered as an sfdisk script.

Nothing here touches a disk. `plan_layout` honours the deploy spec (kickstart `part`, `reqpart`,
`autopart`) and the boot mode (a `part` layout naming no biosboot or ESP partition gets the ones the
firmware needs, as `reqpart` would, unless `bootloader --location=none` installs no boot code);
`check_disk_use` decides whether the plan may overwrite what is on the disk (`clearpart`, `zerombr`,
`ignoredisk --only-use`, `part --ondisk`).
"""
from __future__ import annotations

import uuid as uuidlib
from dataclasses import dataclass, field
from typing import Callable

from metalstream.contracts.deployspec import DeploySpec, PartSpec
from metalstream.errors import BadInput

MIB = 1 << 20
GPT_ENTRIES_BYTES = 16384  # 128 partition entries of 128 bytes; the backup copy sits before the backup header
BIOS_BOOT_MIB = 1
ESP_MIN_MIB = 512
ESP_DEFAULT_MIB = 512
BOOT_DEFAULT_MIB = 1024
SWAP_DEFAULT_MIB = 1024
ROOT_MIN_MIB = 1024
ROOT_HEADROOM = 1.25  # root must hold the unpacked image plus a quarter for metadata and first boot
GIB_MIB = 1024

TYPE_GUIDS = {
    "biosboot": "21686148-6449-6E6F-744E-656564454649",
    "esp": "C12A7328-F81F-11D2-BA4B-00A0C93EC93B",
    "root": "4F68BCE3-E8CD-4DB1-96E7-FBCAF984B709",  # root (x86-64), discoverable-partitions spec
    "swap": "0657FD6D-A4AB-43C4-84E5-0933C84B4F4F",
    "/home": "933AC7E1-2EB4-4F13-B844-0E14E2AEF915",
    "/srv": "3B8F8425-20E0-4F3B-907F-1A25A76F98E8",
    "linux": "0FC63DAF-8483-4772-8E79-3D69D8477DE4",
    "raid": "A19D880F-05FC-4D3B-A006-743F0F84911E",  # Linux RAID: members `raid.*`
    "lvm": "E6D6D379-F507-44C2-A23C-238F2A3DF928",  # Linux LVM: members `pv.*`
}
MEMBER_TYPES = {"raid.": "raid", "pv.": "lvm", "btrfs.": "linux"}
DATA_FSTYPES = ("ext4", "xfs")
_ROLE_ORDER = {"biosboot": 0, "esp": 1, "boot": 2}


@dataclass(frozen=True)
class Partition:
    number: int
    name: str  # GPT partition name
    role: str  # biosboot | esp | boot | swap | root | data | member
    start: int  # sectors
    size: int  # sectors
    type_guid: str
    fstype: str | None  # ext4 | xfs | vfat | swap | None (biosboot)
    mountpoint: str | None
    fs_uuid: str | None = None  # chosen up front so fstab and grub.cfg can be written deterministically
    label: str | None = None
    fsoptions: str | None = None
    member: str | None = None  # role "member": the kickstart's name for it (pv.01, raid.01, btrfs.01)

    @property
    def end(self) -> int:
        return self.start + self.size - 1


@dataclass(frozen=True)
class Layout:
    disk_size: int  # bytes
    sector_size: int
    partitions: tuple[Partition, ...]

    def by_role(self, role: str) -> Partition | None:
        return next((p for p in self.partitions if p.role == role), None)

    @property
    def root(self) -> Partition:
        return next(p for p in self.partitions if p.mountpoint == "/")

    def mount_order(self) -> list[Partition]:
        """Partitions with a Linux filesystem to mount, parents before children (/ before /boot)."""
        mounted = [p for p in self.partitions if p.mountpoint and p.mountpoint.startswith("/") and p.fstype != "vfat"]
        return sorted(mounted, key=lambda p: (p.mountpoint.count("/") if p.mountpoint != "/" else 0, p.mountpoint))

    def offset(self, part: Partition) -> int:
        return part.start * self.sector_size

    def length(self, part: Partition) -> int:
        return part.size * self.sector_size


@dataclass
class Request:
    """One partition to place: its role, what goes on it and how it is sized (`where` locates its spec)."""

    role: str
    mountpoint: str | None
    fstype: str | None
    size_mib: int
    grow: bool = False
    max_mib: int | None = None
    label: str | None = None
    fsoptions: str | None = None
    where: str = "storage"
    final_mib: int = field(default=0)
    member: str | None = None  # role "member": pv.01, raid.01, btrfs.01
    source: int | None = None  # index of the `part` in storage.partitions it comes from


def recommended_swap_mib(memory_mib: int, *, hibernation: bool = False) -> int:
    """Anaconda's recommended swap size for a machine with `memory_mib` MiB of memory: below 2 GiB twice the
    memory, up to 8 GiB the memory, up to 64 GiB half of it, above 4 GiB; hibernation adds the memory."""
    if memory_mib < 2 * GIB_MIB:
        size = 2 * memory_mib
    elif memory_mib < 8 * GIB_MIB:
        size = memory_mib
    elif memory_mib < 64 * GIB_MIB:
        size = memory_mib // 2
    else:
        size = 4 * GIB_MIB
    return size + memory_mib if hibernation else size


def _swap_mib(where: str, memory_mib: int | None, hibernation: bool) -> int:
    if memory_mib is None:
        raise BadInput("swap sized from memory (--recommended/--hibernation) needs the machine's memory size",
                       location=where)
    return recommended_swap_mib(memory_mib, hibernation=hibernation)


def fs_uuid(fstype: str | None, new_uuid: Callable[[], str]) -> str | None:
    if fstype in (None, "biosboot"):
        return None
    value = new_uuid()
    if fstype == "vfat":  # FAT volume id: 32 bits, shown as XXXX-XXXX
        hexdigits = value.replace("-", "")[:8].upper()
        return f"{hexdigits[:4]}-{hexdigits[4:]}"
    return value


def _role_of(part: PartSpec) -> str:
    if part.mountpoint == "biosboot" or part.fstype == "biosboot":
        return "biosboot"
    if part.mountpoint == "/boot/efi" or part.fstype == "efi":
        return "esp"
    if part.mountpoint == "swap" or part.fstype == "swap":
        return "swap"
    if part.mountpoint == "/":
        return "root"
    if part.mountpoint == "/boot":
        return "boot"
    return "data"


def request_from_part(part: PartSpec, index: int, memory_mib: int | None) -> Request:
    where = f"storage.partitions[{index}]" + (f" (kickstart line {part.line})" if part.line else "")
    role = _role_of(part)
    if part.member:
        size = part.size_mib if part.size_mib is not None else 1
        if size <= 0:
            raise BadInput("size must be positive", location=where)
        return Request("member", None, None, size, part.grow, part.max_size_mib, where=where, member=part.mountpoint,
                       source=index)
    if role == "biosboot":
        return Request("biosboot", None, None, BIOS_BOOT_MIB, where=where, source=index)
    if role == "esp":
        size = part.size_mib or ESP_DEFAULT_MIB
        if size < ESP_MIN_MIB:
            raise BadInput(f"the ESP must be at least {ESP_MIN_MIB} MiB (FAT32), got {size} MiB", location=where)
        return Request("esp", "/boot/efi", "vfat", size, part.grow, part.max_size_mib, part.label, part.fsoptions,
                       where, source=index)
    if role == "swap":
        size = _swap_mib(where, memory_mib, part.hibernation) if part.recommended or part.hibernation \
            else part.size_mib or SWAP_DEFAULT_MIB
        if part.recommended and part.max_size_mib is not None:
            size = min(size, part.max_size_mib)
        return Request("swap", "swap", "swap", size, part.grow, part.max_size_mib, part.label, None, where,
                       source=index)
    if not part.mountpoint.startswith("/"):
        raise BadInput(f"unsupported mount point {part.mountpoint!r} (/..., swap, biosboot)", location=where)
    fstype = part.fstype or "ext4"
    if fstype not in DATA_FSTYPES:
        raise BadInput(f"unsupported filesystem {fstype!r} for {part.mountpoint} (use {' or '.join(DATA_FSTYPES)})",
                       location=where)
    default = BOOT_DEFAULT_MIB if role == "boot" else ROOT_MIN_MIB if role == "root" else 1
    size = part.size_mib if part.size_mib is not None else default
    if size <= 0:
        raise BadInput("size must be positive", location=where)
    return Request(role, part.mountpoint, fstype, size, part.grow, part.max_size_mib, part.label, part.fsoptions,
                   where, source=index)


def boot_requests(boot_mode: str, *, with_boot: bool = False) -> list[Request]:
    requests = []
    if boot_mode in ("bios", "both"):
        requests.append(Request("biosboot", None, None, BIOS_BOOT_MIB, where="boot_mode"))
    if boot_mode in ("uefi", "both"):
        requests.append(Request("esp", "/boot/efi", "vfat", ESP_DEFAULT_MIB, where="boot_mode"))
    if with_boot:
        requests.append(Request("boot", "/boot", "ext4", BOOT_DEFAULT_MIB, where="storage.reqpart"))
    return requests


def _requests(storage: DeploySpec | None, boot_mode: str, memory_mib: int | None) -> list[Request]:
    if storage is None or not storage.partitions:
        auto = storage.autopart if storage else None
        with_boot = bool(storage and storage.reqpart_add_boot and not (auto and auto.noboot))
        requests = boot_requests(boot_mode, with_boot=with_boot)
        if auto is not None and not auto.noswap:
            size = _swap_mib("storage.autopart", memory_mib, True) if auto.hibernation else SWAP_DEFAULT_MIB
            requests.append(Request("swap", "swap", "swap", size, where="storage.autopart"))
        fstype = (auto.fstype if auto and auto.fstype else "ext4")
        if fstype not in DATA_FSTYPES:
            raise BadInput(f"unsupported root filesystem {fstype!r} (use {' or '.join(DATA_FSTYPES)})",
                           location="storage.autopart.fstype")
        requests.append(Request("root", "/", fstype, ROOT_MIN_MIB, grow=True, where="storage.autopart"))
        return requests
    requests = [request_from_part(p, i, memory_mib) for i, p in enumerate(storage.partitions)]
    for r in requests:
        if r.role == "member":  # stacks are planned by deployer.storage
            raise BadInput(f"unsupported mount point {r.member!r} (/..., swap, biosboot)", location=r.where)
    seen: dict[str, str] = {}
    for r in requests:
        key = r.mountpoint or r.role
        if key in seen and r.role != "swap":
            raise BadInput(f"{key} is given twice (also at {seen[key]})", location=r.where)
        seen[key] = r.where
    if not any(r.role == "root" for r in requests):
        raise BadInput("no partition for / (add `part / --grow`)", location="storage.partitions")
    roles = {r.role for r in requests}
    boot_code = not (storage.bootloader is not None and storage.bootloader.location == "none")
    if storage.reqpart or boot_code and not roles & {"biosboot", "esp"}:
        # `reqpart`, or (anaconda's convenience) a layout that names no boot partition: add what the firmware needs
        with_boot = storage.reqpart and storage.reqpart_add_boot
        missing = [r for r in boot_requests(boot_mode, with_boot=with_boot) if r.role not in roles]
        requests = missing + requests
    elif boot_code:
        needed = {"biosboot": "part biosboot --fstype=biosboot --size=1", "esp": "part /boot/efi --fstype=efi --size=600"}
        for req in boot_requests(boot_mode):
            if req.role not in roles:
                raise BadInput(f"boot mode {boot_mode!r} needs a {req.role} partition: add `{needed[req.role]}` "
                               "or `reqpart`", location="storage.partitions")
    return sort_requests(requests)


def sort_requests(requests: list[Request]) -> list[Request]:
    """Disk order: biosboot, ESP, /boot, then the rest as given."""
    return sorted(requests, key=lambda r: _ROLE_ORDER.get(r.role, 3))


def grow(requests: list[Request], free_mib: int) -> None:
    """Share free space among growing partitions in proportion to their base size, honouring --maxsize."""
    for r in requests:
        r.final_mib = r.size_mib
    growing = [r for r in requests if r.grow]
    while growing and free_mib > 0:
        weight = sum(r.size_mib for r in growing)
        capped = []
        given = 0
        for i, r in enumerate(growing):
            share = free_mib * r.size_mib // weight if i < len(growing) - 1 else free_mib - given
            if r.max_mib is not None and r.final_mib + share >= r.max_mib:
                share = max(r.max_mib - r.final_mib, 0)
                capped.append(r)
            r.final_mib += share
            given += share
        free_mib -= given
        if not capped:
            break
        growing = [r for r in growing if r not in capped]


def plan_layout(disk_size: int, boot_mode: str, storage: DeploySpec | None = None, *, image_bytes: int = 0,
                sector_size: int = 512, memory_bytes: int | None = None,
                new_uuid: Callable[[], str] = lambda: str(uuidlib.uuid4())) -> Layout:
    """GPT layout for a disk of `disk_size` bytes on a machine with `memory_bytes` of memory (needed only to size
    swap from memory). Raises BadInput when the disk is too small or the spec is wrong."""
    check_boot_mode(boot_mode)
    requests = _requests(storage, boot_mode, memory_bytes // MIB if memory_bytes is not None else None)
    layout = place(requests, disk_size, sector_size, new_uuid)
    root_mib = layout.length(layout.root) // MIB
    root_need = root_need_mib(image_bytes)
    if root_mib < root_need:
        raise BadInput(f"disk too small: / would get {root_mib} MiB but the image needs {root_need} MiB "
                       f"({image_bytes / MIB:.0f} MiB unpacked + headroom); disk is {disk_size / MIB:.0f} MiB",
                       location="disk")
    return layout


def check_boot_mode(boot_mode: str) -> None:
    if boot_mode not in ("bios", "uefi", "both"):
        raise BadInput(f"unknown boot mode {boot_mode!r}", location="boot_mode")


def root_need_mib(image_bytes: int) -> int:
    """What / must hold: the unpacked image plus headroom, at least ROOT_MIN_MIB."""
    return max(ROOT_MIN_MIB, -(-int(image_bytes * ROOT_HEADROOM) // MIB))


def usable_mib(disk_size: int, sector_size: int) -> int:
    """Whole MiB a GPT leaves for partitions: less the first MiB and the backup table, 1 MiB aligned."""
    per_mib = MIB // sector_size
    total_sectors = disk_size // sector_size
    backup_sectors = GPT_ENTRIES_BYTES // sector_size + 1
    usable_end = (total_sectors - backup_sectors) // per_mib * per_mib  # first sector past the last whole MiB
    return usable_end // per_mib - 1  # minus the first MiB (protective MBR, GPT header and entries)


def place(requests: list[Request], disk_size: int, sector_size: int, new_uuid: Callable[[], str], *,
          location: str = "disk") -> Layout:
    """Size `requests` (growing ones share the free space) and lay them out in order from the second MiB;
    BadInput at `location` when their fixed sizes do not fit."""
    per_mib = MIB // sector_size
    available_mib = usable_mib(disk_size, sector_size)
    fixed_mib = sum(r.size_mib for r in requests)
    if fixed_mib > available_mib:
        raise BadInput(f"disk too small: {disk_size / MIB:.0f} MiB, the layout needs at least {fixed_mib + 2} MiB",
                       location=location)
    grow(requests, available_mib - fixed_mib)
    partitions, start = [], per_mib
    for number, r in enumerate(requests, start=1):
        size = r.final_mib * per_mib
        name = {"biosboot": "bios", "esp": "esp", "swap": "swap", "root": "root"}.get(r.role) or r.member \
            or (r.mountpoint or "data").strip("/").replace("/", "-")
        member_type = next((t for prefix, t in MEMBER_TYPES.items() if r.member and r.member.startswith(prefix)), None)
        partitions.append(Partition(
            number=number, name=name, role=r.role, start=start, size=size,
            type_guid=TYPE_GUIDS[member_type] if member_type else
            TYPE_GUIDS.get(r.role) or TYPE_GUIDS.get(r.mountpoint or "", TYPE_GUIDS["linux"]),
            fstype=r.fstype, mountpoint=r.mountpoint, fs_uuid=fs_uuid(r.fstype, new_uuid),
            label=r.label, fsoptions=r.fsoptions, member=r.member))
        start += size
    return Layout(disk_size=disk_size, sector_size=sector_size, partitions=tuple(partitions))


def render_sfdisk(layout: Layout) -> str:
    """The sfdisk script that creates `layout` (feed it to `sfdisk --wipe always DISK`)."""
    lines = ["label: gpt", "unit: sectors", f"first-lba: {MIB // layout.sector_size}",
             f"sector-size: {layout.sector_size}", ""]
    for p in layout.partitions:
        lines.append(f'start={p.start}, size={p.size}, type={p.type_guid}, name="{p.name}"')
    return "\n".join(lines) + "\n"


def describe(layout: Layout) -> str:
    """A human table of the layout for --dry-run."""
    rows = [f"{'#':>2}  {'start':>10}  {'size':>10}  {'MiB':>8}  {'type':<9} {'fs':<5} {'mount':<10} uuid"]
    for p in layout.partitions:
        rows.append(f"{p.number:>2}  {p.start:>10}  {p.size:>10}  {layout.length(p) // MIB:>8}  {p.role:<9} "
                    f"{p.fstype or '-':<5} {p.mountpoint or '-':<10} {p.fs_uuid or '-'}")
    return "\n".join(rows)


def _disk_named(names: list[str], disk_names: tuple[str, ...]) -> bool:
    return any(n.removeprefix("/dev/") in {d.removeprefix("/dev/") for d in disk_names} for n in names)


def check_disk_use(storage: DeploySpec | None, *, disk_names: tuple[str, ...], existing: tuple[str, ...],
                   wipe_flag: str = "--wipe") -> None:
    """Refuse (BadInput) unless the plan allows overwriting what is on the disk.

    `disk_names`: names the target answers to (sda, /dev/sda, disk.img); `existing`: partitions or
    signatures found on it (empty for a fresh disk or a new image file).
    """
    if storage is not None:
        for i, part in enumerate(storage.partitions):
            if part.ondisk and not _disk_named([part.ondisk], disk_names):
                raise BadInput(f"--ondisk={part.ondisk} is not the target disk ({disk_names[0]}); "
                               "metalstream installs onto one disk", location=f"storage.partitions[{i}].ondisk")
    if not existing:
        return
    clear = storage.clearpart if storage else None
    if clear and clear.mode in ("linux", "list"):
        raise BadInput(f"clearpart --{clear.mode} would keep some partitions, but metalstream always writes a "
                       "fresh GPT: use `clearpart --all`", location="storage.clearpart")
    clears = bool(clear and clear.mode == "all" and (not clear.drives or _disk_named(clear.drives, disk_names)))
    if clears or (storage is not None and storage.zerombr):
        return
    raise BadInput(f"{disk_names[0]} already holds {', '.join(existing)}; refusing to overwrite it without "
                   f"permission: pass {wipe_flag} (or `clearpart --all` / `zerombr` in the deploy kickstart)",
                   location="disk")

