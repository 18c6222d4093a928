"""Stage `pack`: the root becomes a reproducible NAME.tar.zst, hashed while it is written.

GNU tar → zstd, both checked: entries sorted by name, POSIX (pax) format with deterministic extended
header names and no atime/ctime, mtimes clamped to SOURCE_DATE_EPOCH, the root's real numeric owners,
every xattr (security.selinux, security.capability, ...) and ACLs, hard links as hard links.
Python sits between the two to count the uncompressed bytes, and after zstd to hash and write the file.
"""
from __future__ import annotations

import hashlib
import os
import subprocess
import threading
from pathlib import Path

from metalstream import proc

from ..context import BuildContext

CHUNK = 1 << 20


def tar_argv(root: Path, epoch: int) -> list[str]:
    return ["tar", "--create", "--file=-", "--directory", str(root),
            "--sort=name", "--format=posix",
            "--pax-option=exthdr.name=%d/PaxHeaders/%f,delete=atime,delete=ctime",
            f"--mtime=@{epoch}", "--clamp-mtime", "--numeric-owner",
            "--xattrs", "--xattrs-include=*", "--acls",
            "--warning=no-file-ignored", "."]


def zstd_argv(level: int, threads: int) -> list[str]:
    """Always zstd's multithreaded mode (-T0: a worker per core): its frames do not depend on the number
    of workers, so any thread count gives the same bytes. Never --single-thread, whose frames differ."""
    return ["zstd", "--quiet", "--stdout", *(["--ultra"] if level > 19 else []), f"-{level}", f"-T{threads}"]


class PackStage:
    name = "pack"
    description = "pack the root into a reproducible tar.zst"

    def run(self, ctx: BuildContext) -> None:
        options = ctx.options
        target = options.output_dir / f"{options.name}.tar.zst"
        partial = ctx.workdir / target.name
        ctx.facts["file_count"] = count_entries(ctx.root)
        sha256, size, uncompressed = pack(ctx.root, partial, ctx.source_date_epoch,
                                          options.zstd_level, options.zstd_threads)
        os.replace(partial, target)
        ctx.facts["tarball"] = {"path": target, "sha256": sha256, "size": size, "uncompressed_size": uncompressed}
        ctx.log.info("packed %s: %d bytes (%d uncompressed), sha256 %s", target, size, uncompressed, sha256)


def count_entries(root: Path) -> int:
    """Entries the tarball will hold besides `./` itself: directories, files, links, special files."""
    count = 0
    for _, dirnames, filenames in os.walk(root):
        count += len(dirnames) + len(filenames)
    return count


def pack(root: Path, target: Path, epoch: int, level: int, threads: int) -> tuple[str, int, int]:
    """Write root as tar.zst to target; return (sha256, compressed size, uncompressed size)."""
    tar = proc.spawn(tar_argv(root, epoch), stdout=subprocess.PIPE)
    zstd = proc.spawn(zstd_argv(level, threads), stdin=subprocess.PIPE, stdout=subprocess.PIPE)
    counted = {"bytes": 0}
    pump_error: list[BaseException] = []

    def pump() -> None:  # tar → zstd, counting the uncompressed stream
        try:
            while chunk := tar.stdout.read(CHUNK):
                counted["bytes"] += len(chunk)
                zstd.stdin.write(chunk)
        except BaseException as exc:  # a broken pipe here means zstd died; its own status says why
            pump_error.append(exc)
        finally:
            try:
                zstd.stdin.close()
            except OSError:
                pass

    pumper = threading.Thread(target=pump, name="tar-to-zstd", daemon=True)
    pumper.start()
    digest = hashlib.sha256()
    size = 0
    try:
        with open(target, "wb") as out:
            while chunk := zstd.stdout.read(CHUNK):
                digest.update(chunk)
                out.write(chunk)
                size += len(chunk)
            out.flush()
            os.fsync(out.fileno())
        pumper.join()
        _detach_pipes(tar, zstd)
        proc.wait_checked(tar)
        proc.wait_checked(zstd)
    except BaseException:
        for child in (tar, zstd):
            if child.poll() is None:
                child.kill()
            child.wait()
        pumper.join(timeout=5)
        raise
    if pump_error:
        raise pump_error[0]
    return digest.hexdigest(), size, counted["bytes"]


def _detach_pipes(tar, zstd) -> None:
    """Close the pipes this process pumped by hand, so wait_checked only collects exit status and stderr."""
    tar.stdout.close()
    tar.stdout = None
    zstd.stdin = None
    zstd.stdout.close()
    zstd.stdout = None
