"""pytest fixtures for the agent tests (imported by conftest.py)."""
