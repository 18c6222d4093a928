"""One line per storage stack of a deploy spec, for `ks lint`: what the agent will build above the partitions."""
from __future__ import annotations

from metalstream.contracts.deployspec import DeploySpec


def _luks_name(item) -> str:
    return f"LUKS {item.luks_version}" if item.luks_version else "LUKS"


def _luks(item) -> str:
    return f", {_luks_name(item)}" if item.encrypted else ""


def _holds(mountpoint: str, fstype: str | None) -> str:
    if mountpoint == "swap":
        return "swap"
    return f"{mountpoint}{f' ({fstype})' if fstype else ''}"


def storage_lines(spec: DeploySpec) -> list[str]:
    lines = []
    auto = spec.autopart
    if auto is not None and (auto.scheme != "plain" or auto.encrypted):
        lines.append(f"autopart {auto.scheme}{_luks(auto)} (line {auto.line})")
    for part in spec.partitions:
        if part.encrypted and not part.member:
            lines.append(f"{_luks_name(part)} partition -> {_holds(part.mountpoint, part.fstype)} (line {part.line})")
    for raid in spec.raids:
        spares = f", {raid.spares} spare(s)" if raid.spares else ""
        lines.append(f"{raid.level.upper()} {raid.device} of {', '.join(raid.members)}{spares}{_luks(raid)} -> "
                     f"{_holds(raid.mountpoint, raid.fstype)} (line {raid.line})")
    for group in spec.volgroups:
        pvs = ", ".join(f"{pv} (LUKS)" if _encrypted_member(spec, pv) else pv for pv in group.pvs)
        volumes = [_volume(lv) for lv in spec.logvols if lv.vgname == group.name]
        lines.append(f"LVM {group.name} on {pvs}: {'; '.join(volumes) or 'no volumes'} (line {group.line})")
    for volume in (b for b in spec.btrfs if not b.subvol):
        name = volume.label or volume.mountpoint
        levels = "/".join(level or "default" for level in (volume.data_level, volume.metadata_level))
        subvolumes = [f"{s.name} -> {s.mountpoint}" for s in spec.btrfs
                      if s.subvol and s.volume in (volume.label, volume.mountpoint)]
        mounted = [f"-> {volume.mountpoint}"] if volume.mountpoint != "none" else []
        lines.append(f"btrfs {name} ({levels}) on {', '.join(volume.members)}: "
                     f"{'; '.join(mounted + subvolumes) or 'no mount'} (line {volume.line})")
    lines += [f"%pre {script.interpreter} (line {script.line}): run on the machine before the disks are chosen"
              for script in spec.pre_scripts]
    lines += [f"%include {include.path} (line {include.line}): read on the machine at deploy time"
              for include in spec.deferred_includes]
    return lines


def _encrypted_member(spec: DeploySpec, name: str) -> bool:
    return any(p.encrypted for p in [*spec.partitions, *spec.raids] if p.mountpoint == name)


def _volume(lv) -> str:
    if lv.thinpool:
        return f"{lv.name} (thin pool)"
    thin = f" (thin, in {lv.poolname})" if lv.thin else ""
    return f"{lv.name}{_luks(lv)}{thin} -> {_holds(lv.mountpoint, lv.fstype)}"
