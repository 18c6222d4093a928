"""The kickstart front end: validate a kickstart and split it into a build spec and a deploy spec.

    split = parse_kickstart("kickstarts/debian-minimal.ks", variables={"hostname": "node-1"})
    split.build      # tarball_builder.spec.BuildSpec: repos, %packages, settings, %post
    split.deploy     # metalstream.contracts.deployspec.DeploySpec: disk layout, bootloader, network, per-host keys,
                     # Secure Boot
    problems = lint_kickstart("x.ks")   # list[Diagnostic], never raises for kickstart problems

Steps: render each file as a Jinja2 template and expand %include (source), parse with pykickstart
at a pinned syntax version (adapter), warn about what the pipeline does not support (support),
read the distribution (addon) and the deploy settings (deploy_addon), split (build_split,
deploy_split), and warn when Secure Boot is asked for without the signed packages. Every problem is located.
"""
from __future__ import annotations

from dataclasses import replace
from pathlib import Path

from metalstream.contracts.deployspec import DeploySpec
from metalstream.errors import BadInput

from ..spec import Diagnostic, Distribution, SplitKickstart
from .adapter import SYNTAX_NAME, SYNTAX_VERSION, parse
from .addon import ADDON_NAME, read_distribution
from .build_split import split_build, ssh_keys
from .deploy_addon import check_signed_packages, read_deploy_settings
from .deploy_split import split_deploy
from .diagnostics import Findings
from .source import expand
from .support import check_support

__all__ = ["KickstartError", "parse_kickstart", "parse_deploy_kickstart", "lint_kickstart", "SYNTAX_VERSION",
           "SYNTAX_NAME", "ADDON_NAME"]


class KickstartError(BadInput):
    """The kickstart is invalid; `.diagnostics` lists every problem found, each located at FILE:LINE."""

    def __init__(self, diagnostics: list[Diagnostic]):
        first = diagnostics[0]
        more = f" (and {len(diagnostics) - 1} more problem(s))" if len(diagnostics) > 1 else ""
        super().__init__(first.message + more, location=f"{first.file}:{first.line}" if first.line else first.file)
        self.diagnostics = diagnostics


def parse_kickstart(path: str | Path, *, variables: dict | None = None, strict: bool = False) -> SplitKickstart:
    """Validate and split the kickstart at `path`; raise KickstartError listing every problem if it is invalid
    (or, with strict=True, if it has warnings)."""
    split, diagnostics = _analyse(str(path), variables)
    problems = [d for d in diagnostics if d.severity == "error" or strict]
    if problems or split is None:
        raise KickstartError([_as_error(d) for d in problems] or diagnostics)
    return split


def parse_deploy_kickstart(path: str | Path, *, variables: dict | None = None, strict: bool = False) -> DeploySpec:
    """The deploy spec of a deploy-time kickstart (layout, bootloader, network, keys) at `path`.

    Such a kickstart needs no %addon and no %packages; build commands in it are validated but unused.
    Raises KickstartError listing every problem (and, with strict=True, every warning).
    """
    findings = Findings(str(path))
    source = expand(str(path), variables, findings)
    deploy = None
    if source is not None:
        findings.origins = source.origins
        parsed = parse(source.text, findings)
        check_support(parsed, findings)
        deploy = split_deploy(parsed, findings, read_deploy_settings(parsed, findings))
        deploy.ssh_keys = ssh_keys(parsed, findings)
    diagnostics = findings.sorted()
    problems = [d for d in diagnostics if d.severity == "error" or strict]
    if problems or deploy is None:
        raise KickstartError([_as_error(d) for d in problems] or diagnostics)
    return deploy


def lint_kickstart(path: str | Path, *, strict: bool = False, variables: dict | None = None) -> list[Diagnostic]:
    """Every error and warning in the kickstart at `path` (with strict=True, warnings count as errors)."""
    _split, diagnostics = _analyse(str(path), variables)
    return [_as_error(d) for d in diagnostics] if strict else diagnostics


def _as_error(diagnostic: Diagnostic) -> Diagnostic:
    if diagnostic.severity == "error":
        return diagnostic
    return replace(diagnostic, severity="error", message=f"{diagnostic.message} (--strict)")


def _analyse(path: str, variables: dict | None) -> tuple[SplitKickstart | None, list[Diagnostic]]:
    findings = Findings(path)
    source = expand(path, variables, findings)
    if source is None:
        return None, findings.sorted()
    findings.origins = source.origins
    parsed = parse(source.text, findings)
    check_support(parsed, findings)
    distribution = read_distribution(parsed, findings)
    # Without a usable distribution the split still runs (family "" skips family rules) to find every problem.
    build = split_build(parsed, source.text.splitlines(), distribution or Distribution("", ""), findings)
    settings = read_deploy_settings(parsed, findings)
    deploy = split_deploy(parsed, findings, settings)
    deploy.ssh_keys = [replace(key) for key in build.ssh_keys]
    check_signed_packages(settings, distribution or Distribution("", ""), build.packages, findings)
    diagnostics = findings.sorted()
    if findings.errors or distribution is None:
        return None, diagnostics
    warnings = [d for d in diagnostics if d.severity == "warning"]
    return SplitKickstart(build=build, deploy=deploy, warnings=warnings, source=path, sha256=source.sha256), diagnostics
