"""CLI commands of the PXE/HTTP service."""
from deployer.stub import placeholder

COMMANDS = [
    placeholder("serve", "Run the PXE/HTTP service (REST API, boot configs, images) under gunicorn.", 4),
    placeholder("image", "Register, list, show and delete images in the service.", 4),
    placeholder("token", "Create and revoke API bearer tokens.", 4),
    placeholder("dnsmasq-config", "Print a proxy-DHCP dnsmasq configuration that chains PXE clients to the service.", 4),
]
