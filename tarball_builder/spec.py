"""Build spec: what a kickstart says is baked into the image at build time.

Plain data, filled by the kickstart front end (tarball_builder.kickstart) and read by the build
stages. `line` fields give the kickstart line a value came from, for located error messages.
"""
from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any

from metalstream.contracts.deployspec import DeploySpec, SshKey


@dataclass
class Distribution:
    family: str  # "debian" (mmdebstrap/apt) | "rpm" (dnf --installroot)
    release: str  # Debian suite ("bookworm") or RPM releasever ("40")
    variant: str | None = None  # mmdebstrap --variant (minbase, essential, ...)
    components: list[str] = field(default_factory=list)  # Debian archive components
    arch: str = "x86_64"
    line: int | None = None


@dataclass
class Repo:
    name: str
    baseurl: str | None = None
    mirrorlist: str | None = None
    metalink: str | None = None
    cost: int | None = None
    includepkgs: list[str] = field(default_factory=list)
    excludepkgs: list[str] = field(default_factory=list)
    install: bool = False
    line: int | None = None


@dataclass
class Packages:
    names: list[str] = field(default_factory=list)
    groups: list[str] = field(default_factory=list)
    excluded_names: list[str] = field(default_factory=list)
    excluded_groups: list[str] = field(default_factory=list)
    nodocs: bool = False
    exclude_weakdeps: bool = False
    default: bool = False  # %packages --default (refused at lint: no family has a default set here)
    multilib: bool = False  # %packages --multilib (RPM: dnf's multilib_policy=all)
    line: int | None = None


@dataclass
class Timezone:
    name: str
    utc: bool = True
    ntpservers: list[str] = field(default_factory=list)
    line: int | None = None


@dataclass
class Firewall:
    enabled: bool = True
    services: list[str] = field(default_factory=list)
    ports: list[str] = field(default_factory=list)
    trusts: list[str] = field(default_factory=list)
    remove_services: list[str] = field(default_factory=list)  # firewall --remove-service
    line: int | None = None


@dataclass
class RootPassword:
    password: str | None = None
    is_crypted: bool = False
    lock: bool = False
    allow_ssh: bool = False  # rootpw --allow-ssh: sshd accepts root's password (PermitRootLogin yes)
    line: int | None = None


@dataclass
class User:
    name: str
    groups: list[str] = field(default_factory=list)
    password: str | None = None
    is_crypted: bool = False
    lock: bool = False
    homedir: str | None = None
    shell: str | None = None
    uid: int | None = None
    gid: int | None = None
    gecos: str | None = None
    line: int | None = None


@dataclass
class Group:
    name: str
    gid: int | None = None
    line: int | None = None


@dataclass
class Script:
    """A %post section."""

    body: str
    interpreter: str = "/bin/sh"
    nochroot: bool = False
    error_on_fail: bool = True
    log: str | None = None
    line: int | None = None  # line of the %post header


@dataclass
class BuildSpec:
    distribution: Distribution
    repos: list[Repo] = field(default_factory=list)
    packages: Packages = field(default_factory=Packages)
    lang: str | None = None
    keyboard: str | None = None  # console keymap (keyboard --vckeymap, or the old positional form)
    keyboard_layouts: list[str] = field(default_factory=list)  # X layouts, in order (keyboard --xlayouts)
    keyboard_switch: list[str] = field(default_factory=list)  # XKB layout-switching options (keyboard --switch)
    timezone: Timezone | None = None
    selinux: str | None = None  # enforcing | permissive | disabled | None (leave as packaged)
    services_enabled: list[str] = field(default_factory=list)
    services_disabled: list[str] = field(default_factory=list)
    firewall: Firewall | None = None
    rootpw: RootPassword | None = None
    users: list[User] = field(default_factory=list)
    groups: list[Group] = field(default_factory=list)
    ssh_keys: list[SshKey] = field(default_factory=list)
    post: list[Script] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return asdict(self)


@dataclass
class Diagnostic:
    """One problem found in a kickstart: printed as `FILE:LINE: severity: message`."""

    file: str
    line: int | None
    message: str
    severity: str = "error"  # error | warning | note (what the deploy needs besides the kickstart; --strict keeps it)
    ignored: str | None = None  # on a warning: the command or option it says is ignored ("text", "rootpw --allow-ssh")

    def __str__(self) -> str:
        where = f"{self.file}:{self.line}" if self.line else f"{self.file}"
        return f"{where}: {self.severity}: {self.message}"


@dataclass
class SplitKickstart:
    """A parsed kickstart: what is baked at build time, what is applied per machine, and what was noticed."""

    build: BuildSpec
    deploy: DeploySpec
    warnings: list[Diagnostic] = field(default_factory=list)
    source: str = ""  # path of the kickstart
    sha256: str = ""  # of the fully expanded text (after %include)
    # `%include`s left for deploy time (a path %pre writes, or under /tmp, /run, /dev/shm):
    # [{"path", "file", "line", "written_by"}] (tarball_builder.kickstart.source.DeferredInclude)
    deferred_includes: list[dict] = field(default_factory=list)
