"""Which disks a deployment touches, all chosen before the first write (pure: over deployer.disks' inventory).

The storage section names disks (`bootloader --boot-drive`, `ignoredisk --only-use`, `clearpart --drives`,
`part --ondisk/--ondrive`) and the plan may give hints for names (`disks`: {NAME: hints}); each name is one
disk: found by its hints when the plan gives some, else by the name itself (sda, /dev/sda, a by-path link).
The first disk takes the partitions naming no disk: the one the plan's `disk_hints` match if given (exactly one
of the named disks must), else the first name in that order. A layout naming no disk takes the one disk the
plan's `disk_hints` select (deployer.disks.select_disk). `ignoredisk` filters
the candidates; a name matching no disk or several, or two names meaning one disk, is a BadInput naming the
candidates.
"""
from __future__ import annotations

from metalstream.contracts.deployspec import DeploySpec
from metalstream.contracts.plan import DiskHints, Plan
from metalstream.errors import BadInput

from ..disks import Disk, _candidates_text, _matches, _name_matches, apply_ignoredisk, select_disk
from .model import TargetDisk


def disk_names(plan: Plan) -> dict[str, str]:
    """Every disk name the plan uses, first disk first, each with where it is first named."""
    s: DeploySpec | None = plan.storage
    names: dict[str, str] = {}
    if s is not None:
        if s.bootloader and s.bootloader.boot_drive:
            names.setdefault(s.bootloader.boot_drive, _at("storage.bootloader", s.bootloader.line))
        for name in s.ignoredisk.only_use if s.ignoredisk else []:
            names.setdefault(name, _at("storage.ignoredisk", s.ignoredisk.line))
        for name in s.clearpart.drives if s.clearpart else []:
            names.setdefault(name, _at("storage.clearpart", s.clearpart.line))
        for i, part in enumerate(s.partitions):
            if part.ondisk:
                names.setdefault(part.ondisk, _at(f"storage.partitions[{i}]", part.line))
    for name in plan.disks:
        names.setdefault(name, f"plan.disks.{name}")
    return names


def choose_disks(plan: Plan, available: list[Disk]) -> list[TargetDisk]:
    s = plan.storage
    only_use = s.ignoredisk.only_use if s and s.ignoredisk else []
    ignore = s.ignoredisk.ignore if s and s.ignoredisk else []
    names = disk_names(plan)
    if not names:
        return [_target("", select_disk(available, plan.disk_hints, only_use=only_use, ignore=ignore))]
    pool = [d for d in apply_ignoredisk(list(available), list(only_use), list(ignore)) if not d.read_only]
    chosen: dict[str, TargetDisk] = {}
    taken: dict[str, str] = {}
    for name, where in names.items():
        hints = plan.disks.get(name)
        disk = _find(name, hints, pool, f"plan.disks.{name}" if hints and hints.given() else where)
        if disk.path in taken:
            raise BadInput(f"{name} and {taken[disk.path]} both name {disk.describe()}; each name must be its own "
                           "disk", location=where)
        taken[disk.path] = name
        chosen[name] = _target(name, disk)
    return _hinted_first(plan.disk_hints, list(chosen.values()), pool)


def _hinted_first(hints: DiskHints, chosen: list[TargetDisk], pool: list[Disk]) -> list[TargetDisk]:
    """The plan's `disk_hints`, given, pick which of the named disks is first (takes partitions naming no disk)."""
    if not hints.given():
        return chosen
    inventory = {d.path: d for d in pool}
    matched = [t for t in chosen if _matches(inventory[t.path], hints)]
    wanted = ", ".join(f"{k}={v}" for k, v in hints.given().items())
    if len(matched) != 1:
        disks = "; ".join(inventory[t.path].describe() for t in (matched or chosen))
        raise BadInput(f"the disk hints ({wanted}) match {len(matched)} of the disks the storage section names, "
                       f"not one: {disks}", location="plan.disk_hints")
    return [matched[0], *(t for t in chosen if t is not matched[0])]


def _at(location: str, line: int | None) -> str:
    return location + (f" (kickstart line {line})" if line else "")


def _find(name: str, hints: DiskHints | None, pool: list[Disk], where: str) -> Disk:
    if hints is not None and hints.given():
        matched = [d for d in pool if _matches(d, hints)]
        wanted = ", ".join(f"{k}={v}" for k, v in hints.given().items())
    else:
        path = name if name.startswith("/") else f"/dev/{name}" if name.startswith("disk/") else name
        matched = [d for d in pool if _name_matches(d, path)]
        wanted = f"name {name}"
    if len(matched) == 1:
        return matched[0]
    if not matched:
        raise BadInput(f"no disk matches {name} ({wanted}); disks present: {_candidates_text(pool)}", location=where)
    raise BadInput(f"{len(matched)} disks match {name} ({wanted}), refusing to guess: {_candidates_text(matched)}; "
                   "add a hint (serial, wwn, by_path) that picks one", location=where)


def _target(key: str, disk: Disk) -> TargetDisk:
    names = tuple(dict.fromkeys(n for n in (key, disk.name, disk.path, disk.by_path) if n))
    return TargetDisk(key, disk.path, disk.size, disk.logical_sector_size, names)
