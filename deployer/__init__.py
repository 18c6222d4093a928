"""metalstream deployer: the agent that puts an image onto a disk.

It also holds the few primitives every metalstream component shares (errors, running
subprocesses), because the deployer is the one package shipped alone inside the installer
environment and so must not depend on the others.
"""
from importlib import metadata

try:
    __version__ = metadata.version("metalstream")
except metadata.PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+src"
