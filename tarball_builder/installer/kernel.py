"""Find the kernel of an installer root: its version, its image and its module tree."""
from __future__ import annotations

import re
from pathlib import Path

from metalstream.errors import BadInput

from .modules import ModuleTree, parse_tree
from .trim import modules_dir


def _version_key(version: str) -> list[tuple[int, str]]:
    return [(int(part), "") if part.isdigit() else (-1, part) for part in re.split(r"[.\-+~]", version)]


def find_kernel(root: Path, *, where: str = "%packages") -> tuple[str, Path]:
    """(version, path of /boot/vmlinuz-VERSION) of the newest kernel that has a module tree.

    `where` names the kickstart location to blame when there is none (BadInput: the kickstart
    forgot a kernel package).
    """
    mods = root / modules_dir(root)
    found = []
    for image in root.glob("boot/vmlinuz-*"):
        version = image.name.removeprefix("vmlinuz-")
        if (mods / version / "modules.dep").is_file():
            found.append((version, image))
    if not found:
        raise BadInput("the installer root has no kernel (no /boot/vmlinuz-* with its modules.dep): "
                       "add linux-image-amd64 to %packages", location=where)
    return max(found, key=lambda item: _version_key(item[0]))


def read_module_tree(root: Path, version: str) -> ModuleTree:
    tree = root / modules_dir(root) / version

    def text(name: str) -> str:
        path = tree / name
        return path.read_text(errors="replace") if path.is_file() else ""

    return parse_tree(text("modules.dep"), text("modules.softdep"), text("modules.alias"))
