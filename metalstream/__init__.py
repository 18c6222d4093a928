"""metalstream's shared core: errors and exit codes, the one subprocess runner, the `metalstream`
command's entry point, the version, human-readable units, writing inside another system's root,
and the contracts between the components (`metalstream.contracts`).

Standard library only (click aside, for the entry point): the installer environment and
`metalstream install --ssh` ship this package together with the agent (`deployer`).
"""
__version__ = "0.1.0"  # the package version (pyproject.toml reads it from here)
