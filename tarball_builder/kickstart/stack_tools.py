"""The tools a storage stack needs in the image: its initramfs assembles, activates or unlocks the stack at boot
only when the image holds them. A layout whose stack's package is not in %packages is a warning at the first
line that asks for the stack."""
from __future__ import annotations

from ..spec import Distribution, Packages
from .adapter import AUTOPART_SCHEMES, Parsed
from .diagnostics import Findings

# stack -> family -> packages
STACK_PACKAGES = {
    "RAID": {"debian": ("mdadm",), "rpm": ("mdadm",)},
    "LVM": {"debian": ("lvm2",), "rpm": ("lvm2",)},
    "LVM thin provisioning": {"debian": ("thin-provisioning-tools",), "rpm": ("device-mapper-persistent-data",)},
    "LUKS": {"debian": ("cryptsetup", "cryptsetup-initramfs"), "rpm": ("cryptsetup",)},
    "btrfs": {"debian": ("btrfs-progs",), "rpm": ("btrfs-progs",)},
}


def stack_lines(parsed: Parsed) -> dict[str, int]:
    """stack -> the first line (of the expanded text) of the layout that needs it."""
    h = parsed.handler
    found: dict[str, list[int]] = {stack: [] for stack in STACK_PACKAGES}
    found["RAID"] += [d.lineno for d in h.raid.raidList]
    found["LVM"] += [d.lineno for d in [*h.volgroup.vgList, *h.logvol.lvList]]
    found["LVM thin provisioning"] += [d.lineno for d in h.logvol.lvList if d.thin_pool or d.thin_volume]
    found["btrfs"] += [d.lineno for d in h.btrfs.btrfsList]
    found["LUKS"] += [d.lineno for d in [*h.partition.partitions, *h.logvol.lvList, *h.raid.raidList] if d.encrypted]
    if h.autopart.autopart:
        line = parsed.line_of("autopart")
        scheme = AUTOPART_SCHEMES.get(h.autopart.type, "plain") if h.autopart.type is not None else "plain"
        stacks = {"lvm": ["LVM"], "thinp": ["LVM", "LVM thin provisioning"], "btrfs": ["btrfs"]}.get(scheme, [])
        stacks += ["LUKS"] if h.autopart.encrypted else []
        for stack in stacks:
            found[stack].append(line)
    return {stack: min(lines) for stack, lines in found.items() if lines}


def check_stack_tools(lines: dict[str, int], distribution: Distribution, packages: Packages,
                      findings: Findings) -> None:
    """Warn at the layout line of each stack whose packages %packages does not list."""
    family = distribution.family
    for stack, line in sorted(lines.items(), key=lambda item: item[1]):
        wanted = STACK_PACKAGES[stack].get(family)
        if not wanted:
            continue
        missing = [name for name in wanted if name not in packages.names]
        if not missing:
            continue
        groups = [g for g in packages.groups if g != "core"]
        maybe = f" (unless {', '.join('@' + g for g in groups)} brings it)" if groups else ""
        findings.warn(line, f"the layout uses {stack} but %packages lacks {', '.join(missing)}{maybe}: the image's "
                            f"initramfs could not bring the {stack} stack up at boot (add {', '.join(missing)})")
