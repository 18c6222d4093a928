"""Write the EFI system partition with mtools, without mounting it (this host cannot mount vfat, and
the installer environment need not either). `device` is the ESP's partition node or offset loop device.
"""
from __future__ import annotations

import os
from pathlib import Path, PurePosixPath

from metalstream import proc

_ENV = {"MTOOLS_SKIP_CHECK": "1", "MTOOLS_NO_VFAT": "0"}


class Esp:
    def __init__(self, device: str):
        self.device = device
        self._dirs: set[str] = {"/"}

    def _run(self, *argv: str) -> str:
        return proc.run([argv[0], "-i", self.device, *argv[1:]], env=_ENV).stdout

    def mkdirs(self, path: str) -> None:
        """mkdir -p inside the ESP."""
        current = PurePosixPath("/")
        for part in PurePosixPath(path).parts[1:]:
            current = current / part
            if str(current) in self._dirs:
                continue
            if not self.exists(str(current)):
                self._run("mmd", f"::{current}")
            self._dirs.add(str(current))

    def exists(self, path: str) -> bool:
        return proc.run(["mdir", "-i", self.device, "-b", f"::{path}"], env=_ENV, check=False).returncode == 0

    def put_file(self, source: Path, dest: str) -> None:
        """Copy one file to `dest` (a path in the ESP), creating parent directories, replacing an old copy."""
        self.mkdirs(str(PurePosixPath(dest).parent))
        self._run("mcopy", "-o", "-p", "-Q", os.fspath(source), f"::{dest}")

    def put_tree(self, source: Path, dest: str = "/") -> int:
        """Copy the contents of directory `source` into `dest`; returns the number of files copied."""
        count = 0
        for dirpath, dirnames, filenames in os.walk(source):
            dirnames.sort()
            rel = PurePosixPath(dest) / Path(dirpath).relative_to(source).as_posix()
            self.mkdirs(str(rel))
            for name in sorted(filenames):
                self.put_file(Path(dirpath) / name, str(rel / name))
                count += 1
        return count

    def delete(self, path: str) -> None:
        """Remove one file from the ESP."""
        self._run("mdel", f"::{path}")

    def read(self, path: str) -> bytes:
        return proc.run(["mtype", "-i", self.device, f"::{path}"], env=_ENV, binary=True).stdout
