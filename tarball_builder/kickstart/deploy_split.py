"""Deploy half of the split: what the agent applies to each machine (disk layout with its storage stacks,
%pre scripts, bootloader, network, keys, Secure Boot)."""
from __future__ import annotations

from metalstream.contracts import rules
from metalstream.contracts.deployspec import (
    AutoPart,
    Bootloader,
    ClearPart,
    DeferredInclude,
    DeploySpec,
    IgnoreDisk,
    PartSpec,
    PreScript,
    SecureBoot,
)

from . import storage_split
from .adapter import AUTOPART_SCHEMES, CLEARPART_MODES, SCRIPT_PRE, Parsed
from .deploy_addon import DeploySettings
from .diagnostics import Findings
from .network_split import split_network as _network
from .storage_checks import check_storage
from .storage_layout import Layout

FSTYPES = ("ext4", "xfs", "vfat", "efi", "swap", "biosboot")
ROOT_FSTYPES = ("ext4", "xfs")
BOOTLOADER_LOCATIONS = ("mbr", "partition", "none")
# What a member name's prefix says it is, as anaconda reads it; `part pv.01 --fstype=lvmpv` says it again.
MEMBER_FSTYPES = {"pv.": "lvmpv", "raid.": "mdmember", "btrfs.": "btrfs"}


def split_deploy(parsed: Parsed, findings: Findings, settings: DeploySettings, deferred=()) -> DeploySpec:
    """The deploy spec; `settings` are what `%addon org_metalstream_deploy` said (deploy_addon); `deferred` the
    `%include`s left for deploy time (source.DeferredInclude)."""
    h = parsed.handler
    original = lambda line: findings.locate(line)[1] if line else None  # noqa: E731
    spec = DeploySpec()
    if h.ignoredisk.seen:
        line = parsed.line_of("ignoredisk")
        spec.ignoredisk = IgnoreDisk(only_use=list(h.ignoredisk.onlyuse), ignore=list(h.ignoredisk.ignoredisk),
                                     line=original(line))
    if h.clearpart.seen:
        spec.clearpart = _clearpart(parsed, findings, original)
    spec.zerombr = bool(h.zerombr.zerombr)
    spec.reqpart = bool(h.reqpart.reqpart)
    spec.reqpart_add_boot = bool(h.reqpart.reqpart and h.reqpart.addBoot)
    layout = Layout(ignoredisk=spec.ignoredisk, complete=parsed.complete and not deferred,
                    reqpart_boot=spec.reqpart_add_boot)
    if h.autopart.autopart:
        spec.autopart = _autopart(parsed, findings, original)
        layout.autopart = (parsed.line_of("autopart"), spec.autopart)
    layout.parts = _partitions(parsed, findings, original)
    layout.volgroups = storage_split.volgroups(parsed, findings, original)
    layout.logvols = storage_split.logvols(parsed, findings, original)
    layout.raids = storage_split.raids(parsed, findings, original)
    layout.btrfs = storage_split.btrfs(parsed, findings, original)
    spec.partitions = [p for _line, p in layout.parts]
    spec.volgroups = [g for _line, g in layout.volgroups]
    spec.logvols = [v for _line, v in layout.logvols]
    spec.raids = [r for _line, r in layout.raids]
    spec.btrfs = [b for _line, b in layout.btrfs]
    spec.pre_scripts = _pre_scripts(parsed, findings, original)
    spec.deferred_includes = [DeferredInclude(path=d.path, line=d.line) for d in deferred]
    if h.bootloader.seen:
        spec.bootloader = _bootloader(parsed, findings, original)
    check_storage(layout, findings)
    _check_root(parsed, spec, findings, layout.complete)
    spec.network, spec.hostname = _network(parsed, findings, original)
    if settings.secure_boot:
        spec.secure_boot = SecureBoot(required=True, line=original(settings.secure_boot_line))
    return spec


def _pre_scripts(parsed: Parsed, findings: Findings, original) -> list[PreScript]:
    """`%pre` sections: the agent runs them on the machine before it chooses the disks."""
    scripts = []
    for script in parsed.handler.scripts:
        if script.type != SCRIPT_PRE:
            continue
        if not script.interp.startswith("/"):
            findings.error(script.lineno, f"%pre --interpreter={script.interp}: the interpreter must be an absolute "
                                          "path (e.g. /bin/bash, /usr/bin/python3)")
        scripts.append(PreScript(script=script.script, interpreter=script.interp, erroronfail=bool(script.errorOnFail),
                                 log=script.logfile or None, line=original(script.lineno)))
    return scripts


def _clearpart(parsed: Parsed, findings: Findings, original) -> ClearPart:
    cp = parsed.handler.clearpart
    line = parsed.line_of("clearpart")
    if cp.disklabel and cp.disklabel != "gpt":
        findings.error(line, f"clearpart --disklabel={cp.disklabel}: metalstream writes GPT only (use --disklabel=gpt)")
    mode = CLEARPART_MODES.get(cp.type, "none")
    return ClearPart(mode=mode, drives=list(cp.drives), partitions=list(cp.devices) if mode == "list" else [],
                     initlabel=bool(cp.initAll), disklabel="gpt", line=original(line))


def _autopart(parsed: Parsed, findings: Findings, original) -> AutoPart:
    ap = parsed.handler.autopart
    line = parsed.line_of("autopart")
    scheme = AUTOPART_SCHEMES.get(ap.type, "plain") if ap.type is not None else "plain"
    if ap.type is None:
        findings.warn(line, "autopart without --type makes plain partitions here (anaconda's default is LVM): "
                            "say which with --type=plain, lvm, thinp or btrfs")
    fstype = ap.fstype or None
    if scheme == "btrfs" and fstype not in (None, "btrfs"):
        findings.error(line, f"autopart --type=btrfs --fstype={fstype}: the btrfs layout's file system is btrfs")
    elif scheme != "btrfs" and fstype and fstype not in ROOT_FSTYPES:
        findings.error(line, f"autopart --fstype={fstype}: use one of {', '.join(ROOT_FSTYPES)}")
    encrypted, version, cipher = storage_split.encryption("autopart", ap, line, findings)
    return AutoPart(fstype=None if scheme == "btrfs" else fstype, scheme=scheme, nohome=bool(ap.nohome),
                    noswap=bool(ap.noswap), noboot=bool(ap.noboot), hibernation=bool(ap.hibernation),
                    encrypted=encrypted, luks_version=version, cipher=cipher, line=original(line))


def _partitions(parsed: Parsed, findings: Findings, original) -> list[tuple[int, PartSpec]]:
    """(line of the expanded text, partition) of each `part` line kept."""
    parts: dict[str, tuple[int, PartSpec]] = {}  # by mount point; swap partitions by their line
    for data in parsed.handler.partition.partitions:
        line = data.lineno
        mountpoint, fstype = data.mountpoint, data.fstype or None
        member = next((prefix for prefix in MEMBER_FSTYPES if mountpoint.startswith(prefix)), None)
        if member and not _check_member(mountpoint, fstype, MEMBER_FSTYPES[member], data, line, findings):
            continue
        if (data.recommended or data.hibernation) and mountpoint != "swap":
            findings.error(line, f"part {mountpoint}: --recommended/--hibernation size swap partitions only")
            continue
        if member:
            fstype = None
        if mountpoint == "swap" and fstype is None:
            fstype = "swap"
        if mountpoint == "biosboot" and fstype is None:
            fstype = "biosboot"
        if mountpoint == "/boot/efi" and fstype is None:
            fstype = "efi"
        if not _check_part(mountpoint, fstype, data, line, findings):
            continue
        key = f"swap@{line}" if mountpoint == "swap" else mountpoint
        if key in parts:  # anaconda: the later definition wins (how spins override an included layout)
            findings.warn(line, f"part {mountpoint}: overrides the definition at {findings.place(parts[key][0])}")
            del parts[key]
        sized = data.recommended or data.hibernation
        encrypted, version, cipher = storage_split.encryption(f"part {mountpoint}", data, line, findings)
        parts[key] = (line, PartSpec(
            mountpoint=mountpoint, fstype=fstype, size_mib=None if sized else data.size, grow=bool(data.grow),
            max_size_mib=data.maxSizeMB or None, ondisk=data.disk or None, label=data.label or None,
            fsoptions=data.fsopts or None, recommended=bool(sized), hibernation=bool(data.hibernation),
            encrypted=encrypted, luks_version=version, cipher=cipher, line=original(line)))
    return list(parts.values())


def _check_member(name: str, fstype: str | None, expected: str, data, line: int, findings: Findings) -> bool:
    """`part pv.01` (raid.NN, btrfs.NN): a partition with no file system of its own."""
    ok = True
    if fstype not in (None, expected):
        findings.error(line, f"part {name}: --fstype={fstype}: a {name.split('.')[0]}. member partition is "
                             f"{expected} (or give no --fstype)")
        ok = False
    if data.label or data.fsopts:
        findings.error(line, f"part {name}: a member partition has no file system of its own: --label and "
                             "--fsoptions belong on the line of what it is a member of")
        ok = False
    return ok


def _check_root(parsed: Parsed, spec: DeploySpec, findings: Findings, complete: bool) -> None:
    """A layout without `/` cannot be deployed (unless `/` is on a line already refused: one message per problem,
    or may be in a %include read at deploy time); no layout command at all means the default layout (autopart)."""
    placed = [*spec.partitions, *spec.logvols, *spec.raids, *spec.btrfs]
    if spec.autopart is not None or not placed:
        return
    first = min(parsed.lines_of("part", "partition", "logvol", "volgroup", "raid", "btrfs"), default=None)
    if any(p.mountpoint == "/" for p in placed):
        _check_boot_partitions(spec, first, findings)
        return
    h = parsed.handler
    refused = [*h.partition.partitions, *h.logvol.lvList, *h.raid.raidList, *h.btrfs.btrfsList]
    if not complete or any(getattr(data, "mountpoint", None) == "/" for data in refused):
        return
    findings.error(first, "the layout has no `/`: add `part / --size=MiB --grow` (or use autopart)")


def _check_boot_partitions(spec: DeploySpec, first: int | None, findings: Findings) -> None:
    """Anaconda's convenience, which the agent's planner follows: a layout that installs a bootloader and names
    no boot partition gets what the machine's firmware needs, as `reqpart` would."""
    boot_code = not (spec.bootloader is not None and spec.bootloader.location == "none")
    named = any(p.mountpoint in ("biosboot", "/boot/efi") for p in [*spec.partitions, *spec.raids])
    if boot_code and not spec.reqpart and not named:
        findings.warn(first, "no EFI system or BIOS boot partition: the agent adds the ones this machine's "
                             "firmware needs, as `reqpart` does")


# A GPT disk has at most 2**64 sectors of 512 bytes: 2**64 * 512 / 2**20 MiB.
MAX_PARTITION_MIB = 2**64 // 2**11


def _check_part(mountpoint: str, fstype: str | None, data, line: int, findings: Findings) -> bool:
    ok = True
    if fstype is not None and fstype not in FSTYPES:
        findings.error(line, f"part {mountpoint}: unsupported --fstype={fstype} (supported: {', '.join(FSTYPES)})")
        return False
    if mountpoint not in ("swap", "biosboot") and not mountpoint.startswith(("/", *MEMBER_FSTYPES)):
        findings.error(line, f"part {mountpoint!r}: mount point must be an absolute path, swap or biosboot")
        ok = False
    if fstype == "swap" and mountpoint != "swap" or mountpoint == "swap" and fstype not in (None, "swap"):
        findings.error(line, f"part {mountpoint}: --fstype=swap goes with the mount point swap only")
        ok = False
    if (fstype == "biosboot") != (mountpoint == "biosboot"):
        findings.error(line, f"part {mountpoint}: --fstype=biosboot goes with the mount point biosboot only")
        ok = False
    if fstype == "efi" and mountpoint != "/boot/efi":
        findings.error(line, f"part {mountpoint}: --fstype=efi is for the EFI system partition /boot/efi")
        ok = False
    if mountpoint == "/" and fstype not in (None, *ROOT_FSTYPES):
        findings.error(line, f"part /: the root file system must be {' or '.join(ROOT_FSTYPES)}, not {fstype}")
        ok = False
    if data.size is not None and data.size <= 0:
        findings.error(line, f"part {mountpoint}: --size must be a positive number of MiB")
        ok = False
    for option, value in (("--size", data.size), ("--maxsize", data.maxSizeMB)):
        if value is not None and value > MAX_PARTITION_MIB:
            findings.error(line, f"part {mountpoint}: {option}={value} MiB is larger than any disk GPT can address "
                                 f"(at most {MAX_PARTITION_MIB} MiB)")
            ok = False
    if data.maxSizeMB and data.size and data.maxSizeMB < data.size:
        findings.error(line, f"part {mountpoint}: --maxsize={data.maxSizeMB} is smaller than --size={data.size}")
        ok = False
    if data.size is None and not data.grow and not data.recommended and not data.hibernation \
            and mountpoint not in ("biosboot", "/boot/efi"):
        findings.error(line, f"part {mountpoint}: give --size=MiB or --grow")
        ok = False
    return ok


def _bootloader(parsed: Parsed, findings: Findings, original) -> Bootloader:
    bl = parsed.handler.bootloader
    line = parsed.line_of("bootloader")
    location = "none" if bl.disabled else bl.location
    if location not in BOOTLOADER_LOCATIONS:
        findings.error(line, f"bootloader --location={location}: use one of {', '.join(BOOTLOADER_LOCATIONS)}")
    if bl.timeout is not None and bl.timeout < 0:
        findings.error(line, "bootloader --timeout must be 0 or more seconds")
    append = findings.check(line, rules.kernel_args, bl.appendLine or "", "bootloader --append") or ""
    return Bootloader(location=location, append=append, timeout=bl.timeout, boot_drive=bl.bootDrive or None,
                      line=original(line))

