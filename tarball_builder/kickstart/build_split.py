"""Build half of the split: what a kickstart bakes into the image (repos, %packages, system settings, %post)."""
from __future__ import annotations

import re
import zoneinfo

from metalstream.contracts import rules
from metalstream.contracts.deployspec import SshKey

from ..spec import BuildSpec, Distribution, Firewall, Group, Packages, Repo, RootPassword, Script, Timezone, User
from .adapter import GROUP_DEFAULT, PACKAGES_IGNORE_BROKEN, PACKAGES_IGNORE_MISSING, SCRIPT_POST, SELINUX_MODES, Parsed
from .diagnostics import Findings

URL_SCHEMES = ("http://", "https://", "ftp://", "file://")
_LANG = re.compile(r"(C|POSIX|C\.UTF-8|C\.utf8|[a-z]{2,3}(_[A-Z]{2})?(\.[A-Za-z0-9-]+)?(@[A-Za-z0-9]+)?)")
_DEBIAN_PACKAGE = re.compile(r"[a-z0-9][a-z0-9+.-]+(:[a-z0-9-]+)?([=/][A-Za-z0-9.+~:_-]+)?")


def split_build(parsed: Parsed, text_lines: list[str], distribution: Distribution, findings: Findings) -> BuildSpec:
    h = parsed.handler
    original = _original_line(findings)
    spec = BuildSpec(distribution=distribution)
    spec.repos = _repos(parsed, distribution, findings, original)
    spec.packages = _packages(parsed, text_lines, distribution, findings, original)
    if h.lang.seen:
        line = parsed.line_of("lang")
        if not _LANG.fullmatch(h.lang.lang):
            findings.error(line, f"lang: {h.lang.lang!r} is not a locale name like en_US.UTF-8")
        spec.lang = h.lang.lang
    if h.keyboard.seen:
        spec.keyboard, spec.keyboard_layouts, spec.keyboard_switch = _keyboard(h.keyboard)
    if h.timezone.seen:
        spec.timezone = _timezone(parsed, findings, original)
    if h.selinux.seen and h.selinux.selinux is not None:
        spec.selinux = SELINUX_MODES[h.selinux.selinux]
    if h.services.seen:
        spec.services_enabled, spec.services_disabled = list(h.services.enabled), list(h.services.disabled)
        for name in set(spec.services_enabled) & set(spec.services_disabled):
            findings.error(parsed.line_of("services"), f"services: {name} is both enabled and disabled")
    if h.firewall.seen and not h.firewall.use_system_defaults:  # --use-system-defaults: leave it as packaged
        fw = h.firewall
        spec.firewall = Firewall(enabled=fw.enabled is not False, services=list(fw.services), ports=list(fw.ports),
                                 trusts=list(fw.trusts), remove_services=list(fw.remove_services or []),
                                 line=original(parsed.line_of("firewall")))
    if h.rootpw.seen:
        spec.rootpw = _rootpw(parsed, findings, original)
    users = last_definitions(h.user.userList, lambda u: u.name, "user", findings)
    spec.users = [User(name=u.name, groups=list(u.groups), password=u.password or None, is_crypted=u.isCrypted,
                       lock=u.lock, homedir=u.homedir or None, shell=u.shell or None, uid=u.uid, gid=u.gid,
                       gecos=u.gecos or None, line=original(u.lineno)) for u in users]
    for user in users:
        if user.password and not user.isCrypted:
            findings.warn(user.lineno, f"user {user.name}: plain-text password in the kickstart (use --iscrypted)")
    groups = last_definitions(h.group.groupList, lambda g: g.name, "group", findings)
    spec.groups = [Group(name=g.name, gid=g.gid, line=original(g.lineno)) for g in groups]
    spec.ssh_keys = ssh_keys(parsed, findings)
    spec.post = _post_scripts(parsed, findings, original)
    return spec


def last_definitions(items: list, key, what: str, findings: Findings) -> list:
    """Anaconda semantics: a later definition of the same name overrides the earlier one (also across
    %include); each override is a warning at the later line naming the earlier place."""
    kept: dict = {}
    for item in items:
        name = key(item)
        if name in kept:
            findings.warn(item.lineno, f"{what} {name}: overrides the definition at {findings.place(kept[name].lineno)}")
            del kept[name]
        kept[name] = item
    return list(kept.values())


def _keyboard(kb) -> tuple[str | None, list[str], list[str]]:
    """(console keymap, X layouts, switch options). Without --vckeymap the console keymap is the first X layout
    (its variant in parentheses dropped), as anaconda derives it."""
    layouts = [layout.strip() for layout in kb.x_layouts or [] if layout.strip()]
    keymap = kb.vc_keymap or kb.keyboard or (layouts[0].split("(", 1)[0].strip() if layouts else None)
    return keymap or None, layouts, [o for o in kb.switch_options or [] if o]


def ssh_keys(parsed: Parsed, findings: Findings) -> list[SshKey]:
    """`sshkey --username=U "KEY"` lines (validated once, shared by both halves of the split)."""
    keys = []
    original = _original_line(findings)
    for data in parsed.handler.sshkey.sshUserList:
        findings.check(data.lineno, rules.ssh_public_key, data.key, f"sshkey for {data.username}")
        keys.append(SshKey(user=data.username, key=data.key.strip(), line=original(data.lineno)))
    return keys


def _original_line(findings: Findings):
    return lambda line: findings.locate(line)[1] if line else None


def _check_url(url: str, line: int | None, what: str, findings: Findings) -> None:
    if url and not url.startswith(URL_SCHEMES):
        findings.error(line, f"{what}: {url!r} is not an http://, https://, ftp:// or file:// URL")


def _repos(parsed: Parsed, dist: Distribution, findings: Findings, original) -> list[Repo]:
    h = parsed.handler
    repos, lines = [], []  # lines: of the expanded text, for messages
    if h.url.seen:
        line = parsed.line_of("url")
        for value in (h.url.url, h.url.mirrorlist, h.url.metalink):
            _check_url(value or "", line, "url", findings)
        repos.append(Repo(name="url", baseurl=h.url.url or None, mirrorlist=h.url.mirrorlist or None,
                          metalink=h.url.metalink or None, line=original(line)))
        lines.append(line)
    for data in last_definitions(h.repo.repoList, lambda r: r.name, "repo", findings):
        for value in (data.baseurl, data.mirrorlist, data.metalink):
            _check_url(value or "", data.lineno, f"repo {data.name}", findings)
        if data.name == "url":
            findings.error(data.lineno, "repo url: the name `url` is taken by the `url` line's repository")
        repos.append(Repo(name=data.name, baseurl=data.baseurl or None, mirrorlist=data.mirrorlist or None,
                          metalink=data.metalink or None, cost=data.cost, includepkgs=list(data.includepkgs),
                          excludepkgs=list(data.excludepkgs), install=bool(data.install),
                          line=original(data.lineno)))
        lines.append(data.lineno)
    if dist.family == "debian":
        for repo, line in zip(repos, lines):
            if repo.mirrorlist or repo.metalink or not repo.baseurl:
                findings.error(line, f"{'url' if repo.name == 'url' else 'repo ' + repo.name}: family=debian needs a "
                                     "plain mirror URL (--url/--baseurl); mirrorlists and metalinks are RPM-only")
            rpm_only = [flag for flag, on in (("--cost", repo.cost is not None), ("--includepkgs", repo.includepkgs),
                                              ("--excludepkgs", repo.excludepkgs), ("--install", repo.install)) if on]
            if rpm_only:
                findings.error(line, f"repo {repo.name}: {', '.join(rpm_only)}: not supported for family=debian "
                                     "(apt sources have no such setting)")
    elif dist.family == "rpm" and not repos and parsed.complete:
        findings.error_at_end("family=rpm needs a `url` or `repo` line: dnf has no repositories of its own here")
    return repos


_PACKAGES_IGNORED = (
    ("--ignoremissing", "a package missing from the repositories fails the build"),
    ("--ignorebroken", "a broken dependency fails the build"),
    ("--inst-langs", "every language the packages ship is installed"),
    ("--timeout", "dnf's and apt's own download timeout applies"),
    ("--retries", "dnf's and apt's own download retries apply"),
)
CORE_GROUP = "core"


def _packages(parsed: Parsed, lines: list[str], dist: Distribution, findings: Findings, original) -> Packages:
    sections = [s for s in parsed.sections if s.name == "%packages"]
    if not sections:
        if parsed.complete:
            findings.error_at_end("no %packages section: every image needs one (list at least a kernel)")
        return Packages()
    p = parsed.handler.packages
    header = sections[-1].line  # a later header's options replace an earlier one's
    for earlier, later in zip(sections, sections[1:]):
        dropped = [arg for arg in earlier.args if arg not in later.args]
        if dropped:
            findings.warn(later.line, f"%packages: this header's options replace those of the header at "
                                      f"{findings.place(earlier.line)}: {' '.join(dropped)} no longer apply "
                                      "(repeat them here to keep them)")
    given = (("--ignoremissing", p.handleMissing == PACKAGES_IGNORE_MISSING),
             ("--ignorebroken", p.handleBroken == PACKAGES_IGNORE_BROKEN), ("--inst-langs", p.instLangs is not None),
             ("--timeout", p.timeout is not None), ("--retries", p.retries is not None))
    for (flag, on), (_flag, reason) in zip(given, _PACKAGES_IGNORED):
        if on:
            findings.ignore(header, f"%packages {flag}", f"{reason}: ignored")
    groups = [g.name for g in p.groupList]
    if p.environment:
        groups.insert(0, "^" + p.environment)
    for group in p.groupList:
        if group.include != GROUP_DEFAULT:
            findings.error(_entry_line(lines, sections, "@" + group.name) or header,
                           f"%packages: @{group.name} --nodefaults/--optional: not supported: a group's mandatory and "
                           "default packages are installed")
    if p.default:
        findings.error(header, "%packages --default: not supported: list the groups (@core, ...) and packages the "
                               "image needs")
    for name in p.excludedGroupList:
        findings.error(_entry_line(lines, sections, "-@" + name.name) or header,
                       f"%packages: -@{name.name}: excluding a group is not supported: exclude its packages by name "
                       "(-name)")
    listed = bool(p.packageList or groups or p.default)
    # An empty list means the distribution's minimal set: @core for RPM (as anaconda); for Debian the set
    # mmdebstrap's variant installs. A bootable image gets a kernel when it lists none (_kernel).
    if dist.family == "debian":
        for name in groups:
            shown = "@" + name
            findings.error(_entry_line(lines, sections, shown) or header,
                           f"%packages: {shown}: package groups are RPM (comps) groups; family=debian has none")
        if p.multiLib:
            findings.error(header, "%packages --multilib: family=debian: not supported (name foreign-architecture "
                                   "packages as name:arch)")
        for name in p.packageList + p.excludedList:
            if not _DEBIAN_PACKAGE.fullmatch(name):
                findings.error(_entry_line(lines, sections, name) or header,
                               f"%packages: {name!r} is not a valid Debian package name")
    elif not listed and not p.nocore:
        groups = [CORE_GROUP]  # anaconda: an empty %packages installs the distribution's @core
    elif not listed and parsed.complete:
        findings.error(header, "%packages --nocore lists nothing to install (add at least one package or @group)")
    names = list(p.packageList)
    refused = p.default or dist.family == "rpm" and p.nocore and not listed  # an error above says what to list
    if _bootable(parsed.handler) and not refused:
        names += _kernel(dist.family, names, list(p.excludedList), lines, sections, header, findings)
    return Packages(names=names, groups=groups, excluded_names=list(p.excludedList),
                    excluded_groups=[g.name for g in p.excludedGroupList], nodocs=bool(p.excludeDocs),
                    exclude_weakdeps=bool(p.excludeWeakdeps), default=bool(p.default), multilib=bool(p.multiLib),
                    line=original(header))


# family -> (the kernel package anaconda-style selection adds, the prefix of every name that is a kernel)
KERNELS = {"rpm": ("kernel", "kernel-"), "debian": ("linux-image-amd64", "linux-image-")}


def _bootable(handler) -> bool:
    """An image is booted from its disk unless the kickstart says `bootloader --location=none` (or --disabled)."""
    bootloader = handler.bootloader
    return not (bootloader.seen and (bootloader.disabled or bootloader.location == "none"))


def _kernel(family: str, names: list[str], excluded: list[str], lines: list[str], sections, header: int,
            findings: Findings) -> list[str]:
    """The kernel package to add to a bootable image whose %packages names none, as anaconda selects one itself
    (RPM: `kernel`; Debian: linux-image-amd64); a bootable image that excludes it is an error."""
    if family not in KERNELS:
        return []
    package, prefix = KERNELS[family]
    if any(n == package or n.startswith(prefix) for n in names):
        return []
    if package in excluded:
        findings.error(_entry_line(lines, sections, "-" + package) or header,
                       f"%packages: -{package}: the image is bootable and needs a kernel: list one instead of "
                       "excluding it, or say `bootloader --location=none` for an image that is never booted directly")
        return []
    findings.warn(header, f"no kernel listed: `{package}` is installed, as anaconda does")
    return [package]


def _entry_line(lines: list[str], sections, entry: str) -> int | None:
    """Line (expanded numbering) of a %packages entry, for precise messages."""
    for section in sections:
        for number in range(section.line + 1, len(lines) + 1):
            words = lines[number - 1].split("#", 1)[0].split()
            if words and words[0] == "%end":
                break
            if words and words[0] == entry:
                return number
    return None


def _timezone(parsed: Parsed, findings: Findings, original) -> Timezone:
    tz = parsed.handler.timezone
    line = parsed.line_of("timezone")
    if tz.timezone and zoneinfo.available_timezones():
        try:
            zoneinfo.ZoneInfo(tz.timezone)
        except (zoneinfo.ZoneInfoNotFoundError, ValueError):
            findings.error(line, f"timezone: unknown time zone {tz.timezone!r} (e.g. Etc/UTC, Europe/Berlin)")
    return Timezone(name=tz.timezone or "Etc/UTC", utc=bool(tz.isUtc) or tz.timezone in ("UTC", "Etc/UTC"),
                    ntpservers=list(getattr(tz, "ntpservers", []) or []), line=original(line))


def _rootpw(parsed: Parsed, findings: Findings, original) -> RootPassword:
    pw = parsed.handler.rootpw
    line = parsed.line_of("rootpw")
    password = pw.password or None
    looks_hashed = bool(password and password.startswith(("$", "!", "*")))
    if pw.lock and not (pw.isCrypted and (password or "").startswith("$")):
        password = None  # `rootpw --lock [--iscrypted] locked`: the value is a placeholder; root ends locked
    elif pw.isCrypted and password and not looks_hashed:
        findings.error(line, "rootpw --iscrypted: the password is not a crypt(3) hash like $6$...")
    elif password and not pw.isCrypted:
        findings.warn(line, "rootpw: plain-text password in the kickstart (use --iscrypted with a hash, or --lock)")
    if pw.allow_ssh and (pw.lock or not password):
        findings.warn(line, "rootpw --allow-ssh: root has no usable password, so password logins as root still fail")
    return RootPassword(password=password, is_crypted=bool(pw.isCrypted and password), lock=bool(pw.lock),
                        allow_ssh=bool(pw.allow_ssh), line=original(line))


def _post_scripts(parsed: Parsed, findings: Findings, original) -> list[Script]:
    scripts = []
    for script in parsed.handler.scripts:
        if script.type != SCRIPT_POST:
            continue
        if not script.interp.startswith("/"):
            findings.error(script.lineno, f"%post --interpreter={script.interp}: the interpreter must be an absolute path "
                                          "(e.g. /bin/bash, /usr/bin/python3)")
        scripts.append(Script(body=script.script, interpreter=script.interp, nochroot=not script.inChroot,
                              error_on_fail=bool(script.errorOnFail), log=script.logfile, line=original(script.lineno)))
    return scripts
