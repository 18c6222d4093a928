"""pack: GNU tar | zstd with sorted entries, clamped mtimes, numeric owners, xattrs, ACLs, hard links."""
from __future__ import annotations

import hashlib
import os
import subprocess
from pathlib import Path

import pytest

from conftest import require_root, require_tools
from tarball_builder.stages.pack import count_entries, pack

EPOCH = 1_700_000_000
pytestmark = pytest.mark.root


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    require_root()
    require_tools("tar", "zstd", "setfacl", "setcap", "getfattr")
    root = tmp_path / "root"
    (root / "usr/bin").mkdir(parents=True)
    (root / "etc").mkdir()
    (root / "usr/bin/tool").write_bytes(b"\x7fELF" + b"x" * 5000)
    os.link(root / "usr/bin/tool", root / "usr/bin/tool-link")
    (root / "etc/owned").write_text("owned by 1234:2345\n")
    os.chown(root / "etc/owned", 1234, 2345)
    (root / "etc/old").write_text("old")
    os.utime(root / "etc/old", (100, 100))
    (root / "etc/new").write_text("future")
    os.utime(root / "etc/new", (EPOCH + 10**6, EPOCH + 10**6))
    os.symlink("owned", root / "etc/link")
    subprocess.run(["setcap", "cap_net_raw+ep", str(root / "usr/bin/tool")], check=True)
    subprocess.run(["setfattr", "-n", "user.metalstream", "-v", "kept", str(root / "etc/old")], check=True)
    subprocess.run(["setfacl", "-m", "u:4321:r", str(root / "etc/owned")], check=True)
    return root


def _sha(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_pack_is_reproducible_and_hash_matches_file(tree, tmp_path):
    first = pack(tree, tmp_path / "a.tar.zst", EPOCH, 3, 0)
    os.utime(tree / "etc/owned")  # touching a file now: clamped to EPOCH, so nothing changes
    second = pack(tree, tmp_path / "b.tar.zst", EPOCH, 3, 2)
    assert first[0] == second[0] == _sha(tmp_path / "a.tar.zst") == _sha(tmp_path / "b.tar.zst")
    assert first[1] == (tmp_path / "a.tar.zst").stat().st_size
    decompressed = subprocess.run(["zstd", "-dc", str(tmp_path / "a.tar.zst")], capture_output=True, check=True).stdout
    assert first[2] == len(decompressed)


def test_pack_keeps_metadata_and_clamps_mtimes(tree, tmp_path):
    pack(tree, tmp_path / "img.tar.zst", EPOCH, 3, 0)
    listing = subprocess.run(["tar", "--zstd", "-tvf", str(tmp_path / "img.tar.zst"), "--numeric-owner",
                              "--full-time"], capture_output=True, text=True, check=True).stdout.splitlines()
    names = [line.split()[5] for line in listing]
    assert names == sorted(names)  # sorted entries
    assert names[0] == "./"
    assert len(names) - 1 == count_entries(tree)
    owned = next(line for line in listing if line.endswith("./etc/owned"))
    assert "1234/2345" in owned
    assert any("./usr/bin/tool-link link to ./usr/bin/tool" in line for line in listing)
    out = tmp_path / "extract"
    out.mkdir()
    subprocess.run(["tar", "--zstd", "-xf", str(tmp_path / "img.tar.zst"), "-C", str(out), "--numeric-owner",
                    "--xattrs", "--xattrs-include=*", "--acls"], check=True)
    assert (out / "etc/new").stat().st_mtime == EPOCH  # clamped
    assert (out / "etc/old").stat().st_mtime == 100  # older stays as it was
    assert (out / "usr/bin/tool").stat().st_ino == (out / "usr/bin/tool-link").stat().st_ino
    caps = subprocess.run(["getcap", str(out / "usr/bin/tool")], capture_output=True, text=True).stdout
    assert "cap_net_raw" in caps
    xattr = subprocess.run(["getfattr", "-n", "user.metalstream", "--only-values", str(out / "etc/old")],
                           capture_output=True, text=True).stdout
    assert xattr == "kept"
    acl = subprocess.run(["getfacl", "-n", str(out / "etc/owned")], capture_output=True, text=True).stdout
    assert "user:4321:r--" in acl
