"""metalstream.rootfs: paths inside another system's root resolve as that system would, never onto the host."""
from __future__ import annotations

import os
from pathlib import PurePosixPath

import pytest

from metalstream import rootfs
from metalstream.errors import OperationFailed


@pytest.fixture
def tree(tmp_path):
    root, host = tmp_path / "root", tmp_path / "host"
    (root / "etc").mkdir(parents=True)
    (root / "usr/lib").mkdir(parents=True)
    host.mkdir()
    (host / "shadow").write_text("host secret\n")
    return root, host


def test_absolute_links_resolve_inside_the_root(tree):
    root, host = tree
    os.symlink("/usr/lib/os-release", root / "etc/os-release")
    (root / "usr/lib/os-release").write_text("ID=inside\n")
    assert rootfs.resolve(root, "/etc/os-release") == (root / "usr/lib/os-release").resolve()
    os.symlink(host / "shadow", root / "etc/shadow-link")  # names a host file: inside the root it does not exist
    assert not rootfs.exists(root, "/etc/shadow-link")
    assert str(rootfs.resolve(root, "/etc/shadow-link")).startswith(str(root.resolve()))


def test_dot_dot_never_climbs_above_the_root(tree):
    root, _ = tree
    os.symlink("../../../../../..", root / "etc/up")
    assert rootfs.resolve(root, "/etc/up/etc") == (root / "etc").resolve()
    assert rootfs.resolve(root, "../../etc/../..") == root.resolve()


def test_a_write_replaces_a_planted_link_instead_of_following_it(tree):
    root, host = tree
    os.symlink(host / "shadow", root / "etc/locale.conf")  # what a hostile package could leave behind
    rootfs.write_file(root, "/etc/locale.conf", "LANG=C.UTF-8\n")
    assert (host / "shadow").read_text() == "host secret\n"
    assert not (root / "etc/locale.conf").is_symlink()
    assert (root / "etc/locale.conf").read_text() == "LANG=C.UTF-8\n"


def test_a_directory_link_out_of_the_root_is_followed_inside_it(tree):
    root, host = tree
    os.symlink(host, root / "root")  # /root -> an absolute host path
    written = rootfs.write_file(root, "/root/.ssh/authorized_keys", "key\n", mode=0o600)
    assert sorted(p.name for p in host.iterdir()) == ["shadow"]
    assert written == (root / str(host).lstrip("/") / ".ssh/authorized_keys").resolve()
    assert written.read_text() == "key\n" and written.stat().st_mode & 0o777 == 0o600


def test_a_rewrite_keeps_mode_and_owner_unless_told(tree):
    root, _ = tree
    (root / "etc/shadow").write_text("root:*:1:::::\n")
    os.chmod(root / "etc/shadow", 0o640)
    rootfs.write_file(root, "/etc/shadow", "root:!:1:::::\n", mode=None)
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o640
    rootfs.write_file(root, "/etc/shadow", "root:!:1:::::\n")
    assert (root / "etc/shadow").stat().st_mode & 0o777 == 0o644


def test_link_loops_are_an_error_not_a_hang(tree):
    root, _ = tree
    os.symlink("/etc/b", root / "etc/a")
    os.symlink("/etc/a", root / "etc/b")
    with pytest.raises(OperationFailed, match="too many levels of symbolic links"):
        rootfs.resolve(root, "/etc/a")
    assert not rootfs.exists(root, "/etc/a")  # as os.path.exists answers for a loop


def test_glob_resolves_inside_the_root_and_never_enters_a_linked_directory(tree):
    root, host = tree
    (host / "logs").mkdir()
    (host / "logs/host.gz").write_text("host")
    (root / "var/log/apt").mkdir(parents=True)
    (root / "var/log/apt/a.gz").write_text("")
    (root / "var/log/.hidden.gz").write_text("")
    os.symlink(host / "logs", root / "var/log/linked")  # `**` must not enter it
    os.symlink(host / "logs", root / "var/cache")  # on the way: resolves inside the root (where it is missing)
    assert rootfs.glob(root, "var/log/**/*.gz") == [PurePosixPath("/var/log/apt/a.gz")]
    assert rootfs.glob(root, "/var/log/*") == [PurePosixPath("/var/log/apt"), PurePosixPath("/var/log/linked")]
    assert rootfs.glob(root, "var/log/.*") == [PurePosixPath("/var/log/.hidden.gz")]
    assert rootfs.glob(root, "var/cache/*") == []
    os.symlink("/var/loop", root / "var/loop")
    assert rootfs.glob(root, "var/loop/*") == [] and rootfs.regular_files(root, "/var/loop") == []


def test_remove_takes_a_link_itself_and_never_the_root(tree):
    root, host = tree
    os.symlink(host, root / "etc/hostdir")
    os.symlink(host / "shadow", root / "etc/shadow-link")
    (root / "usr/lib/tree/sub").mkdir(parents=True)
    os.symlink(host, root / "usr/lib/tree/sub/out")
    for path in ("/etc/hostdir", "/etc/shadow-link", "/usr/lib/tree", "/etc/missing"):
        rootfs.remove(root, path)
    assert sorted(p.name for p in (root / "etc").iterdir()) == []
    assert not (root / "usr/lib/tree").exists()
    assert (host / "shadow").read_text() == "host secret\n"
    with pytest.raises(OperationFailed, match="names the root"):
        rootfs.remove(root, "/etc/..")


def test_truncate_and_regular_files_leave_links_and_their_targets_alone(tree):
    root, host = tree
    (root / "var/log/apt").mkdir(parents=True)
    (root / "var/log/apt/term.log").write_text("log\n")
    os.symlink(host / "shadow", root / "var/log/shadow.log")
    os.symlink(host, root / "var/log/hostdir")
    found = rootfs.regular_files(root, "/var/log")
    assert found == [PurePosixPath("/var/log/apt/term.log")]
    for path in [*found, "/var/log/shadow.log"]:
        rootfs.truncate(root, path)
    assert (root / "var/log/apt/term.log").read_text() == ""
    assert (host / "shadow").read_text() == "host secret\n"
