"""The builder never writes, truncates or removes outside the root it builds, whatever links the root holds.

Each test plants absolute symlinks in a small root that point at a "host" directory beside it (standing
for the build machine's own files), runs the real builder code, and checks that the host directory is
exactly as it was and that the write landed where the image itself would see it: inside the root.
"""
from __future__ import annotations

import logging
import os
import sqlite3
from pathlib import Path

import pytest

from metalstream import rootfs
from metalstream.contracts.deployspec import DeploySpec
from tarball_builder.backends import debian, rpm
from tarball_builder.backends.debian import DebianBackend
from tarball_builder.backends.rpm import RpmBackend
from tarball_builder.chroot import POLICY_RC_D, Chroot
from tarball_builder.context import BuildContext, BuildOptions
from tarball_builder.installer import stage as staging
from tarball_builder.spec import BuildSpec, Distribution, Repo, Script, SplitKickstart
from tarball_builder.stages import cleanup
from tarball_builder.stages.post import PostStage

from conftest import require_root, require_tools
from fixtures_build import host_mounts_under


@pytest.fixture
def root(tmp_path) -> Path:
    (tmp_path / "root").mkdir()
    return tmp_path / "root"


@pytest.fixture
def host(tmp_path) -> Path:
    """The build machine's side: every file here must survive the test byte for byte."""
    host = tmp_path / "host"
    host.mkdir()
    (host / "shadow").write_text("host secret\n")
    return host


def host_dir(host: Path, name: str, files: dict[str, str]) -> Path:
    directory = host / name
    for rel, text in files.items():
        (directory / rel).parent.mkdir(parents=True, exist_ok=True)
        (directory / rel).write_text(text)
    directory.mkdir(exist_ok=True)
    return directory


def plant(root: Path, path: str, target: Path) -> None:
    """An absolute symlink at `path` in the root, naming `target` as the build machine sees it."""
    link = root / path.lstrip("/")
    link.parent.mkdir(parents=True, exist_ok=True)
    link.symlink_to(target)


def inside(root: Path, host_path: Path) -> Path:
    """Where an absolute link to `host_path` really leads from within the root."""
    return root / str(host_path).lstrip("/")


def snapshot(directory: Path) -> dict[str, str]:
    """Every entry below `directory`: file content, link target or `<dir>`."""
    entries = {}
    for dirpath, dirnames, filenames in os.walk(directory):
        for name in [*dirnames, *filenames]:
            path = Path(dirpath, name)
            rel = str(path.relative_to(directory))
            if path.is_symlink():
                entries[rel] = f"-> {os.readlink(path)}"
            elif path.is_dir():
                entries[rel] = "<dir>"
            elif path.is_file():
                entries[rel] = path.read_bytes().decode(errors="replace")
            else:
                entries[rel] = "<special>"  # never read: a device node could block
    return entries


def make_ctx(tmp_path: Path, root: Path, *, family: str = "rpm", repos=(), post=()) -> BuildContext:
    spec = BuildSpec(distribution=Distribution(family, "bookworm"), repos=list(repos), post=list(post))
    kickstart = SplitKickstart(build=spec, deploy=DeploySpec(), source="s.ks", sha256="0" * 64)
    work = tmp_path / "work"
    work.mkdir(exist_ok=True)
    return BuildContext(kickstart=kickstart, options=BuildOptions(output_dir=tmp_path / "out", name="s",
                                                                         cache_dir=tmp_path / "cache"),
                        root=root, workdir=work, source_date_epoch=1_700_000_000,
                        log=logging.getLogger("test"))


# --- cleanup ---------------------------------------------------------------------------------------

def test_cleanup_never_follows_a_linked_log_directory_to_the_host(tmp_path, root, host):
    logs = host_dir(host, "log", {"syslog": "host log\n", "apt/history.log": "host apt\n", "dmesg.0": "host"})
    plant(root, "/var/log", logs)
    before = snapshot(host)
    cleanup.CleanupStage(DebianBackend()).run(make_ctx(tmp_path, root, family="debian"))
    assert snapshot(host) == before


def test_log_truncation_empties_the_log_directory_the_image_sees(root, host):
    logs = host_dir(host, "log", {"syslog": "host log\n"})
    plant(root, "/var/log", logs)
    in_root = inside(root, logs)
    (in_root / "apt").mkdir(parents=True)
    (in_root / "apt/history.log").write_text("image log\n")
    (in_root / "apt/term.log").symlink_to(host / "shadow")
    (root / "etc").mkdir()
    (root / "etc/hostname").write_text("image\n")
    before = snapshot(host)
    cleanup.truncate_logs(root)
    assert snapshot(host) == before
    assert (in_root / "apt/history.log").read_text() == ""
    assert (root / "etc/hostname").read_text() == "image\n"  # only what the image sees under /var/log


def test_removal_globs_neither_follow_linked_directories_nor_delete_outside_the_root(root, host):
    cache = host_dir(host, "cache", {"apt/archives/bash.deb": "host deb", "man/index.db": "host man"})
    old_logs = host_dir(host, "old-logs", {"kern.log.1": "host", "daemon.gz": "host"})
    ssh = host_dir(host, "ssh", {"ssh_host_ed25519_key": "host key"})
    plant(root, "/var/cache", cache)  # a directory on the way to the patterns
    plant(root, "/var/log/old", old_logs)  # a directory `var/log/**` must not enter
    plant(root, "/etc/ssh", ssh)
    plant(root, "/run/escape", host)  # matched itself by run/*: the link goes, not what it names
    (root / "var/log/apt").mkdir(parents=True)
    (root / "var/log/apt/history.log.1.gz").write_text("image")
    in_root_cache = inside(root, cache)
    (in_root_cache / "man").mkdir(parents=True)
    (in_root_cache / "man/index.db").write_text("image man")
    # Not tmp/*: the root's copies of the host paths live under its /tmp, as tmp_path does on the host.
    patterns = ["var/cache/apt/archives/*.deb", "var/cache/man/*", "var/log/**/*.gz", "var/log/*.old",
                "etc/ssh/ssh_host_*", "run/*"]
    assert set(patterns) <= {*DebianBackend().cache_globs(), *cleanup.REMOVE}
    before = snapshot(host)
    removed = cleanup.remove_globs(root, patterns)
    assert snapshot(host) == before
    assert not os.path.lexists(root / "run/escape")
    assert not (root / "var/log/apt/history.log.1.gz").exists()
    assert (root / "var/log/old").is_symlink()  # var/log/*.old and friends do not name it
    assert list((in_root_cache / "man").iterdir()) == []  # the image's /var/cache/man, as it resolves there
    assert removed == 3


# --- Debian backend --------------------------------------------------------------------------------

def test_debian_initramfs_conf_is_edited_inside_the_root(root, host):
    conf_dir = host_dir(host, "initramfs-tools", {"initramfs.conf": "MODULES=dep\n"})
    plant(root, "/etc/initramfs-tools", conf_dir)
    in_root = inside(root, conf_dir)
    in_root.mkdir(parents=True)
    (in_root / "initramfs.conf").write_text("MODULES=dep\nBUSYBOX=auto\n")
    before = snapshot(host)
    DebianBackend().prepare_initramfs(root)
    assert snapshot(host) == before
    assert (in_root / "initramfs.conf").read_text() == "MODULES=most\nBUSYBOX=auto\n"


def test_debian_build_leftovers_are_removed_inside_the_root_only(tmp_path, root, host):
    # Not by a shell hook of mmdebstrap (`rm -f "$1"/etc/...` follows a linked /etc to the build machine) ...
    ctx = make_ctx(tmp_path, root, family="debian", repos=[Repo("local", baseurl="http://192.0.2.1/debian")])
    ctx.build.packages.names, ctx.build.packages.excluded_names = ["bash"], ["nano"]
    argv, _ = DebianBackend().mmdebstrap_command(ctx)
    assert not [arg for arg in argv if "rm " in arg]
    # ... but resolved inside the root once mmdebstrap is done.
    etc = host_dir(host, "etc", {"resolv.conf": "nameserver 192.0.2.1\n", "hostname": "buildhost\n",
                                 "apt/preferences.d/99metalstream-excluded": "host pin\n"})
    plant(root, "/etc", etc)
    in_root = inside(root, etc)
    (in_root / "apt/preferences.d").mkdir(parents=True)
    for name in ("resolv.conf", "hostname", "apt/preferences.d/99metalstream-excluded"):
        (in_root / name).write_text("copied in by mmdebstrap\n")
    before = snapshot(host)
    debian.drop_build_leftovers(root)
    assert snapshot(host) == before
    assert sorted(str(p.relative_to(in_root)) for p in in_root.rglob("*")) == ["apt", "apt/preferences.d"]


# --- RPM backend -----------------------------------------------------------------------------------

@pytest.mark.parametrize("linked", ["/etc/yum.repos.d", "/etc/yum.repos.d/extras.repo"])
def test_repo_install_writes_the_repo_file_inside_the_root(tmp_path, root, host, linked):
    repos_dir = host_dir(host, "yum.repos.d", {"extras.repo": "[extras]\nbaseurl=http://host.example/\n"})
    plant(root, linked, repos_dir / os.path.relpath(linked, "/etc/yum.repos.d"))
    ctx = make_ctx(tmp_path, root, repos=[Repo("extras", baseurl="http://192.0.2.1/repo", install=True),
                                          Repo("build-only", baseurl="http://192.0.2.1/other")])
    before = snapshot(host)
    RpmBackend()._install_repo_files(ctx)
    assert snapshot(host) == before
    written = rootfs.resolve(root, "/etc/yum.repos.d/extras.repo")
    assert written.is_relative_to(root.resolve()) and not written.is_symlink()
    assert "baseurl=http://192.0.2.1/repo" in written.read_text()
    assert not rootfs.exists(root, "/etc/yum.repos.d/build-only.repo")


def test_rpmdb_relocation_moves_the_database_inside_the_root(root, host):
    sysimage = host_dir(host, "sysimage", {"keep": "host\n"})
    plant(root, "/usr/lib/sysimage", sysimage)
    (root / "var/lib/rpm").mkdir(parents=True)
    (root / "var/lib/rpm/rpmdb.sqlite").write_text("image rpmdb")
    before = snapshot(host)
    assert rpm.relocate_rpmdb(root, "/usr/lib/sysimage/rpm")
    assert snapshot(host) == before
    moved = inside(root, sysimage) / "rpm/rpmdb.sqlite"
    assert moved.read_text() == "image rpmdb"
    assert rootfs.resolve(root, "/var/lib/rpm/rpmdb.sqlite") == moved.resolve()
    assert not os.path.isabs(os.readlink(root / "var/lib/rpm"))


def test_settling_the_rpmdb_never_checkpoints_a_host_database(root, host):
    db_dir = host_dir(host, "rpm", {})
    writer = sqlite3.connect(db_dir / "rpmdb.sqlite")  # stays open: its WAL is not folded in on close
    try:
        writer.execute("PRAGMA journal_mode=WAL")
        writer.execute("CREATE TABLE packages (name TEXT)")
        writer.commit()
        writer.execute("INSERT INTO packages VALUES ('host-only')")
        writer.commit()
        plant(root, "/var/lib/rpm", db_dir)
        before = snapshot(host)
        rpm.settle_rpmdb(root)
        assert snapshot(host) == before
    finally:
        writer.close()


# --- chroot and %post ------------------------------------------------------------------------------

def test_policy_rc_d_is_written_inside_the_root_and_removed_again(root, host):
    sbin = host_dir(host, "sbin", {"keep": "host\n"})
    plant(root, "/usr/sbin", sbin)
    in_root = inside(root, sbin)
    in_root.mkdir(parents=True)
    before = snapshot(host)
    with Chroot(root):
        assert snapshot(host) == before
        policy = in_root / "policy-rc.d"
        assert policy.read_text() == POLICY_RC_D and policy.stat().st_mode & 0o777 == 0o755
    assert snapshot(host) == before
    assert not (in_root / "policy-rc.d").exists()


def test_post_script_file_is_removed_inside_the_root_after_the_script_relinked_tmp(tmp_path, busybox_root, host):
    require_root()
    require_tools("unshare", "chroot")
    (host / "metalstream-post-1").write_text("host file with the script's name\n")
    # In the image ../host is /host; from the build machine, the root's ../host is `host`.
    assert busybox_root.parent == host.parent
    relink_tmp = "/bin/busybox rm -rf /tmp && /bin/busybox ln -s ../host /tmp\n"
    ctx = make_ctx(tmp_path, busybox_root, family="debian", post=[Script(body=relink_tmp, line=3)])
    before = snapshot(host)
    PostStage().run(ctx)
    assert snapshot(host) == before
    assert (busybox_root / "tmp").is_symlink()
    assert host_mounts_under(busybox_root) == []


# --- installer staging -----------------------------------------------------------------------------

def test_installer_agent_sources_are_copied_inside_the_stage(root, host):
    python = host_dir(host, "python3", {"dist-packages/keep.py": "host\n"})
    plant(root, "/usr/lib/python3", python)
    before = snapshot(host)
    staging.add_agent(root)
    assert snapshot(host) == before
    site = inside(root, python) / "dist-packages"
    assert (site / "deployer").is_dir() and (site / "metalstream/rootfs.py").is_file()


def test_installer_init_files_and_console_are_made_inside_the_stage(root, host):
    require_root()  # mknod
    share, dev = host_dir(host, "share", {"keep": "host\n"}), host_dir(host, "dev", {"keep": "host\n"})
    plant(root, "/usr/share", share)
    plant(root, "/dev", dev)
    for directory in ("usr/bin", "usr/sbin"):
        (root / directory).mkdir(parents=True)
    (root / "usr/bin/busybox").write_text("")
    before = snapshot(host)
    staging.add_init(root)
    assert snapshot(host) == before
    assert (inside(root, share) / "metalstream/udhcpc.sh").stat().st_mode & 0o777 == 0o755
    assert (inside(root, dev) / "console").is_char_device()
    assert os.readlink(root / "usr/sbin/udhcpc") == "/usr/bin/busybox"
