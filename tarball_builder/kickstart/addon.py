"""`%addon org_metalstream_image`: which distribution family and release a kickstart builds.

    %addon org_metalstream_image
    family=debian          # debian (mmdebstrap + apt) | rpm (dnf --installroot)
    release=bookworm       # Debian suite, or the RPM releasever ("40")
    variant=minbase        # Debian only: mmdebstrap --variant
    components=main        # Debian only: archive components, comma separated
    arch=x86_64
    %end

`%addon org_metalstream_deploy` (deploy settings no anaconda command says) is read by deploy_addon.
Other `%addon` sections configure anaconda add-ons: ignored with a warning; `com_redhat_kdump --enable`
is an error (kdump is not set up here).

Where the distribution comes from, first that says: the command line (`--family`, `--release`), the
add-on, what the `url`/`repo` lines say (infer_distribution). A command-line value that differs from
the add-on's is a warning naming both. Nothing at all is an error naming the flags.
"""
from __future__ import annotations

import re

from metalstream.errors import BadInput

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


def check_command_line(family: str | None, release: str | None) -> None:
    """Refuse a bad `--family`/`--release` before any kickstart is read."""
    if family is not None and family not in FAMILIES:
        raise BadInput(f"unknown family {family!r} (one of: {', '.join(FAMILIES)})", location="--family")
    if release is not None and not _RELEASE.fullmatch(release):
        raise BadInput(f"bad release {release!r} (a Debian suite like bookworm, or an RPM releasever like 40)",
                       location="--release")


def read_distribution(parsed: Parsed, findings: Findings, family: str | None = None,
                      release: str | None = None) -> Distribution | None:
    """The Distribution to build: `family`/`release` from the command line win over the metalstream add-on,
    which wins over what the repository URLs say. Problems go to `findings` (None if unusable)."""
    for section in parsed.sections:
        name = section.args[0] if section.name == "%addon" and section.args else ""
        if section.name == "%addon" and name not in (ADDON_NAME, DEPLOY_ADDON_NAME):
            _anaconda_addon(section, name, findings)
    section = our_section(parsed, ADDON_NAME, findings)
    if section is not None:
        values = key_values(section, KEYS, findings)
        for key, given in (("family", family), ("release", release)):
            if given is None:
                continue
            written, line = values.get(key, (None, section.line))
            if written is not None and written != given:
                findings.warn(line, f"--{key} {given} (command line) overrides {key}={written} "
                                    f"(%addon {ADDON_NAME}): building {key} {given}")
            values[key] = (given, line)
        return _distribution(values, section.line, findings)
    if sections_named(parsed, ADDON_NAME):
        return None  # given twice: reported
    return _from_command_line_or_urls(parsed, findings, family, release)


KDUMP_ADDON = "com_redhat_kdump"


def _anaconda_addon(section, name: str, findings: Findings) -> None:
    """An anaconda add-on is ignored (listed as such), except kdump asked to be on: the image would lack it."""
    shown = f"%addon {name or '(unnamed)'}"
    if name != KDUMP_ADDON:
        findings.ignore(section.line, shown, "anaconda add-ons are not supported: ignored")
    elif "--enable" in section.args[1:]:
        findings.error(section.line, f"{shown} --enable: kdump is not set up by metalstream: list kexec-tools in "
                                     "%packages, reserve its memory with `bootloader --append=\"crashkernel=...\"` "
                                     "and start it with `services --enabled=kdump`, or say --disable")
    else:
        findings.ignore(section.line, shown, "kdump stays off, as --disable asks: ignored")


def _from_command_line_or_urls(parsed: Parsed, findings: Findings, family: str | None,
                               release: str | None) -> Distribution | None:
    inferred_family, inferred_release, why_no_release = infer_distribution(parsed)
    if family is None:
        family = inferred_family
    if release is None and family == inferred_family:
        release = inferred_release
    if family and release:
        return Distribution(family=family, release=release, components=["main"] if family == "debian" else [])
    if not parsed.complete:
        return None  # text is missing (a missing %include, a fatal parse error): the reason is reported
    if not family and not release:
        findings.error_at_end(f"the distribution is not known: give --family (debian|rpm) and --release on the "
                              f"command line, or an `%addon {ADDON_NAME}` section (see kickstarts/README.md)")
    elif not release:
        why = f" ({why_no_release})" if why_no_release and family == inferred_family else ""
        findings.error_at_end(f"the release is not known{why}: give --release (a Debian suite like bookworm, "
                              f"or an RPM releasever like 40) or `release=` in `%addon {ADDON_NAME}`")
    else:
        findings.error_at_end(f"the distribution family is not known: give --family (debian|rpm) or `family=` "
                              f"in `%addon {ADDON_NAME}`")
    return None


_RELEASES_PATH = re.compile(r"/releases/(\d+)(?:/|$)")
_DEBIAN_ARCHIVE = re.compile(r"^[a-z]+://[^?#]*/debian/?$")


def infer_distribution(parsed: Parsed) -> tuple[str | None, str | None, str | None]:
    """(family, release, why the release is not known) from the `url`/`repo` lines, each None unless unambiguous.

    Conservative on purpose: `$releasever`, a mirrorlist or a metalink → rpm; a `/releases/N/` path
    component → rpm, release N; a URL ending in `/debian` (an archive root) → debian (a Debian URL
    names no suite: the release must be given). Anything else says nothing; disagreeing URLs say nothing.
    """
    h = parsed.handler
    urls: list[tuple[str, str]] = []  # (kind, url)
    if h.url.seen:
        urls += [("url", h.url.url or ""), ("mirrorlist", h.url.mirrorlist or ""), ("metalink", h.url.metalink or "")]
    for data in h.repo.repoList:
        urls += [("url", data.baseurl or ""), ("mirrorlist", data.mirrorlist or ""), ("metalink", data.metalink or "")]
    families, releases, releasever = set(), set(), False
    for kind, url in urls:
        if not url:
            continue
        if "$releasever" in url or "${releasever}" in url:
            families.add("rpm")
            releasever = True
        if kind != "url":
            families.add("rpm")
        match = _RELEASES_PATH.search(url)
        if match:
            families.add("rpm")
            releases.add(match.group(1))
        if _DEBIAN_ARCHIVE.match(url):
            families.add("debian")
    family = families.pop() if len(families) == 1 else None
    release = releases.pop() if len(releases) == 1 and family == "rpm" else None
    why = None
    if len(releases) > 1:
        why = f"the repository URLs name different releases: {', '.join(sorted(releases))}"
    elif releasever and not releases:
        why = "the repository URL uses $releasever"
    return family, release, why


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
                        arch=ARCHES[arch], line=findings.locate(header)[1])
