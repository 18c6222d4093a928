"""Shared pytest fixtures and helpers for metalstream's tests."""
from __future__ import annotations

import base64
import os
import random
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parent.parent
METALSTREAM = [sys.executable, "-m", "metalstream"]


def run_cli(*args: str, cwd: Path | None = None, timeout: float = 600) -> subprocess.CompletedProcess:
    """Run the real `metalstream` command line in a child process and capture its output."""
    return subprocess.run([*METALSTREAM, *args], capture_output=True, text=True, cwd=cwd or REPO, timeout=timeout)


def public_key_line(comment: str = "ops@example", key_type: str = "ssh-ed25519", seed: int = 1) -> str:
    """An OpenSSH public key line whose key blob is well formed for its type (random key material)."""
    name = key_type.encode()
    material = random.Random(seed).randbytes(32 if key_type == "ssh-ed25519" else 64)
    blob = len(name).to_bytes(4, "big") + name + len(material).to_bytes(4, "big") + material
    return f"{key_type} {base64.b64encode(blob).decode()} {comment}"


def require_root() -> None:
    if os.geteuid() != 0:
        pytest.skip("needs root (loop devices, mounts); CI runs as root")


def require_tools(*tools: str) -> None:
    missing = [t for t in tools if shutil.which(t) is None]
    if missing:
        pytest.fail(f"missing tools {missing}: run `bash .ci/setup`, which installs them")


# Each component keeps its fixtures in its own module; registered here, they are visible to every test
# (a test imports from them only the helpers that are not fixtures).
pytest_plugins = ["fixtures_ks", "fixtures_build", "fixtures_pxe", "fixtures_agent", "fixtures_stream",
                  "fixtures_installer", "fixtures_rpm", "fixtures_e2e", "fixtures_bmc"]
