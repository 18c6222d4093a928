"""CLI commands of the VM lab: `vm` and `demo` (the end-to-end main job)."""
from .stub import placeholder

COMMANDS = [
    placeholder("vm", "Manage lab VMs (qemu) that PXE-boot from the service.", 6),
    placeholder("demo", "Build, serve and deploy an image to a lab VM, end to end, with a phase table.", 6),
]
