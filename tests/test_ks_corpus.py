"""Broken kickstarts through the real CLI: each must fail with exit 2 and one located, named error.

Every file in tests/data/ks/broken/ starts with `# expect: [FILE:]LINE: FRAGMENT`; FILE (relative
to that folder) defaults to the kickstart itself, for problems inside %include'd files.
"""
from __future__ import annotations

import os
import re
import subprocess
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path

import pytest

from conftest import REPO, run_cli

BROKEN = REPO / "tests" / "data" / "ks" / "broken"
EXPECT = re.compile(r"^# expect: (?:(?P<file>[^:\s]+):)?(?P<line>\d+): (?P<fragment>.+)$")


def _cases() -> list[Path]:
    return sorted([*BROKEN.glob("*.ks"), *BROKEN.glob("*.ks.j2")])


@pytest.fixture(scope="module")
def lint_results() -> dict[Path, subprocess.CompletedProcess]:
    """`metalstream ks lint FILE`, one real CLI process per file, run a few at a time (startup dominates)."""
    cases = _cases()
    with ThreadPoolExecutor(max_workers=os.cpu_count() or 2) as pool:
        results = pool.map(lambda path: run_cli("ks", "lint", str(path.relative_to(REPO))), cases)
        return dict(zip(cases, results))


def test_corpus_is_big_enough() -> None:
    assert len(_cases()) >= 20


@pytest.mark.parametrize("kickstart", _cases(), ids=lambda p: p.stem)
def test_broken_kickstart_is_rejected_with_a_located_error(kickstart: Path, lint_results) -> None:
    expect = EXPECT.match(kickstart.read_text().splitlines()[0])
    assert expect, f"{kickstart.name}: first line must be `# expect: [FILE:]LINE: FRAGMENT`"
    shown = kickstart.relative_to(REPO)
    where = shown.parent / expect["file"] if expect["file"] else shown

    result = lint_results[kickstart]

    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stdout + result.stderr
    errors = [line for line in result.stderr.splitlines() if ": error: " in line]
    assert errors, result.stderr
    prefix = f"{where}:{expect['line']}: error: "
    matching = [line for line in errors if line.startswith(prefix) and expect["fragment"] in line]
    assert matching, f"no error `{prefix}...{expect['fragment']}` in:\n{result.stderr}"
    assert len(errors) == 1, f"expected exactly the one error, got:\n{result.stderr}"
