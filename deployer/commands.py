"""CLI commands of the deployer agent: `agent` (in the installer environment) and `install`."""
from .stub import placeholder

COMMANDS = [
    placeholder("agent", "Run the deployer agent: fetch the plan from the service, install, report.", 5),
    placeholder("install", "Install an image onto a block device or a disk image file on this machine.", 5),
]
