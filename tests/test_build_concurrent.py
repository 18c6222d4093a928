"""Two `metalstream build` processes of one kickstart, started together with one (empty) package cache,
write the same sha256: the shared cache changes neither image (see tarball_builder/cache.py)."""
from __future__ import annotations

import json
import subprocess
from pathlib import Path

import pytest

from conftest import METALSTREAM, REPO, require_root, require_tools
from fixtures_rpm import DATA as RPM_DATA

pytestmark = pytest.mark.root


def build_pair(kickstart: Path, tmp_path: Path, *extra: str) -> list[dict]:
    cache = tmp_path / "cache"
    children = [subprocess.Popen([*METALSTREAM, "build", str(kickstart), "-o", str(tmp_path / name), "--cache-dir",
                                  str(cache), "--zstd-level", "3", *extra],
                                 cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
                for name in ("a", "b")]
    manifests = []
    for child, name in zip(children, ("a", "b")):
        out, err = child.communicate(timeout=1800)
        assert child.returncode == 0, err[-3000:]
        manifest = next(p for p in (tmp_path / name).glob("*.json") if not p.name.endswith(".cache-key.json"))
        manifests.append(json.loads(manifest.read_text()))
    return manifests


def test_two_concurrent_rpm_builds_with_one_cache_give_the_same_sha256(rpm_repo, tmp_path):
    require_root()
    require_tools("dnf", "rpm", "unshare", "zstd", "tar")
    a, b = build_pair(RPM_DATA / "msdemo.ks.j2", tmp_path, "--var", f"repo_url={rpm_repo.url}")
    assert a["sha256"] == b["sha256"]
    assert a == b


@pytest.mark.slow
def test_two_concurrent_debian_builds_with_one_cache_give_the_same_sha256(tmp_path):
    """Both start with an empty cache, so both download; apt's partial/ directory (whose owner depends on
    whether a build downloaded anything) used to travel through the cache into one of the images."""
    require_root()
    require_tools("mmdebstrap", "tar", "zstd", "unshare", "dpkg-query", "flock")
    a, b = build_pair(REPO / "tests/data/build/repro.ks", tmp_path)
    assert a["sha256"] == b["sha256"]
    assert a == b
    cache = tmp_path / "cache/debian-archives"
    assert sorted(p.name for p in cache.iterdir() if not p.name.endswith(".deb")) == []
