"""RPM family backend: `dnf --installroot` installs the root, `rpm --root` reads it, dracut boots it.

dnf runs on the build host with the build's own configuration only (see rpm_plan), inside the same
private mount and PID namespace the chroot uses, so package scriptlets find /proc, /sys and /dev in
the root and no mount or process outlives the install. The dnf cache of the build cache directory
(`<cache_dir>/rpm-archives`, `keepcache=True`) is bind-mounted at the root's /var/cache/dnf inside
that namespace only: a rebuild reuses downloaded packages, and the image never holds them.

dnf writes the rpmdb to /var/lib/rpm in the root (rpm_plan.DBPATH; the build host's own rpm macros
would put it elsewhere, so a macros file says so). That is where RHEL/CentOS 7-9 keep it. When the
image has its own rpm and it answers another `%_dbpath` (Fedora 36 and later: /usr/lib/sysimage/rpm),
the database is moved there and /var/lib/rpm becomes a symlink to it, the layout those releases
expect. The sqlite WAL is checkpointed after every write so the image ships one self-contained
rpmdb.sqlite.
dnf's history (var/lib/dnf) is not shipped: it holds build-time timestamps and the build host's
repository paths; dnf on a deployed machine starts with an empty history.
"""
from __future__ import annotations

import os
import re
import shutil
import sqlite3
from pathlib import Path

from metalstream import proc, rootfs
from metalstream.errors import BadInput, OperationFailed

from .. import cache
from ..chroot import for_build
from ..context import BuildContext
from ..spec import SplitKickstart
from . import rpm_plan

QUERY_FORMAT = r"%{NAME}\t%|EPOCH?{%{EPOCH}:}:{}|%{VERSION}-%{RELEASE}\t%{ARCH}\n"
# dracut modules for the storage stacks a deploy layout may build, each with the program that says its tools are
# in the image: the generic initramfs assembles, activates and unlocks them at boot whenever the image can.
DRACUT_STORAGE_MODULES = (("mdraid", "mdadm"), ("lvm", "lvm"), ("crypt", "cryptsetup"), ("btrfs", "btrfs"))
DRACUT_STORAGE_CONF = "/etc/dracut.conf.d/90-metalstream-storage.conf"
PROGRAM_DIRS = ("usr/sbin", "usr/bin", "sbin", "bin")

# Run by the chroot's namespace shell before dnf: "$1" root, "$2" cache directory, then dnf's argv.
_BIND_CACHE = r"""
set -e
root=$1; cache=$2; shift 2
mkdir -p "$root/var/cache/dnf"
mount --bind "$cache" "$root/var/cache/dnf"
exec "$@"
"""


class RpmBackend:
    family = "rpm"

    def install(self, ctx: BuildContext) -> None:
        ks = ctx.kickstart.source or "kickstart"
        missing = [tool for tool in ("dnf", "rpm") if shutil.which(tool) is None]
        if missing:
            raise OperationFailed(f"{' and '.join(missing)} not found on the build host: RPM images need them "
                                  "(run `bash .ci/setup`, or apt-get install dnf rpm)")
        confdir = Path(ctx.workdir) / "dnf"
        plan = rpm_plan.plan_install(ctx.build, ks=ks, root=ctx.root, confdir=confdir)
        (confdir / "repos.d").mkdir(parents=True, exist_ok=True)
        (confdir / "dnf.conf").write_text(plan.conf)
        (confdir / "repos.d" / "kickstart.repo").write_text(plan.repo_file)
        home = write_rpm_macros(confdir / "home")
        ctx.log.info("dnf configuration:\n%s\n%s", plan.conf, plan.repo_file)
        dnf_cache = cache.package_dir(ctx, "rpm-archives")
        ctx.root.mkdir(parents=True, exist_ok=True)
        with for_build(ctx) as chroot:
            result = chroot.run_outside(["/bin/sh", "-c", _BIND_CACHE, "metalstream-dnf", str(ctx.root),
                                         str(dnf_cache), *plan.argv],
                                        env={"HOME": str(home)}, check=False, timeout=rpm_plan.INSTALL_TIMEOUT)
        ctx.log.info("dnf output:\n%s", result.stdout[-20000:])
        if result.returncode != 0:
            raise rpm_plan.explain_failure(result.stdout, result.stderr, plan, ctx.build, ks=ks,
                                           ks_text=_read_text(ks), root=ctx.root)
        settle_rpmdb(ctx.root)
        if not rpmdb_file(ctx.root).is_file():
            raise OperationFailed(f"dnf finished but left no rpmdb at {rpm_plan.DBPATH} in {ctx.root}")
        self._move_rpmdb_where_the_image_looks(ctx)
        self._install_repo_files(ctx)

    def _move_rpmdb_where_the_image_looks(self, ctx: BuildContext) -> None:
        if not any((ctx.root / p).is_file() for p in ("usr/bin/rpm", "bin/rpm")):
            return
        with for_build(ctx) as chroot:
            answer = chroot.run(["rpm", "--eval", "%{_dbpath}"], check=False)
        dbpath = answer.stdout.strip()
        if answer.returncode != 0 or not dbpath.startswith("/") or "%" in dbpath:
            ctx.log.warning("the image's rpm did not say where its rpmdb lives (%s): keeping %s",
                            answer.stderr.strip(), rpm_plan.DBPATH)
            return
        if relocate_rpmdb(ctx.root, dbpath):
            ctx.log.info("rpmdb moved to %s (the image's %%_dbpath); %s links to it", dbpath, rpm_plan.DBPATH)

    def _install_repo_files(self, ctx: BuildContext) -> None:
        """`repo --install`: the repository's configuration goes into the image's /etc/yum.repos.d."""
        for repo in ctx.build.repos:
            if repo.install:
                rootfs.write_file(ctx.root, f"/etc/yum.repos.d/{rpm_plan.repo_id(repo)}.repo",
                                  rpm_plan.repo_section(repo))

    def repository_metadata(self, kickstart: SplitKickstart) -> dict:
        """For the build cache key (tarball_builder.reuse): the repo definitions and each repomd.xml.
        A --mirrorlist/--metalink repository is not resolved: such a build is never reused."""
        from ..reuse import Metadata, NotReusable

        dist = kickstart.build.distribution
        metadata = []
        for repo in kickstart.build.repos:
            if repo.mirrorlist or repo.metalink:
                raise NotReusable(f"{rpm_plan.repo_label(repo)} uses --mirrorlist/--metalink, which the cache key "
                                  "does not resolve")
            for url in re.split(r"[\s,]+", repo.baseurl or ""):
                if not url:
                    continue
                url = url.replace("$releasever", dist.release).replace("$basearch", dist.arch)
                if "$" in url:
                    raise NotReusable(f"{rpm_plan.repo_label(repo)}: a dnf variable in {url} is not expanded for "
                                      "the cache key")
                metadata.append(Metadata(f"{rpm_plan.repo_label(repo)} {url}",
                                         (url.rstrip("/") + "/repodata/repomd.xml",)))
        sources = "\n".join(rpm_plan.repo_section(repo) for repo in kickstart.build.repos)
        return {"sources": sources, "metadata": metadata}

    def installed_packages(self, ctx: BuildContext) -> list[dict[str, str]]:
        result = proc.run(["rpm", "--root", ctx.root, "--dbpath", rpm_plan.DBPATH, "-qa", "--qf", QUERY_FORMAT])
        settle_rpmdb(ctx.root)
        return parse_package_list(result.stdout)

    def initramfs_argv(self, kernel_version: str) -> list[str]:
        return ["dracut", "--no-hostonly", "--reproducible", "--force", "--kver", kernel_version,
                self.initramfs_path(kernel_version)]

    def initramfs_path(self, kernel_version: str) -> str:
        return f"/boot/initramfs-{kernel_version}.img"

    def prepare_initramfs(self, root: Path) -> None:
        """Called before the initramfs stage runs dracut in the root: dracut must be in the image; the dracut
        modules of the storage stacks whose tools the image has (mdadm, lvm, cryptsetup, btrfs) are added by a
        dracut.conf.d file that ships with the image (its own later dracut runs keep them)."""
        if not any((Path(root) / p).exists() for p in ("usr/bin/dracut", "usr/sbin/dracut", "sbin/dracut")):
            raise BadInput("a kernel is installed but dracut is not: add dracut to %packages "
                           "(it writes the generic initramfs every kernel needs)")
        modules = storage_dracut_modules(root)
        if modules:
            rootfs.write_file(root, DRACUT_STORAGE_CONF,
                              "# metalstream: the storage stacks whose tools this image has (tarball_builder)\n"
                              f'add_dracutmodules+=" {" ".join(modules)} "\n')

    def cache_globs(self) -> list[str]:
        globs = ["var/cache/dnf/*", "var/cache/dnf/.*", "var/cache/yum/*", "var/lib/dnf/*",
                 "var/log/dnf.log", "var/log/dnf.librepo.log", "var/log/dnf.rpm.log", "var/log/hawkey.log"]
        for dbdir in ("var/lib/rpm", "usr/lib/sysimage/rpm"):
            # Berkeley DB environment files (rebuilt on demand), the lock file and the sqlite shared-memory
            # index; never rpmdb.sqlite-wal, which may hold committed transactions.
            globs += [f"{dbdir}/__db.*", f"{dbdir}/.rpm.lock", f"{dbdir}/.dbenv.lock", f"{dbdir}/rpmdb.sqlite-shm"]
        return globs


def storage_dracut_modules(root: Path) -> list[str]:
    """The dracut modules of DRACUT_STORAGE_MODULES whose program is installed in `root`."""
    return [module for module, program in DRACUT_STORAGE_MODULES
            if any(rootfs.resolve(root, f"/{d}/{program}").is_file() for d in PROGRAM_DIRS)]


def parse_package_list(text: str) -> list[dict[str, str]]:
    packages = []
    for line in text.splitlines():
        fields = line.split("\t")
        if len(fields) != 3 or fields[0] == "gpg-pubkey":
            continue
        packages.append({"name": fields[0], "version": fields[1], "arch": fields[2]})
    return sorted(packages, key=lambda p: (p["name"], p["arch"], p["version"]))


def write_rpm_macros(home: Path) -> Path:
    """A HOME whose ~/.rpmmacros points rpm's database at DBPATH (the build host's default is elsewhere)."""
    home.mkdir(parents=True, exist_ok=True)
    (home / ".rpmmacros").write_text(f"%_dbpath {rpm_plan.DBPATH}\n")
    return home


def rpmdb_file(root: Path) -> Path:
    return rootfs.resolve(root, f"{rpm_plan.DBPATH}/rpmdb.sqlite")


def relocate_rpmdb(root: Path, dbpath: str) -> bool:
    """Move the rpmdb from DBPATH to `dbpath` inside root and leave DBPATH as a relative symlink to it.
    False when both already name the same directory."""
    old = rootfs.resolve(root, rpm_plan.DBPATH, follow_last=False)
    new = rootfs.resolve(root, dbpath)
    if new == old or old.is_symlink():
        return False
    new.mkdir(parents=True, exist_ok=True)
    for entry in sorted(old.iterdir()):
        if entry.name == ".migratedb":  # asks for the first-boot migration this move makes moot
            entry.unlink()
        else:
            entry.rename(new / entry.name)  # replaces the per-file symlinks Fedora's rpm %pre makes
    old.rmdir()
    old.symlink_to(os.path.relpath(new, old.parent))
    for entry in new.iterdir():
        if entry.is_symlink() and not rootfs.exists(root, f"{dbpath}/{entry.name}"):
            entry.unlink()
    return True


def settle_rpmdb(root: Path) -> None:
    """Fold the sqlite WAL into rpmdb.sqlite; closing the last connection removes -wal and -shm."""
    db = rpmdb_file(root)
    if not db.is_file():
        return
    connection = sqlite3.connect(db)
    try:
        connection.execute("PRAGMA wal_checkpoint(TRUNCATE)")
    finally:
        connection.close()


def _read_text(path: str) -> str | None:
    try:
        return Path(path).read_text(errors="replace")
    except OSError:
        return None
