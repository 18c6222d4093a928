"""CLI commands of the tarball builder: `ks` (lint, render) and `build`."""
from deployer.stub import placeholder

COMMANDS = [
    placeholder("ks", "Lint, split and render kickstarts.", 2),
    placeholder("build", "Build an OS image (tar.zst + manifest) or the installer environment from a kickstart.", 3),
]
