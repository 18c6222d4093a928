"""CLI commands of the deployer: `install` (this machine, a disk image, or over SSH) and `agent`."""
from .agent_cli import COMMANDS as AGENT_COMMANDS
from .install_cli import COMMANDS as INSTALL_COMMANDS

COMMANDS = [*INSTALL_COMMANDS, *AGENT_COMMANDS]
