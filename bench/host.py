"""What the benchmarks do to this machine: fresh filesystems on loop devices, timed commands whose output
lines are timestamped, and the peak memory of a running process. Every command goes through metalstream.proc."""
from __future__ import annotations

import os
import subprocess
import threading
import time
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Iterator

from deployer.blockdev import loop_device, mounted  # the agent's direct-I/O loops: one medium for all
from metalstream import proc
from metalstream.errors import CommandError

SAMPLE_SECONDS = 0.02


def sparse_file(path: Path, size: int) -> Path:
    path.unlink(missing_ok=True)
    with open(path, "wb") as handle:
        handle.truncate(size)
    return path


@contextmanager
def fresh_ext4(image: Path, size: int, mountpoint: Path) -> Iterator[Path]:
    """A new sparse file of SIZE with an ext4 made the way the agent makes its root, mounted at MOUNTPOINT."""
    sparse_file(image, size)
    try:
        with loop_device(image) as device:
            proc.run(["mkfs.ext4", "-F", "-q", device])
            with mounted(device, mountpoint, "ext4") as root:
                yield root
    finally:
        image.unlink(missing_ok=True)


def settle() -> None:
    """Write back what earlier runs left dirty, so it is not billed to the next run."""
    proc.run(["sync"], timeout=600)


def warm(path: Path) -> None:
    """Read a file once so every contender starts with it in the page cache."""
    with open(path, "rb") as handle:
        while handle.read(1 << 22):
            pass


@dataclass
class TimedRun:
    seconds: float
    lines: list[tuple[float, str]]  # (seconds since start, line)
    peak_rss_mib: float | None = None  # VmHWM of the process itself
    peak_tree_rss_mib: float | None = None  # the largest sum of VmRSS over it and its children


class _RssSampler(threading.Thread):
    def __init__(self, pid: int):
        super().__init__(daemon=True)
        self.pid = pid
        self.hwm_kib = 0
        self.tree_kib = 0
        self.stop = threading.Event()

    def run(self) -> None:
        while not self.stop.is_set():
            self.hwm_kib = max(self.hwm_kib, _status_kib(self.pid, "VmHWM"))
            self.tree_kib = max(self.tree_kib, sum(_status_kib(p, "VmRSS") for p in _tree(self.pid)))
            time.sleep(SAMPLE_SECONDS)


def _status_kib(pid: int, key: str) -> int:
    try:
        with open(f"/proc/{pid}/status") as handle:
            for line in handle:
                if line.startswith(key + ":"):
                    return int(line.split()[1])
    except (FileNotFoundError, ProcessLookupError, ValueError):
        pass
    return 0


def _tree(pid: int) -> list[int]:
    pids, todo = [], [pid]
    while todo:
        current = todo.pop()
        pids.append(current)
        try:
            with open(f"/proc/{current}/task/{current}/children") as handle:
                todo += [int(c) for c in handle.read().split()]
        except (FileNotFoundError, ProcessLookupError):
            pass
    return pids


def timed(argv: list[str], *, env: dict[str, str] | None = None, sample_rss: bool = False,
          echo=None) -> TimedRun:
    """Run argv to completion (checked), timestamping each output line; optionally sample its memory.
    The process stays unreaped until sampling stopped, so its last VmHWM is read."""
    started = time.monotonic()
    child = proc.spawn(argv, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, env=env)
    sampler = _RssSampler(child.pid) if sample_rss else None
    if sampler:
        sampler.start()
    lines: list[tuple[float, str]] = []
    try:
        for raw in child.stdout:
            line = raw.decode(errors="replace").rstrip("\n")
            lines.append((time.monotonic() - started, line))
            if echo:
                echo(f"    {line}")
        if sampler:  # stdout closed: the process is exiting; one more sample, then reap it
            sampler.stop.set()
            sampler.join()
        child.stdout.close()
        child.stdout = None
        try:
            proc.wait_checked(child, timeout=3600)
        except CommandError as exc:
            tail = "\n".join(line for _, line in lines[-30:])
            raise CommandError(exc.argv, exc.returncode, tail, timed_out=exc.timed_out) from exc
    except BaseException:
        proc.terminate(child)
        raise
    finally:
        if sampler:
            sampler.stop.set()
    seconds = time.monotonic() - started
    run = TimedRun(seconds, lines)
    if sampler:
        run.peak_rss_mib = round(sampler.hwm_kib / 1024, 1)
        run.peak_tree_rss_mib = round(sampler.tree_kib / 1024, 1)
    return run


def machine() -> dict:
    uname = os.uname()
    with open("/proc/meminfo") as handle:
        mem_kib = int(handle.readline().split()[1])
    model = ""
    with open("/proc/cpuinfo") as handle:
        for line in handle:
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    return {"cpus": os.cpu_count(), "cpu_model": model, "memory_gib": round(mem_kib / 2**20, 1),
            "kernel": uname.release}
