"""metalstream.rootfs: paths inside another system's root resolve as that system would, never onto the host."""
from __future__ import annotations

import os

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
