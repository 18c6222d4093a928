"""The source files that make up the agent wherever it runs alone: this core package and `deployer`.

The installer environment copies them into its initramfs and `metalstream install --ssh` zips them
into one runnable file; both take the list from here, so neither can ship one without the other.
The packages are located, not imported: listing them runs none of their code.
"""
from __future__ import annotations

import hashlib
import importlib.util
from pathlib import Path

AGENT_PACKAGES = ("metalstream", "deployer")


def package_dir(name: str) -> Path:
    spec = importlib.util.find_spec(name)
    if spec is None or not spec.submodule_search_locations:
        raise ModuleNotFoundError(f"package {name!r} is not installed here", name=name)
    return Path(next(iter(spec.submodule_search_locations))).resolve()


def agent_sources() -> list[tuple[str, Path]]:
    """(name inside the package tree, e.g. `deployer/agent.py`; file on disk), sorted; no bytecode."""
    files = []
    for package in AGENT_PACKAGES:
        base = package_dir(package)
        for path in base.rglob("*"):
            if path.is_file() and "__pycache__" not in path.parts and path.suffix != ".pyc":
                files.append((f"{package}/{path.relative_to(base).as_posix()}", path))
    return sorted(files)


def sources_sha256(extra: list[tuple[str, Path]] = ()) -> str:
    """Digest of the agent's sources (and `extra` named files): it changes whenever what ships changes."""
    digest = hashlib.sha256()
    for name, path in [*agent_sources(), *extra]:
        digest.update(name.encode() + b"\0" + path.read_bytes() + b"\0")
    return digest.hexdigest()
