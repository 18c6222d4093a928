"""What every build stage receives: the parsed kickstart, the root being built, options, and what was learnt.

A build is an ordered list of stages (tarball_builder.stages); each reads and extends one BuildContext.
Stages record facts for the manifest in `ctx.facts` (packages, kernels, bootloader support, sizes).
"""
from __future__ import annotations

import logging
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

from .spec import SplitKickstart


@dataclass
class BuildOptions:
    output_dir: Path
    name: str
    image_format: str = "tarball"  # "tarball" (OS image) | "installer" (kernel + initramfs)
    cache_dir: Path = Path("/var/cache/metalstream")
    use_cache: bool = True  # the package cache (tarball_builder.cache)
    reuse: bool = True  # reuse the previous build when its inputs are unchanged (tarball_builder.reuse)
    zstd_level: int = 10
    zstd_threads: int = 0  # 0 = one per core
    source_date_epoch: int | None = None  # None = derived from the kickstart's sha256
    keep_root: bool = False  # keep the build root after packing (debugging)
    ca_file: Path | None = None  # installer only: CA certificate the agent pins (metalstream.tls.INSTALLER_CA_PATH)


@dataclass
class BuildContext:
    kickstart: SplitKickstart
    options: BuildOptions
    root: Path  # the directory the OS is installed into
    workdir: Path  # scratch space for this build, removed at the end
    source_date_epoch: int
    facts: dict[str, Any] = field(default_factory=dict)
    log: logging.Logger = field(default_factory=lambda: logging.getLogger("metalstream.build"))

    @property
    def build(self):
        return self.kickstart.build


class Stage(Protocol):
    """One step of a build. `name` is short (shown in progress), `description` is a human sentence."""

    name: str
    description: str

    def run(self, ctx: BuildContext) -> None: ...


class Backend(Protocol):
    """A distribution family's own tools: how to install packages into a root and read what is there."""

    family: str

    def install(self, ctx: BuildContext) -> None:
        """Install the kickstart's packages into ctx.root (from repos or the machine's own sources)."""

    def installed_packages(self, ctx: BuildContext) -> list[dict[str, str]]:
        """[{"name", "version", "arch"}] sorted by name, read from the root's package database."""

    def initramfs_argv(self, kernel_version: str) -> list[str]:
        """Command (run inside the root) that writes a generic, not host-only, initramfs for one kernel."""

    def initramfs_path(self, kernel_version: str) -> str:
        """Absolute path inside the root where that initramfs ends up."""

    def cache_globs(self) -> list[str]:
        """Paths (relative to the root, glob patterns) of package caches that must not ship."""

    def repository_metadata(self, kickstart: SplitKickstart) -> dict:
        """For the image cache key: {"sources": the repository definitions as text,
        "metadata": [tarball_builder.reuse.Metadata]} (one per repository's metadata file)."""
