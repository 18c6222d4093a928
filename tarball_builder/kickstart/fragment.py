"""A deferred `%include` resolved at deploy time: the storage commands a `%pre` wrote, merged into the deploy spec.

    spec = merge_includes(spec, [(DeferredInclude("/tmp/part-include", line=9), text)])

The included text is parsed like any kickstart text (pykickstart at the pinned syntax, the same option checks
and the same split of each storage line), then merged as anaconda would read it at the `%include`: list commands
(`part`, `raid`, `volgroup`, `logvol`, `btrfs`) add to the kickstart's, a `part` for a mount point the kickstart
already has replaces it, and one-value commands (`autopart`, `clearpart`, `ignoredisk`, `bootloader`) replace
the kickstart's. The whole layout is then checked as a whole kickstart's is (members, levels, sizes, `/`).
Problems are located at `PATH:LINE` of the included file; the spec elements from it carry the kickstart line of
their `%include`.
"""
from __future__ import annotations

import dataclasses

from metalstream.contracts.deployspec import DeferredInclude, DeploySpec, IgnoreDisk

from . import deploy_split, storage_split
from .adapter import parse
from .diagnostics import Findings
from .storage_checks import check_storage
from .storage_layout import Layout
from .support import check_support

STORAGE_COMMANDS = ("part", "partition", "raid", "volgroup", "logvol", "btrfs", "autopart", "clearpart",
                    "ignoredisk", "zerombr", "reqpart", "bootloader")
_BASE = "kickstart"  # where the deploy spec's own lines are


def merge_includes(spec: DeploySpec, included: list[tuple[DeferredInclude, str]]) -> DeploySpec:
    """`spec` with the storage commands of each included text merged in; KickstartError (a BadInput located at
    `PATH:LINE`) listing every problem."""
    from . import KickstartError

    findings = Findings(included[0][0].path if included else _BASE)
    text, kickstart_line = _join(included, findings)
    parsed = parse(text, findings)
    check_support(parsed, findings)
    _refuse_other_commands(parsed, findings)
    original = lambda line: kickstart_line[line - 1] if line else None  # noqa: E731
    fragment = _split(parsed, findings, original)
    merged, layout = _merge(spec, fragment, findings)
    check_storage(layout, findings)
    _check_root(merged, layout, findings)
    problems = [d for d in findings.sorted() if d.severity == "error"]
    if problems:
        raise KickstartError(problems)
    return merged


def _join(included: list[tuple[DeferredInclude, str]], findings: Findings) -> tuple[str, list[int | None]]:
    """The included texts one after the other, each line's origin (PATH, LINE), and its `%include`'s line."""
    lines, kickstart_line = [], []
    for include, text in included:
        for number, line in enumerate(text.splitlines(), start=1):
            findings.origins.append((include.path, number))
            kickstart_line.append(include.line)
            if line.split(maxsplit=1)[:1] in (["%include"], ["%ksappend"]):
                findings.error(len(findings.origins), f"{line.split()[0]} in a deferred include is not supported")
                line = ""
            lines.append(line + "\n")
    return "".join(lines), kickstart_line


def _refuse_other_commands(parsed, findings: Findings) -> None:
    for name, line, _args in parsed.commands:
        if name not in STORAGE_COMMANDS and line not in parsed.refused:
            findings.error(line, f"`{name}`: a deferred %include may hold storage commands only "
                                 f"({', '.join(STORAGE_COMMANDS)}): the rest of the kickstart was read at build time")
    for section in parsed.sections:
        findings.error(section.line, f"{section.name}: a deferred %include may hold storage commands only")


@dataclasses.dataclass
class _Fragment:
    layout: Layout
    seen: set[str]
    spec: DeploySpec


def _split(parsed, findings: Findings, original) -> _Fragment:
    """The included storage lines as (position, element) pairs, and the one-value commands it gives."""
    h = parsed.handler
    seen = {name for name, _line, _args in parsed.commands}
    spec = DeploySpec()
    layout = Layout()
    if h.ignoredisk.seen:
        spec.ignoredisk = IgnoreDisk(only_use=list(h.ignoredisk.onlyuse), ignore=list(h.ignoredisk.ignoredisk),
                                     line=original(parsed.line_of("ignoredisk")))
    if h.clearpart.seen:
        spec.clearpart = deploy_split._clearpart(parsed, findings, original)
    spec.zerombr = bool(h.zerombr.zerombr)
    spec.reqpart = bool(h.reqpart.reqpart)
    spec.reqpart_add_boot = bool(h.reqpart.reqpart and h.reqpart.addBoot)
    if h.autopart.autopart:
        spec.autopart = deploy_split._autopart(parsed, findings, original)
        layout.autopart = (parsed.line_of("autopart"), spec.autopart)
    if h.bootloader.seen:
        spec.bootloader = deploy_split._bootloader(parsed, findings, original)
    layout.parts = deploy_split._partitions(parsed, findings, original)
    layout.volgroups = storage_split.volgroups(parsed, findings, original)
    layout.logvols = storage_split.logvols(parsed, findings, original)
    layout.raids = storage_split.raids(parsed, findings, original)
    layout.btrfs = storage_split.btrfs(parsed, findings, original)
    return _Fragment(layout, seen, spec)


def _merge(base: DeploySpec, fragment: _Fragment, findings: Findings) -> tuple[DeploySpec, Layout]:
    """The merged spec, and its layout for the checks: the kickstart's own elements are given positions after
    the included lines, located at `kickstart:LINE`."""
    def placed(element) -> int:
        findings.origins.append((_BASE, element.line))
        return len(findings.origins)

    got, seen = fragment.layout, fragment.seen
    replaced = {p.mountpoint for _line, p in got.parts if p.mountpoint != "swap"}
    for line, part in got.parts:
        if part.mountpoint in replaced and any(p.mountpoint == part.mountpoint for p in base.partitions):
            findings.warn(line, f"part {part.mountpoint}: replaces the kickstart's")
    layout = Layout(
        parts=[(placed(p), p) for p in base.partitions if p.mountpoint not in replaced] + got.parts,
        volgroups=[(placed(g), g) for g in base.volgroups] + got.volgroups,
        logvols=[(placed(v), v) for v in base.logvols] + got.logvols,
        raids=[(placed(r), r) for r in base.raids] + got.raids,
        btrfs=[(placed(b), b) for b in base.btrfs] + got.btrfs,
        reqpart_boot=base.reqpart_add_boot or fragment.spec.reqpart_add_boot,
    )
    one = fragment.spec
    merged = dataclasses.replace(
        base,
        partitions=[p for _line, p in layout.parts], volgroups=[g for _line, g in layout.volgroups],
        logvols=[v for _line, v in layout.logvols], raids=[r for _line, r in layout.raids],
        btrfs=[b for _line, b in layout.btrfs],
        autopart=one.autopart if "autopart" in seen else base.autopart,
        clearpart=one.clearpart if "clearpart" in seen else base.clearpart,
        ignoredisk=one.ignoredisk if "ignoredisk" in seen else base.ignoredisk,
        bootloader=one.bootloader if "bootloader" in seen else base.bootloader,
        zerombr=base.zerombr or one.zerombr, reqpart=base.reqpart or one.reqpart,
        reqpart_add_boot=base.reqpart_add_boot or one.reqpart_add_boot, deferred_includes=[])
    layout.ignoredisk = merged.ignoredisk
    if merged.autopart is not None:
        layout.autopart = got.autopart if "autopart" in seen else (placed(merged.autopart), merged.autopart)
    return merged, layout


def _check_root(spec: DeploySpec, layout: Layout, findings: Findings) -> None:
    if findings.errors:
        return  # `/` may be on a line already refused: one message per problem
    placed = [*spec.partitions, *spec.logvols, *spec.raids, *spec.btrfs]
    first = min((line for line, _ in [*layout.parts, *layout.logvols, *layout.raids, *layout.btrfs,
                                      *layout.volgroups]), default=1)
    if spec.autopart is not None:
        if placed:
            findings.error(layout.autopart[0], "autopart cannot be combined with part, raid, volgroup, logvol or "
                                               "btrfs lines: use one or the other")
        return
    if not any(p.mountpoint == "/" for p in placed):
        findings.error(first, "the layout has no `/` (neither the kickstart nor its deferred %include gives one)")
