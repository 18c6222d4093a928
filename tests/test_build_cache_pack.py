"""Parallel compression stays reproducible: the pack stage's tar.zst has the same sha256 whatever the zstd
thread count (zstd's multithreaded format does not depend on the number of workers; --single-thread,
a different format, is never used). Also the Debian package-cache hooks: only .deb files travel."""
from __future__ import annotations

import os
import random
import subprocess
from pathlib import Path

import pytest

from metalstream import proc
from tarball_builder.backends.debian import sync_in_hook, sync_out_hook
from tarball_builder.stages.pack import pack, tar_argv, zstd_argv

from conftest import require_root, require_tools

EPOCH = 1_700_000_000
LEVEL = 3


@pytest.fixture(scope="module")
def tree(tmp_path_factory) -> Path:
    """24 MiB in 6 files, part text, part noise: several zstd jobs at level 3 (8 MiB each)."""
    root = tmp_path_factory.mktemp("pack") / "root"
    rng = random.Random(19)
    words = [bytes(rng.choice(b"abcdefghijklmnopqrstuvwxyz") for _ in range(rng.randint(2, 9))) for _ in range(500)]
    for index in range(6):
        directory = root / f"d{index % 4}"
        directory.mkdir(parents=True, exist_ok=True)
        text = b" ".join(rng.choice(words) for _ in range(500_000))[: 3 * 2**20]
        (directory / f"f{index}").write_bytes(text + rng.randbytes(2**20))
    return root


def test_the_same_sha256_with_one_two_and_all_threads(tree, tmp_path):
    require_tools("tar", "zstd")
    results = {threads: pack(tree, tmp_path / f"t{threads}.tar.zst", EPOCH, LEVEL, threads) for threads in (1, 2, 0)}
    assert len({r[0] for r in results.values()}) == 1, results
    sha256, size, uncompressed = results[1]
    assert uncompressed > 16 * 2**20 and size < uncompressed  # really several jobs, really compressed
    # What makes this hold: never zstd's single-thread mode, whose frames differ.
    assert all("--single-thread" not in zstd_argv(LEVEL, threads) for threads in (0, 1, 2))
    single = _single_thread_sha256(tree)
    assert single != sha256


def _single_thread_sha256(root: Path) -> str:
    tar = subprocess.Popen(tar_argv(root, EPOCH), stdout=subprocess.PIPE)
    out = subprocess.run(["sh", "-c", f"zstd --quiet --stdout -{LEVEL} --single-thread | sha256sum"], stdin=tar.stdout,
                         capture_output=True, text=True, check=True).stdout
    tar.stdout.close()
    assert tar.wait() == 0
    return out.split()[0]


def _run_hook(hook: str, root: Path) -> None:
    proc.run(["sh", "-c", hook, "hook", str(root)])


def test_the_package_cache_hooks_copy_only_deb_files(tmp_path):
    require_root()
    require_tools("flock", "find")
    cache, root = tmp_path / "cache", tmp_path / "root"
    (cache / "partial").mkdir(parents=True)
    os.chown(cache / "partial", 42, 0)  # as apt's sandbox user (_apt) leaves it
    (cache / "lock").write_text("")
    (cache / "a_1_all.deb").write_bytes(b"a")
    lock = tmp_path / ".cache.lock"
    lock.write_text("")
    _run_hook(sync_in_hook(cache, lock), root)
    archives = root / "var/cache/apt/archives"
    assert sorted(p.name for p in archives.iterdir()) == ["a_1_all.deb"]
    (archives / "partial").mkdir()
    (archives / "b_2_all.deb").write_bytes(b"b")
    (archives / "a_1_all.deb").write_bytes(b"changed in the root")
    _run_hook(sync_out_hook(cache, lock), root)
    assert sorted(p.name for p in cache.iterdir()) == ["a_1_all.deb", "b_2_all.deb", "lock", "partial"]
    assert (cache / "a_1_all.deb").read_bytes() == b"a"  # a cached file is never rewritten under a reader
    assert (cache / "b_2_all.deb").read_bytes() == b"b"
    assert (cache / "partial").stat().st_uid == 42  # untouched: neither copied in nor out


def test_the_hooks_wait_for_the_cache_lock(tmp_path):
    require_tools("flock")
    cache, root, lock = tmp_path / "cache", tmp_path / "root", tmp_path / ".cache.lock"
    cache.mkdir()
    (cache / "a_1_all.deb").write_bytes(b"a")
    lock.write_text("")
    holder = subprocess.Popen(["flock", str(lock), "sh", "-c", "echo held; read line"], stdin=subprocess.PIPE,
                              stdout=subprocess.PIPE, text=True)
    try:
        assert holder.stdout.readline() == "held\n"
        hook = subprocess.Popen(["sh", "-c", sync_in_hook(cache, lock), "hook", str(root)])
        with pytest.raises(subprocess.TimeoutExpired):
            hook.wait(timeout=1)
        assert not (root / "var/cache/apt/archives/a_1_all.deb").exists()
        holder.stdin.write("go\n")
        holder.stdin.close()
        assert hook.wait(timeout=30) == 0
        assert (root / "var/cache/apt/archives/a_1_all.deb").read_bytes() == b"a"
    finally:
        holder.kill()
        holder.wait()
