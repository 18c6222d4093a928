"""pytest fixtures for the build tests (imported by conftest.py)."""
