"""The storage lines of one kickstart, as the checks see them (storage_checks, storage_fit)."""
from __future__ import annotations

from dataclasses import dataclass, field

from metalstream.contracts.deployspec import (
    AutoPart,
    BtrfsSpec,
    IgnoreDisk,
    LogVolSpec,
    PartSpec,
    RaidSpec,
    VolGroupSpec,
)


@dataclass
class Layout:
    """The storage lines of one kickstart as (line of the expanded text, spec element) pairs."""

    parts: list[tuple[int, PartSpec]] = field(default_factory=list)
    volgroups: list[tuple[int, VolGroupSpec]] = field(default_factory=list)
    logvols: list[tuple[int, LogVolSpec]] = field(default_factory=list)
    raids: list[tuple[int, RaidSpec]] = field(default_factory=list)
    btrfs: list[tuple[int, BtrfsSpec]] = field(default_factory=list)
    autopart: tuple[int, AutoPart] | None = None
    ignoredisk: IgnoreDisk | None = None
    complete: bool = True  # False: a deferred or missing %include may hold more storage lines
    reqpart_boot: bool = False  # `reqpart --add-boot`: the agent adds a plain /boot


def mounts(layout: Layout) -> list[tuple[int, str, str]]:
    """(line, mount point, what) of everything mounted at a path (not members, swap or thin pools)."""
    found = [(line, p.mountpoint, "part") for line, p in layout.parts if p.mountpoint.startswith("/")]
    found += [(line, v.mountpoint, "logvol") for line, v in layout.logvols if v.mountpoint.startswith("/")]
    found += [(line, r.mountpoint, "raid") for line, r in layout.raids if r.mountpoint.startswith("/")]
    found += [(line, b.mountpoint, "btrfs") for line, b in layout.btrfs if b.mountpoint.startswith("/")]
    return sorted(found)
