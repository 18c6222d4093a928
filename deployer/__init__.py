"""metalstream deployer: the agent that puts an image onto a disk.

It also holds the few primitives every metalstream component shares (errors, running
subprocesses), because the deployer is the one package shipped alone inside the installer
environment and so must not depend on the others.
"""
__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
