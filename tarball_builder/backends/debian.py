"""Debian family backend: mmdebstrap installs the root, dpkg-query reads it, update-initramfs boots it.

Packages come from the build machine's apt sources (or the kickstart's repo lines), piped to
mmdebstrap on standard input with the mirror argument `-`. Downloaded .deb files are kept in
`<cache_dir>/debian-archives` so a rebuild downloads nothing new: a setup hook copies the cached .deb
files in and a customize hook copies new ones out (each file written under a temporary name, then
renamed), both under the directory's lock file (flock), so concurrent builds share the cache and only
wait for each other while copying. Only .deb files travel: apt's `partial/` directory and `lock` file
(whose owner depends on whether that build downloaded anything) are neither synced nor shipped.
dpkg runs with force-unsafe-io during the build (no fsync per unpacked file; the packed tarball is what
must be durable, and it is fsync'ed); the setting is removed before the root is packed.
`%packages` exclusions become an apt pin (priority -1) during the install: apt refuses to pull them in
and says which package needed them; the pin is removed before the root is packed.
"""
from __future__ import annotations

import os
import re
import shlex
from pathlib import Path

from metalstream import proc, rootfs
from metalstream.errors import BadInput, CommandError, OperationFailed

from .. import cache
from ..context import BuildContext
from ..spec import SplitKickstart
from . import apt_sources

DEB_ARCH = {"x86_64": "amd64", "amd64": "amd64", "aarch64": "arm64", "arm64": "arm64", "i686": "i386",
            "i386": "i386", "ppc64le": "ppc64el", "s390x": "s390x"}
VARIANTS = ("extract", "custom", "essential", "apt", "required", "minbase", "buildd", "important",
            "debootstrap", "standard")
EXCLUDE_PIN = "/etc/apt/preferences.d/99metalstream-excluded"
UNSAFE_IO = "/etc/dpkg/dpkg.cfg.d/00metalstream-unsafe-io"
# Removed after the install (inside the root, see drop_build_leftovers): mmdebstrap copies the build
# machine's resolv.conf and hostname in, which must not ship (nor make builds differ), the pin and
# the build-time dpkg setting.
BUILD_LEFTOVERS = ("/etc/resolv.conf", "/etc/hostname", EXCLUDE_PIN, UNSAFE_IO)
# METALSTREAM_BUILD_LEGACY=1: the install as it was before issue 19 (dpkg fsyncs every file); the bench
# compares both paths in one run. The image is the same either way.
LEGACY_ENV = "METALSTREAM_BUILD_LEGACY"
INSTALL_TIMEOUT = 3600.0
INITRAMFS_CONF = "/etc/initramfs-tools/initramfs.conf"
# cryptsetup-initramfs: its hook, and the setting that makes the hook add cryptsetup without a crypttab root.
CRYPTROOT_HOOK = "/usr/share/initramfs-tools/hooks/cryptroot"
CRYPTSETUP_CONF_HOOK = "/etc/cryptsetup-initramfs/conf-hook"


class DebianBackend:
    family = "debian"

    def install(self, ctx: BuildContext) -> None:
        argv, sources = self.mmdebstrap_command(ctx)
        ctx.log.info("apt sources for this build:\n%s", sources)
        try:
            # INITRD=No: the kernel's postinst skips its initramfs; the initramfs stage makes the one that ships.
            proc.run(argv, input=sources, timeout=INSTALL_TIMEOUT,
                     env={"SOURCE_DATE_EPOCH": str(ctx.source_date_epoch), "INITRD": "No"})
        except CommandError as exc:
            raise explain_failure(exc, ctx) from exc
        drop_build_leftovers(ctx.root)
        self._check_excluded_absent(ctx)

    def mmdebstrap_command(self, ctx: BuildContext) -> tuple[list[str], str]:
        """The mmdebstrap argv and the deb822 sources text for its standard input."""
        spec = ctx.build
        dist = spec.distribution
        ks = ctx.kickstart.source or "kickstart"
        pkgs = spec.packages
        if pkgs.groups or pkgs.excluded_groups:
            raise BadInput("package groups (@group) are not supported for Debian images; list package names",
                           location=f"{ks}:{pkgs.line}" if pkgs.line else ks)
        variant = dist.variant or "minbase"
        if variant not in VARIANTS:
            raise BadInput(f"unknown mmdebstrap variant {variant!r} (one of: {', '.join(VARIANTS)})",
                           location=f"{ks}:{dist.line}" if dist.line else ks)
        arch = DEB_ARCH.get(dist.arch)
        if arch is None:
            raise BadInput(f"unknown architecture {dist.arch!r}", location=f"{ks}:{dist.line}" if dist.line else ks)
        sources = build_sources(ctx.kickstart)
        archives = cache.package_dir(ctx, "debian-archives", lock=False)
        lock = cache.lock_file(archives)
        # Its own private mount and PID namespaces: whatever mmdebstrap mounts or starts dies with it,
        # even if it is killed.
        argv = ["unshare", "--mount", "--propagation", "private", "--pid", "--fork", "--kill-child", "--",
                "mmdebstrap", "--mode=root", "--format=directory", f"--variant={variant}",
                f"--architectures={arch}", "--aptopt=Acquire::Retries \"2\"",
                "--aptopt=Acquire::http::Timeout \"20\"",
                "--skip=essential/unlink",
                f"--setup-hook={sync_in_hook(archives, lock)}",
                f"--customize-hook={sync_out_hook(archives, lock)}"]
        if os.environ.get(LEGACY_ENV) != "1":
            argv.append(f"--setup-hook=mkdir -p \"$1\"{Path(UNSAFE_IO).parent} && "
                        f"echo force-unsafe-io > \"$1\"{UNSAFE_IO}")
        if pkgs.names:
            argv.append("--include=" + ",".join(pkgs.names))
        if pkgs.excluded_names:
            pin = "".join(f"Package: {name}\nPin: release *\nPin-Priority: -1\n\n" for name in pkgs.excluded_names)
            argv += [f"--setup-hook=mkdir -p \"$1\"/etc/apt/preferences.d && printf %s {shlex.quote(pin)} "
                     f"> \"$1\"{EXCLUDE_PIN}"]
        if pkgs.nodocs:
            argv.append("--dpkgopt=path-exclude=/usr/share/doc/*")
            argv.append("--dpkgopt=path-include=/usr/share/doc/*/copyright")
        if pkgs.exclude_weakdeps:
            argv.append("--aptopt=APT::Install-Recommends \"false\"")
        argv += [dist.release, str(ctx.root), "-"]
        return argv, apt_sources.render(sources)

    def repository_metadata(self, kickstart: SplitKickstart) -> dict:
        """For the build cache key (tarball_builder.reuse): the sources text and each suite's Release file."""
        from ..reuse import Metadata

        sources = build_sources(kickstart)
        metadata = []
        for source in sources:
            for uri in source.uris:
                for suite in source.suites:
                    base = f"{uri.rstrip('/')}/{suite}" if suite.endswith("/") else f"{uri.rstrip('/')}/dists/{suite}/"
                    metadata.append(Metadata(f"{uri} {suite}", (base + "InRelease", base + "Release")))
        return {"sources": apt_sources.render(sources), "metadata": metadata}

    def _check_excluded_absent(self, ctx: BuildContext) -> None:
        installed = {p["name"] for p in self.installed_packages(ctx)}
        present = sorted(set(ctx.build.packages.excluded_names) & installed)
        if present:
            ks = ctx.kickstart.source or "kickstart"
            line = ctx.build.packages.line
            raise BadInput(f"excluded package(s) {', '.join(present)} are part of the {ctx.build.distribution.variant}"
                           " variant's essential set and cannot be left out", location=f"{ks}:{line}" if line else ks)

    def installed_packages(self, ctx: BuildContext) -> list[dict[str, str]]:
        result = proc.run(["dpkg-query", f"--admindir={ctx.root / 'var/lib/dpkg'}", "-W",
                           "-f=${db:Status-Abbrev}\t${Package}\t${Version}\t${Architecture}\n"])
        packages = []
        for line in result.stdout.splitlines():
            status, name, version, arch = line.split("\t")
            if status.startswith("ii"):
                packages.append({"name": name, "version": version, "arch": arch})
        return sorted(packages, key=lambda p: (p["name"], p["arch"]))

    def prepare_initramfs(self, root: Path) -> None:
        """Generic initramfs: every storage/network module, not only what the build machine uses, and
        cryptsetup whenever cryptsetup-initramfs is installed (its hook adds it only for a root it sees
        in the build root's crypttab, which is empty: the deployer writes crypttab per machine)."""
        set_conf_line(root, INITRAMFS_CONF, "MODULES", "most")
        if rootfs.resolve(root, CRYPTROOT_HOOK).is_file():
            set_conf_line(root, CRYPTSETUP_CONF_HOOK, "CRYPTSETUP", "y", create=True)

    def initramfs_argv(self, kernel_version: str) -> list[str]:
        # -c would refuse an existing one (the kernel's postinst made it); -d then -c rebuilds it reproducibly.
        return ["/bin/sh", "-c", 'update-initramfs -d -k "$1" >/dev/null 2>&1 || true; update-initramfs -c -k "$1"',
                "update-initramfs", kernel_version]

    def initramfs_path(self, kernel_version: str) -> str:
        return f"/boot/initrd.img-{kernel_version}"

    def cache_globs(self) -> list[str]:
        # archives/partial and archives/lock: apt makes them again when it needs them; their owner and
        # mode depend on whether this build downloaded anything (see the module's docstring).
        return ["var/cache/apt/archives/*.deb", "var/cache/apt/archives/partial", "var/cache/apt/archives/lock",
                "var/cache/apt/*.bin",
                "var/lib/apt/lists/*", "var/cache/debconf/*-old", "var/lib/dpkg/*-old",
                "var/backups/*", "etc/apt/apt.conf.d/00mmdebstrap"]


def build_sources(kickstart: SplitKickstart) -> list[apt_sources.Source]:
    """The kickstart's repo lines, else the build machine's own apt sources moved to the kickstart's release."""
    dist = kickstart.build.distribution
    if kickstart.build.repos:
        return apt_sources.from_repos(kickstart.build.repos, dist, kickstart.source or "kickstart")
    sources = apt_sources.retarget(apt_sources.host_sources(), apt_sources.os_release_codename(), dist)
    if not sources:
        raise OperationFailed("the build machine has no apt sources (/etc/apt/sources.list*) and the "
                              "kickstart names no repo")
    return sources


def sync_in_hook(archives: Path, lock: Path) -> str:
    """mmdebstrap setup hook ("$1": the root): copy the cached .deb files (only those) into the root."""
    return (f'mkdir -p "$1"/var/cache/apt/archives && flock {shlex.quote(str(lock))} '
            f'find {shlex.quote(str(archives))} -maxdepth 1 -type f -name "*.deb" '
            f'-exec cp -t "$1"/var/cache/apt/archives/ {{}} +')


_SYNC_OUT = r"""for f in "$1"/var/cache/apt/archives/*.deb; do
  [ -f "$f" ] || continue
  b=${f##*/}
  [ -e "$2/$b" ] || { cp "$f" "$2/.$b.part" && mv "$2/.$b.part" "$2/$b"; }
done"""


def sync_out_hook(archives: Path, lock: Path) -> str:
    """mmdebstrap customize hook: copy .deb files the cache lacks out of the root, each renamed into place."""
    return (f'flock {shlex.quote(str(lock))} sh -c {shlex.quote(_SYNC_OUT)} sync-out "$1" '
            f'{shlex.quote(str(archives))}')


def drop_build_leftovers(root: Path) -> None:
    for path in BUILD_LEFTOVERS:
        rootfs.remove(root, path)


_NOT_FOUND = (re.compile(r"Unable to locate package (\S+)"),
              re.compile(r"Package '?([^' ]+)'? has no installation candidate"),
              re.compile(r"Couldn't find any package by (?:glob|regex) '([^']+)'"))
_UNREACHABLE = re.compile(r"(Could not connect to|Could not resolve|Failed to fetch|Connection failed|"
                          r"Unable to connect|does not have a Release file|Temporary failure resolving)[^\n]*")


def explain_failure(exc: CommandError, ctx: BuildContext) -> Exception:
    """Turn an mmdebstrap failure into one clear message naming the cause."""
    ks = ctx.kickstart.source or "kickstart"
    pkgs_line = ctx.build.packages.line
    pkgs_where = f"{ks}:{pkgs_line}" if pkgs_line else ks
    for pattern in _NOT_FOUND:
        match = pattern.search(exc.stderr)
        if match:
            return BadInput(f"package {match.group(1)!r} not found in the configured repositories (%packages)",
                            location=pkgs_where)
    pinned = re.search(r"Depends: (\S+) but it is not (?:going to be installed|installable)", exc.stderr)
    if pinned and pinned.group(1) in ctx.build.packages.excluded_names:
        return BadInput(f"excluded package {pinned.group(1)!r} is needed by another package (%packages)",
                        location=pkgs_where)
    if "No space left on device" in exc.stderr:
        return exc  # the pipeline names the full directory
    match = _UNREACHABLE.search(exc.stderr)
    if match:
        return OperationFailed(f"package repository unreachable: {match.group(0).strip()}")
    return exc


def set_conf_line(root: Path, path: str, key: str, value: str, *, create: bool = False) -> None:
    """KEY=VALUE in the shell-style configuration file `path` inside `root`: an existing (or commented
    out) KEY= line is replaced, else the line is appended. A missing file is left alone unless `create`."""
    conf = rootfs.resolve(root, path)
    if not conf.is_file() and not create:
        return
    text = conf.read_text() if conf.is_file() else ""
    line = f"{key}={value}"
    text, count = re.subn(rf"(?m)^#?\s*{re.escape(key)}=.*$", line, text)
    if not count:
        text += ("" if not text or text.endswith("\n") else "\n") + line + "\n"
    rootfs.write_file(root, path, text, mode=None)
