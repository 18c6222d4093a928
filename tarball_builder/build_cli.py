"""`metalstream build`: kickstart in, image (or installer environment) out."""
from deployer.stub import placeholder

COMMANDS = [placeholder("build", "Build an OS image (tar.zst + manifest) or the installer environment from a kickstart.", 3)]
