"""The kickstart front end: validate a kickstart and split it into a build spec and a deploy spec.

    split = parse_kickstart("kickstarts/debian-minimal.ks")
    split = parse_kickstart("web.ks.j2", variables={"hostname": "node-1"})      # a template
    split = parse_kickstart("spin.ks", family="rpm", release="40")             # no add-on needed
    split.build      # tarball_builder.spec.BuildSpec: repos, %packages, settings, %post
    split.deploy     # metalstream.contracts.deployspec.DeploySpec: disk layout, bootloader, network, per-host keys,
                     # Secure Boot
    problems = lint_kickstart("x.ks")   # list[Diagnostic], never raises for kickstart problems

Steps: read each file (rendering only templates: *.j2, or every file with template=True) and expand
%include (source), parse with pykickstart at a pinned syntax version (adapter), warn about what the
pipeline does not support (support), find the distribution (command line > addon > the URLs), read
the deploy settings (deploy_addon), split (build_split, deploy_split with storage_split and storage_checks),
and warn when Secure Boot is asked for without the signed packages or a storage stack without its tools
(stack_tools). Every problem is located; a missing %include does not stop
the analysis of the rest.
"""
from __future__ import annotations

import importlib
import sys
import types


def _defer_pykickstart_url_loading() -> None:
    """pykickstart imports `requests` (via pykickstart.load) at import time, a third of `ks lint`'s start-up,
    only to fetch kickstarts by URL, which metalstream never asks it to (it reads and expands files itself).
    Stand in for pykickstart.load with a module whose load_to_str imports the real one on first use."""
    if "pykickstart.load" in sys.modules:
        return
    stand_in = types.ModuleType("pykickstart.load")

    def load_to_str(location):
        del sys.modules["pykickstart.load"]
        return importlib.import_module("pykickstart.load").load_to_str(location)

    stand_in.load_to_str = load_to_str
    sys.modules["pykickstart.load"] = stand_in


_defer_pykickstart_url_loading()

from dataclasses import replace  # noqa: E402
from pathlib import Path  # noqa: E402

from metalstream.contracts.deployspec import DeploySpec  # noqa: E402
from metalstream.errors import BadInput  # noqa: E402

from ..spec import Diagnostic, Distribution, SplitKickstart  # noqa: E402
from .adapter import SYNTAX_NAME, SYNTAX_VERSION, parse  # noqa: E402
from .addon import ADDON_NAME, check_command_line, read_distribution  # noqa: E402
from .build_split import split_build, ssh_keys  # noqa: E402
from .deploy_addon import check_signed_packages, read_deploy_settings  # noqa: E402
from .deploy_split import split_deploy  # noqa: E402
from .diagnostics import Findings  # noqa: E402
from .source import expand  # noqa: E402
from .stack_tools import check_stack_tools, stack_lines  # noqa: E402
from .support import check_support  # noqa: E402

__all__ = ["KickstartError", "parse_kickstart", "parse_deploy_kickstart", "lint_kickstart", "analyse_kickstart",
           "as_strict", "SYNTAX_VERSION", "SYNTAX_NAME", "ADDON_NAME"]


class KickstartError(BadInput):
    """The kickstart is invalid; `.diagnostics` lists every problem found, each located at FILE:LINE."""

    def __init__(self, diagnostics: list[Diagnostic]):
        first = diagnostics[0]
        more = f" (and {len(diagnostics) - 1} more problem(s))" if len(diagnostics) > 1 else ""
        super().__init__(first.message + more, location=f"{first.file}:{first.line}" if first.line else first.file)
        self.diagnostics = diagnostics


def parse_kickstart(path: str | Path, *, variables: dict | None = None, strict: bool = False, template: bool = False,
                    family: str | None = None, release: str | None = None) -> SplitKickstart:
    """Validate and split the kickstart at `path`; raise KickstartError listing every problem if it is invalid
    (or, with strict=True, if it has warnings). `family`/`release` name the distribution (they win over the
    add-on); `template=True` renders every file as a Jinja2 template, not only *.j2 ones."""
    split, diagnostics = analyse_kickstart(path, variables=variables, template=template, family=family,
                                           release=release)
    problems = [d for d in diagnostics if d.severity == "error" or strict and d.severity == "warning"]
    if problems or split is None:
        raise KickstartError([as_strict(d) for d in problems] or diagnostics)
    return split


def parse_deploy_kickstart(path: str | Path, *, variables: dict | None = None, strict: bool = False,
                           template: bool = False, defer_includes: bool = False) -> DeploySpec:
    """The deploy spec of a deploy-time kickstart (layout, bootloader, network, keys) at `path`.

    Such a kickstart needs no %addon and no %packages; build commands in it are validated but unused.
    `defer_includes`: every `%include` is left for the machine to read at deploy time (none is opened here).
    Raises KickstartError listing every problem (and, with strict=True, every warning).
    """
    findings = Findings(str(path))
    source = expand(str(path), variables, findings, template, defer_includes=defer_includes)
    deploy = None
    if source is not None:
        parsed = _parse(source, findings)
        check_support(parsed, findings)
        deploy = split_deploy(parsed, findings, read_deploy_settings(parsed, findings), source.deferred)
        deploy.ssh_keys = ssh_keys(parsed, findings)
    diagnostics = findings.sorted()
    problems = [d for d in diagnostics if d.severity == "error" or strict and d.severity == "warning"]
    if problems or deploy is None:
        raise KickstartError([as_strict(d) for d in problems] or diagnostics)
    return deploy


def lint_kickstart(path: str | Path, *, strict: bool = False, variables: dict | None = None, template: bool = False,
                   family: str | None = None, release: str | None = None) -> list[Diagnostic]:
    """Every error and warning in the kickstart at `path` (with strict=True, warnings count as errors)."""
    _split, diagnostics = analyse_kickstart(path, variables=variables, template=template, family=family,
                                            release=release)
    return [as_strict(d) for d in diagnostics] if strict else diagnostics


def analyse_kickstart(path: str | Path, *, variables: dict | None = None, template: bool = False,
                      family: str | None = None, release: str | None = None
                      ) -> tuple[SplitKickstart | None, list[Diagnostic]]:
    """(the split, or None when there is an error; every diagnostic in reading order), in one pass."""
    check_command_line(family, release)
    path = str(path)
    findings = Findings(path)
    source = expand(path, variables, findings, template)
    if source is None:
        return None, findings.sorted()
    parsed = _parse(source, findings)
    check_support(parsed, findings)
    distribution = read_distribution(parsed, findings, family, release)
    # Without a usable distribution the split still runs (family "" skips family rules) to find every problem.
    build = split_build(parsed, source.text.splitlines(), distribution or Distribution("", ""), findings)
    settings = read_deploy_settings(parsed, findings)
    deploy = split_deploy(parsed, findings, settings, source.deferred)
    deploy.ssh_keys = [replace(key) for key in build.ssh_keys]
    check_signed_packages(settings, distribution or Distribution("", ""), build.packages, findings)
    check_stack_tools(stack_lines(parsed), distribution or Distribution("", ""), build.packages, findings)
    diagnostics = findings.sorted()
    if findings.errors or distribution is None:
        return None, diagnostics
    warnings = [d for d in diagnostics if d.severity == "warning"]
    return SplitKickstart(build=build, deploy=deploy, warnings=warnings, source=path, sha256=source.sha256,
                          deferred_includes=[d.to_dict() for d in source.deferred]), diagnostics


def _parse(source, findings: Findings):
    """pykickstart's view of the expanded text; deferred %includes are warned about at their lines."""
    findings.origins = source.origins
    for deferred in source.deferred:
        findings.warn(deferred.position, deferred.message)
    parsed = parse(source.text, findings)
    if source.incomplete:
        parsed.complete = False  # an included file is missing: no "X is missing" errors about its text
    return parsed


def as_strict(diagnostic: Diagnostic) -> Diagnostic:
    """The diagnostic as --strict reports it: every warning is an error (notes stay notes)."""
    if diagnostic.severity != "warning":
        return diagnostic
    return replace(diagnostic, severity="error", message=f"{diagnostic.message} (--strict)")
