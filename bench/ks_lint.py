"""Linting many kickstarts: `metalstream ks lint` on all files in one call versus pykickstart's own
`ksvalidator` run once per file (how it is used in CI loops), on the same files, in the same run."""
from __future__ import annotations

import shutil
import sys
import time
from pathlib import Path

from metalstream import proc

REPO = Path(__file__).resolve().parents[1]
FILES = 100
SOURCES = ("kickstarts/*.ks", "tests/data/ks/broken/*.ks", "tests/data/build/*.ks")


def kickstart_sources() -> list[Path]:
    """The repository's plain kickstarts that stand alone (no %include: a copy could not find its files)."""
    found = sorted(path for pattern in SOURCES for path in REPO.glob(pattern))
    return [path for path in found if "%include" not in path.read_text()]


def make_corpus(dest: Path, count: int = FILES) -> list[Path]:
    """`count` kickstarts in `dest`: the sources in turn, each copy made distinct by a first comment line."""
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    sources = kickstart_sources()
    files = []
    for index in range(count):
        source = sources[index % len(sources)]
        target = dest / f"{index:03d}-{source.name}"
        target.write_text(f"# bench copy {index} of {source.relative_to(REPO)}\n" + source.read_text())
        files.append(target)
    return files


def metalstream_once(files: list[Path]) -> float:
    """Seconds for one `metalstream ks lint` process over every file (exit 2 is expected: some are broken)."""
    started = time.monotonic()
    result = proc.run([sys.executable, "-m", "metalstream", "ks", "lint", *files], check=False, timeout=600)
    seconds = time.monotonic() - started
    if result.returncode not in (0, 2) or result.stderr.count(": ok (") + result.stderr.count(": FAILED (") != len(files):
        raise RuntimeError(f"metalstream ks lint did not check every file (exit {result.returncode}):\n"
                           f"{result.stderr[-2000:]}")
    return seconds


def ksvalidator_once(files: list[Path]) -> float:
    """Seconds for `ksvalidator FILE`, one process per file, one after the other."""
    ksvalidator = Path(sys.executable).parent / "ksvalidator"
    started = time.monotonic()
    for path in files:
        result = proc.run([ksvalidator, path], check=False, timeout=600)
        if result.returncode not in (0, 1):
            raise RuntimeError(f"ksvalidator {path} failed (exit {result.returncode}): {result.stderr[-2000:]}")
    return time.monotonic() - started


def bench_ks_lint(runs: int, work: Path, echo, count: int = FILES) -> dict:
    from .stats import figure, goal, ratio

    files = make_corpus(work / "ks-lint", count)
    echo(f"ks_lint: {len(files)} kickstarts, metalstream ks lint (one call) vs ksvalidator (one per file)")
    ours, theirs = [], []
    for index in range(runs):
        ours.append(metalstream_once(files))
        theirs.append(ksvalidator_once(files))
        echo(f"  run {index + 1}/{runs}: metalstream {ours[-1]:.2f} s, ksvalidator {theirs[-1]:.2f} s")
    ours_fig, theirs_fig = figure(ours), figure(theirs)
    shutil.rmtree(work / "ks-lint", ignore_errors=True)
    value = ratio(ours_fig, theirs_fig)
    return {"files": len(files), "metalstream_seconds": ours_fig, "ksvalidator_seconds": theirs_fig,
            "ratio": value, **goal(value, "<=", 1.5)}
