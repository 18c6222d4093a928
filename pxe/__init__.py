"""metalstream PXE/HTTP service: REST API, per-MAC boot configs, image serving, agent endpoints."""
