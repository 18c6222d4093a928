"""Which disk to install on: a pyudev inventory, and pure hint matching over it.

`list_disks()` reads the machine; `select_disk(disks, hints, ...)` is a pure function (ironic's
find_devices_by_hints is the model): every given hint must match; more than one match or none
raises BadInput listing the candidates, before anything is written.
Default policy without hints: the smallest non-removable, writable disk of at least 8 GiB
(ties broken by name), documented in docs/agent.md.
"""
from __future__ import annotations

from dataclasses import dataclass

from metalstream.contracts.plan import DiskHints
from metalstream.errors import BadInput

GIB = 1 << 30
DEFAULT_MIN_SIZE = 8 * GIB
_SKIP_PREFIXES = ("loop", "ram", "zram", "sr", "fd", "dm-", "md", "nbd")


@dataclass(frozen=True)
class Disk:
    name: str  # kernel name: sda, nvme0n1
    path: str  # /dev/sda
    size: int  # bytes
    serial: str | None = None
    wwn: str | None = None
    by_path: str | None = None  # /dev/disk/by-path/...
    model: str | None = None
    rotational: bool | None = None
    removable: bool = False
    read_only: bool = False
    partitions: tuple[str, ...] = ()  # kernel names of existing partitions
    filesystems: tuple[str, ...] = ()  # signatures found on the disk or its partitions (ext4, vfat, PMBR...)
    partition_table: str | None = None  # gpt | dos | None
    logical_sector_size: int = 512

    def describe(self) -> str:
        bits = [self.path, f"{self.size / GIB:.1f} GiB"]
        for label, value in (("model", self.model), ("serial", self.serial), ("wwn", self.wwn)):
            if value:
                bits.append(f"{label}={value}")
        if self.removable:
            bits.append("removable")
        if self.partitions:
            bits.append(f"{len(self.partitions)} partition(s)")
        return " ".join(bits)


def _flag(value: str | None) -> bool | None:
    return None if value is None else value.strip() == "1"


def list_disks() -> list[Disk]:
    """Every whole disk the kernel knows (no loop/ram/optical/device-mapper devices), by name."""
    import pyudev

    context = pyudev.Context()
    disks = []
    for dev in context.list_devices(subsystem="block", DEVTYPE="disk"):
        if dev.sys_name.startswith(_SKIP_PREFIXES):
            continue
        attrs = dev.attributes
        sectors = int(attrs.asstring("size")) if "size" in attrs.available_attributes else 0
        if sectors == 0:
            continue
        props = dev.properties
        by_path = next((link for link in dev.device_links if link.startswith("/dev/disk/by-path/")), None)
        parts = [child for child in dev.children if child.device_type == "partition"]
        filesystems = [p.properties.get("ID_FS_TYPE") for p in [dev, *parts]]
        queue = f"{dev.sys_path}/queue/"
        disks.append(Disk(
            name=dev.sys_name,
            path=dev.device_node,
            size=sectors * 512,  # /sys/block/*/size is always in 512-byte units
            # the unit serial first: for a SCSI disk with a WWN, ID_SERIAL(_SHORT) is made from the WWN
            serial=props.get("ID_SCSI_SERIAL") or props.get("ID_SERIAL_SHORT") or props.get("ID_SERIAL"),
            wwn=props.get("ID_WWN_WITH_EXTENSION") or props.get("ID_WWN"),
            by_path=by_path,
            model=(props.get("ID_MODEL") or _read(f"{dev.sys_path}/device/model") or "").replace("_", " ").strip()
            or None,
            rotational=_flag(_read(queue + "rotational")),
            removable=bool(_flag(_read(f"{dev.sys_path}/removable"))),
            read_only=bool(_flag(_read(f"{dev.sys_path}/ro"))),
            partitions=tuple(sorted(p.sys_name for p in parts)),
            filesystems=tuple(sorted({fs for fs in filesystems if fs})),
            partition_table=props.get("ID_PART_TABLE_TYPE"),
            logical_sector_size=int(_read(queue + "logical_block_size") or 512),
        ))
    return sorted(disks, key=lambda d: d.name)


def _read(path: str) -> str | None:
    try:
        with open(path) as f:
            return f.read().strip()
    except OSError:
        return None


def _norm(value: str | None) -> str | None:
    return None if value is None else value.strip().lower()


def _name_matches(disk: Disk, wanted: str) -> bool:
    wanted = wanted.strip()
    return wanted in (disk.name, disk.path) or (disk.by_path is not None and wanted == disk.by_path)


def _matches(disk: Disk, hints: DiskHints) -> bool:
    if hints.name is not None and not _name_matches(disk, hints.name):
        return False
    if hints.serial is not None and _norm(disk.serial) != _norm(hints.serial):
        return False
    if hints.wwn is not None and _norm(disk.wwn) != _norm(hints.wwn) and not (
            disk.wwn and _norm(disk.wwn).startswith(_norm(hints.wwn))):
        return False
    if hints.by_path is not None:
        want = hints.by_path if hints.by_path.startswith("/dev/") else f"/dev/disk/by-path/{hints.by_path}"
        if disk.by_path != want:
            return False
    if hints.model is not None and _norm(disk.model) != _norm(hints.model):
        return False
    if hints.min_size_gib is not None and disk.size < hints.min_size_gib * GIB:
        return False
    if hints.max_size_gib is not None and disk.size > hints.max_size_gib * GIB:
        return False
    if hints.rotational is not None and disk.rotational != hints.rotational:
        return False
    return True


def _candidates_text(disks: list[Disk]) -> str:
    return "; ".join(d.describe() for d in disks) or "none"


def apply_ignoredisk(disks: list[Disk], only_use: list[str], ignore: list[str]) -> list[Disk]:
    """Kickstart `ignoredisk --only-use=... / --drives=...`: names, /dev paths or by-path links."""
    kept = [d for d in disks if not only_use or any(_name_matches(d, w) for w in only_use)]
    return [d for d in kept if not any(_name_matches(d, w) for w in ignore)]


def select_disk(disks: list[Disk], hints: DiskHints, *, only_use: list[str] = (), ignore: list[str] = (),
                min_size: int = DEFAULT_MIN_SIZE) -> Disk:
    """The one disk the plan means. Pure: raises BadInput listing candidates when none or several match."""
    pool = [d for d in apply_ignoredisk(list(disks), list(only_use), list(ignore)) if not d.read_only]
    given = hints.given()
    if given:
        matched = [d for d in pool if _matches(d, hints)]
        if len(matched) == 1:
            return matched[0]
        wanted = ", ".join(f"{k}={v}" for k, v in given.items())
        if not matched:
            raise BadInput(f"no disk matches the hints ({wanted}); disks present: {_candidates_text(pool)}",
                           location="plan.disk_hints")
        raise BadInput(f"{len(matched)} disks match the hints ({wanted}), refusing to guess: "
                       f"{_candidates_text(matched)}; add a hint (serial, wwn, by_path) that picks one",
                       location="plan.disk_hints")
    eligible = sorted((d for d in pool if not d.removable and d.size >= min_size), key=lambda d: (d.size, d.name))
    if not eligible:
        raise BadInput(f"no non-removable disk of at least {min_size / GIB:.0f} GiB; disks present: "
                       f"{_candidates_text(pool)}", location="plan.disk_hints")
    return eligible[0]

