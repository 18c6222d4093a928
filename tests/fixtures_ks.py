"""pytest fixtures for the ks tests (imported by conftest.py)."""
