"""Backends: one per distribution family. Imported lazily so a broken one cannot break the other."""
from __future__ import annotations

import importlib

from metalstream.errors import BadInput

from ..context import Backend

_BACKENDS = {
    "debian": ("tarball_builder.backends.debian", "DebianBackend"),
    "rpm": ("tarball_builder.backends.rpm", "RpmBackend"),
}


def backend_for(family: str) -> Backend:
    """The Backend for a distribution family ("debian" or "rpm")."""
    if family not in _BACKENDS:
        raise BadInput(f"unknown distribution family {family!r} (one of: {', '.join(_BACKENDS)})")
    module_name, class_name = _BACKENDS[family]
    module = importlib.import_module(module_name)
    return getattr(module, class_name)()
