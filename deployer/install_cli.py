"""`metalstream install`: the same install the agent does, onto a block device or a disk image file."""
from .stub import placeholder

COMMANDS = [placeholder("install", "Install an image onto a block device or a disk image file on this machine.", 5)]
