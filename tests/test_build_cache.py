"""The image cache (tarball_builder.reuse): an unchanged build is reused, a change in any input rebuilds.

Real `metalstream build` runs of a small RPM image from a copy of the test repository (tests/fixtures_rpm.py;
a build takes a few seconds). The builder runs from a copy of its own source (metalstream/ and
tarball_builder/, started with that copy as the working directory), so "the builder changed" is a real
edit of a real source file.
"""
from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from metalstream import proc
from tarball_builder import reuse

from conftest import REPO, require_root, require_tools
from fixtures_rpm import DATA

pytestmark = pytest.mark.root

EXTRA_SPEC = """\
Name: msextra
Version: 1.0
Release: 1
Summary: a package added to the repository after the first build
License: MIT
BuildArch: noarch

%description
Only its presence in repodata matters.

%files
"""

KICKSTART = """\
%addon org_metalstream_image
family=rpm
release=40
arch=x86_64
%end

url --url="{{ repo_url }}"
timezone Etc/UTC --utc
bootloader --location=none

%packages --excludedocs --exclude-weakdeps
msbase
%end

%post
echo "{{ motd }}" > /etc/motd
%end

%include part.ks
"""

PART = """\
%post
echo one > /etc/part
%end
"""


@pytest.fixture(autouse=True)
def _root_and_tools():
    require_root()
    require_tools("dnf", "rpm", "unshare", "zstd", "tar", "createrepo_c", "rpmbuild")


@pytest.fixture
def builder_copy(tmp_path) -> Path:
    """The builder's own packages copied: `python -m metalstream` started there runs this copy."""
    dest = tmp_path / "builder"
    for package in ("metalstream", "tarball_builder"):
        shutil.copytree(REPO / package, dest / package, ignore=shutil.ignore_patterns("__pycache__"))
    return dest


@pytest.fixture
def own_repo(rpm_repo, tmp_path) -> Path:
    """A copy of the session's test repository that this test may change."""
    repo = tmp_path / "repo"
    shutil.copytree(rpm_repo.path, repo)
    return repo


def build(builder: Path, ks: Path, out: Path, cache: Path, repo: Path, motd: str, *extra: str):
    result = subprocess.run([sys.executable, "-m", "metalstream", "build", str(ks), "-o", str(out),
                             "--cache-dir", str(cache), "--var", f"repo_url=file://{repo}", "--var", f"motd={motd}",
                             "--zstd-level", "3", *extra],
                            capture_output=True, text=True, cwd=builder, timeout=600)
    assert result.returncode == 0, result.stderr[-3000:]
    manifest = json.loads((out / "main.json").read_text())
    return result.stderr, manifest["sha256"]


def add_package(repo: Path, work: Path) -> None:
    """rpmbuild one more package into the repository and index it again with createrepo_c."""
    work.mkdir(parents=True, exist_ok=True)
    spec = work / "msextra.spec"
    spec.write_text(EXTRA_SPEC)
    proc.run(["rpmbuild", "-bb", "--quiet", "--define", f"_topdir {work / 'rpmbuild'}", "--define", f"_rpmdir {repo}",
              spec], env={"HOME": str(work), "SOURCE_DATE_EPOCH": "1700000000"}, timeout=120)
    proc.run(["createrepo_c", "--quiet", "-g", DATA / "comps.xml", repo], timeout=120)


def test_unchanged_inputs_reuse_the_image_and_each_changed_input_rebuilds(builder_copy, own_repo, tmp_path):
    ks_dir = tmp_path / "ks"
    ks_dir.mkdir()
    ks = ks_dir / "main.ks.j2"
    ks.write_text(KICKSTART)
    (ks_dir / "part.ks").write_text(PART)
    out, cache = tmp_path / "out", tmp_path / "cache"
    tarball, record = out / "main.tar.zst", out / "main.cache-key.json"

    def step(motd: str = "hello", *extra: str) -> tuple[bool, str]:
        before = tarball.stat().st_mtime_ns if tarball.exists() else None
        log, sha256 = build(builder_copy, ks, out, cache, own_repo, motd, *extra)
        reused = "reusing" in log
        assert reused == (before == tarball.stat().st_mtime_ns), log  # reused means the files were not written
        assert json.loads(record.read_text())["tarball"]["sha256"] == sha256
        return reused, sha256

    built, first = step()
    assert not built
    assert step() == (True, first)  # nothing changed

    (ks_dir / "part.ks").write_text(PART.replace("one", "two"))  # an included file
    reused, second = step()
    assert not reused and second != first
    assert step() == (True, second)

    reused, third = step("bonjour")  # a template variable
    assert not reused and third != second
    assert step("bonjour") == (True, third)

    ks.write_text(KICKSTART + "# a comment is text too\n")  # the kickstart's own text
    reused, fourth = step("bonjour")
    assert not reused
    assert step("bonjour") == (True, fourth)

    add_package(own_repo, tmp_path / "rpmbuild-work")  # repository metadata (repomd.xml)
    reused, fifth = step("bonjour")
    assert not reused
    assert fifth == fourth  # the new package is not installed: same image, but it was built again
    assert step("bonjour") == (True, fifth)

    pack = builder_copy / "tarball_builder/stages/pack.py"  # the builder's own source
    pack.write_text(pack.read_text() + "\n# an edit of the builder\n")
    reused, sixth = step("bonjour")
    assert not reused and sixth == fifth
    assert step("bonjour") == (True, sixth)

    assert step("bonjour", "--rebuild") == (False, sixth)
    assert step("bonjour", "--no-cache") == (False, sixth)
    assert step("bonjour", "--zstd-threads", "1") == (True, sixth)  # the thread count does not change the output


def test_a_changed_or_missing_output_is_not_reused(builder_copy, own_repo, tmp_path):
    ks = tmp_path / "main.ks.j2"
    ks.write_text(KICKSTART.replace("%include part.ks\n", ""))
    out, cache = tmp_path / "out", tmp_path / "cache"
    log, sha256 = build(builder_copy, ks, out, cache, own_repo, "m")
    manifest = out / "main.json"
    manifest.write_text(manifest.read_text().replace('"name"', '"name" ', 1))  # same JSON, other bytes
    log, again = build(builder_copy, ks, out, cache, own_repo, "m")
    assert "reusing" not in log and again == sha256
    (out / "main.tar.zst").unlink()
    log, again = build(builder_copy, ks, out, cache, own_repo, "m")
    assert "reusing" not in log and again == sha256


def test_an_unreachable_repository_means_no_reuse_and_says_why(rpm_repo, tmp_path):
    from tarball_builder.reuse import Metadata, NotReusable, metadata_digests

    with pytest.raises(NotReusable, match="127.0.0.1:9"):
        metadata_digests([Metadata("repo down", ("http://127.0.0.1:9/repodata/repomd.xml",))])
    with pytest.raises(NotReusable, match="no repository metadata"):
        metadata_digests([Metadata("missing", (f"file://{tmp_path}/nothing/InRelease",))])
    with pytest.raises(NotReusable, match="scheme"):
        metadata_digests([Metadata("odd", ("mirror+file:///etc/mirrors",))])
    found = metadata_digests([Metadata("ok", (f"file://{tmp_path}/no", f"{rpm_repo.url}/repodata/repomd.xml"))])
    assert len(found["ok"]) == 64


def test_the_source_digest_changes_with_any_file_of_the_builder(tmp_path):
    package = tmp_path / "tarball_builder"
    shutil.copytree(REPO / "tarball_builder", package, ignore=shutil.ignore_patterns("__pycache__"))
    before = reuse.source_digest((package,))
    (package / "__pycache__").mkdir(exist_ok=True)
    (package / "__pycache__" / "x.cpython-311.pyc").write_bytes(b"bytecode is not source")
    assert reuse.source_digest((package,)) == before
    (package / "kickstart" / "new_module.py").write_text("")
    assert reuse.source_digest((package,)) != before
