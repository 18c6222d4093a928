"""`%addon org_metalstream_image`: which distribution family and release a kickstart builds.

    %addon org_metalstream_image
    family=debian          # debian (mmdebstrap + apt) | rpm (dnf --installroot)
    release=bookworm       # Debian suite, or the RPM releasever ("40")
    variant=minbase        # Debian only: mmdebstrap --variant
    components=main        # Debian only: archive components, comma separated
    arch=x86_64
    %end

`%addon org_metalstream_deploy` (deploy settings no anaconda command says) is read by deploy_addon.
Other `%addon` sections (e.g. com_redhat_kdump) configure anaconda add-ons: warned and ignored.
"""
from __future__ import annotations

import re

from ..spec import Distribution
from .adapter import Parsed
from .diagnostics import Findings

ADDON_NAME = "org_metalstream_image"
DEPLOY_ADDON_NAME = "org_metalstream_deploy"
FAMILIES = ("debian", "rpm")
DEBIAN_VARIANTS = ("extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important",
                   "debootstrap", "standard")
ARCHES = {"x86_64": "x86_64", "amd64": "x86_64"}
KEYS = ("family", "release", "variant", "components", "arch")
_RELEASE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
_COMPONENT = re.compile(r"[a-z0-9][a-z0-9-]*(/[a-z0-9-]+)?")


def read_distribution(parsed: Parsed, findings: Findings) -> Distribution | None:
    """The Distribution named by the metalstream addon; problems go to `findings` (None if unusable)."""
    for section in parsed.sections:
        name = section.args[0] if section.name == "%addon" and section.args else ""
        if section.name == "%addon" and name not in (ADDON_NAME, DEPLOY_ADDON_NAME):
            findings.warn(section.line, f"%addon {name or '(unnamed)'}: anaconda add-ons are not supported: ignored")
    section = our_section(parsed, ADDON_NAME, findings)
    if section is None:
        if parsed.complete and not sections_named(parsed, ADDON_NAME):
            findings.error_at_end(f"no `%addon {ADDON_NAME}` section: a kickstart must name its distribution "
                                               "family and release (see kickstarts/README.md)")
        return None
    return _distribution(key_values(section, KEYS, findings), section.line, findings)


def sections_named(parsed: Parsed, name: str) -> list:
    return [s for s in parsed.sections if s.name == "%addon" and s.args[:1] == [name]]


def our_section(parsed: Parsed, name: str, findings: Findings):
    """The one `%addon NAME` section (None if there is none, or an error if it is given twice)."""
    ours = sections_named(parsed, name)
    if len(ours) > 1:
        findings.error(ours[1].line, f"%addon {name} given twice (first at line {findings.locate(ours[0].line)[1]})")
        return None
    if not ours:
        return None
    if len(ours[0].args) > 1:
        findings.error(ours[0].line, f"%addon {name} takes no options (got {' '.join(ours[0].args[1:])})")
    return ours[0]


def key_values(section, keys: tuple[str, ...], findings: Findings) -> dict[str, tuple[str, int]]:
    """KEY=VALUE lines of an add-on section (`#` starts a comment): key → (value, line)."""
    name = section.args[0]
    values: dict[str, tuple[str, int]] = {}
    for line, text in section.body:
        stripped = text.strip()
        if not stripped or stripped.startswith("#"):
            continue
        key, sep, value = stripped.partition("=")
        key, value = key.strip(), value.split("#", 1)[0].strip()
        if not sep:
            findings.error(line, f"%addon {name}: expected KEY=VALUE, got {stripped!r}")
        elif key not in keys:
            findings.error(line, f"%addon {name}: unknown key {key!r} (known: {', '.join(keys)})")
        elif key in values:
            findings.error(line, f"%addon {name}: {key} given twice")
        else:
            values[key] = (value, line)
    return values


def _distribution(values: dict[str, tuple[str, int]], header: int, findings: Findings) -> Distribution | None:
    ok = True
    family, family_line = values.get("family", ("", header))
    if family not in FAMILIES:
        what = f"unknown family {family!r}" if family else "family is missing"
        findings.error(family_line, f"%addon {ADDON_NAME}: {what} (one of: {', '.join(FAMILIES)})")
        ok = False
    release, release_line = values.get("release", ("", header))
    if not _RELEASE.fullmatch(release):
        what = f"bad release {release!r}" if release else "release is missing"
        findings.error(release_line, f"%addon {ADDON_NAME}: {what} (a Debian suite like bookworm, or an RPM releasever like 40)")
        ok = False
    variant, variant_line = values.get("variant", (None, header))
    if variant is not None and family == "rpm":
        findings.error(variant_line, f"%addon {ADDON_NAME}: variant applies to family=debian only")
        ok = False
    elif variant is not None and variant not in DEBIAN_VARIANTS:
        findings.error(variant_line, f"%addon {ADDON_NAME}: unknown variant {variant!r} (one of: {', '.join(DEBIAN_VARIANTS)})")
        ok = False
    components_text, components_line = values.get("components", ("", header))
    components = [c for c in re.split(r"[,\s]+", components_text) if c]
    if components and family == "rpm":
        findings.error(components_line, f"%addon {ADDON_NAME}: components applies to family=debian only")
        ok = False
    for component in components:
        if not _COMPONENT.fullmatch(component):
            findings.error(components_line, f"%addon {ADDON_NAME}: bad component {component!r}")
            ok = False
    arch, arch_line = values.get("arch", ("x86_64", header))
    if arch not in ARCHES:
        findings.error(arch_line, f"%addon {ADDON_NAME}: arch {arch!r} is not supported (x86_64 only)")
        ok = False
    if not ok:
        return None
    if family == "debian" and not components:
        components = ["main"]
    return Distribution(family=family, release=release, variant=variant, components=components,
                        arch=ARCHES[arch], line=header)
