"""Thin entry point: the code and its usage are in qsm_jax/cli/train.py."""
from qsm_jax.cli import train as _command

__doc__ = _command.__doc__  # absl's --help prints the main module's docstring

if __name__ == "__main__":
  _command.run()
