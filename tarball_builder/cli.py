"""CLI commands of the tarball builder: `ks` (lint, render) and `build`."""
from .build_cli import COMMANDS as BUILD_COMMANDS
from .ks_cli import COMMANDS as KS_COMMANDS

COMMANDS = [*KS_COMMANDS, *BUILD_COMMANDS]
