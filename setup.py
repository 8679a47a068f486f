"""qsm_jax's build entry point: every setting (dependencies, extras, console commands) is in
pyproject.toml; this file lets tools that call setup.py directly build the same package."""
from setuptools import setup

setup()
