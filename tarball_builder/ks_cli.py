"""`metalstream ks`: lint, split and render kickstarts."""
from deployer.stub import placeholder

COMMANDS = [placeholder("ks", "Lint, split and render kickstarts.", 2)]
