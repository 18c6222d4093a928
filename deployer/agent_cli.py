"""`metalstream agent`: what the installer environment runs: fetch the plan, install, report."""
from .stub import placeholder

COMMANDS = [placeholder("agent", "Run the deployer agent: fetch the plan from the service, install, report.", 5)]
