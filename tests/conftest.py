"""Shared pytest fixtures and helpers for metalstream's tests."""
from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
METALSTREAM = [sys.executable, "-m", "deployer"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `metalstream` command line in a child process and capture its output."""
    return subprocess.run([*METALSTREAM, *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout)


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts); CI runs as root")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: run `bash .ci/setup`, which installs them")


# Each component keeps its fixtures in its own module; importing them here makes them visible to every test.
from fixtures_ks import *  # noqa: E402,F401,F403
from fixtures_build import *  # noqa: E402,F401,F403
from fixtures_pxe import *  # noqa: E402,F401,F403
from fixtures_agent import *  # noqa: E402,F401,F403
