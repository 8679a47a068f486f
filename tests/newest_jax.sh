#!/usr/bin/env bash
# The core tests again on the NEWEST versions pyproject.toml allows (constraints-newest.txt:
# jax 0.10.2, flax 0.12.8, mujoco 4.0.1), in a second virtualenv, .venv-newest: CI checks
# both ends of the range (the main suite runs on constraints.txt, the oldest). Core: the
# update, losses, diffusion, networks, replay, the public API (imports included), the
# generated flags, and the on-device loop's wrappers and compile-once check on Brax.
set -euo pipefail
cd "$(dirname "$0")/.."
python3 -m venv .venv-newest
.venv-newest/bin/pip install -q -e '.[plot]' pytest pytest-xdist -c constraints-newest.txt
.venv-newest/bin/python -c "import jax, flax; print(f'newest: jax {jax.__version__}, flax {flax.__version__}')"
.venv-newest/bin/python -m pytest -n 2 -q tests/test_api.py tests/test_losses.py \
    tests/test_diffusion.py tests/test_networks.py tests/test_replay.py tests/test_config_flags.py \
    tests/test_training.py -k "not learns and not sweep and not saved_before"
