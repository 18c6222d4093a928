"""The VM lab: qemu virtual machines that PXE-boot from the service (used by `metalstream vm`, the demo and e2e tests)."""
