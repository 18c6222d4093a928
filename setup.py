"""metalstream: packaging metadata lives in pyproject.toml; this file keeps `setup.py`-based tooling working."""
from setuptools import setup

setup()
