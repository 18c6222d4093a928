"""pytest fixtures for the pxe tests (imported by conftest.py)."""
