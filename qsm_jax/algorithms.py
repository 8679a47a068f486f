"""The algorithms the training loop can run: QSM and its baselines SAC and TD3.

Each is three pure functions with one contract, so the loop, checkpoints, loading and
evaluation treat them alike:
  init(key, obs_dim, act_dim, config, hparams) -> state
  act(state, obs (B, O), key, explore=False) -> (B, A) actions in [-1, 1]
  update(state, batch, key, axis_name=None) -> (state, metrics)   # jitted
``act`` below dispatches on the state's type, so a loaded agent acts without its name.
"""
from __future__ import annotations

import math
from typing import Callable, NamedTuple, Optional

import jax

from qsm_jax.policy import sample_actions
from qsm_jax.sac import SACState, init_sac, sac_act, sac_update
from qsm_jax.state import QSMState, init_state
from qsm_jax.td3 import TD3State, init_td3, td3_act, td3_update, td3_update_pair
from qsm_jax.update import qsm_update


class Algorithm(NamedTuple):
  """One algorithm's pure functions (see the module docstring for the contract)."""
  name: str
  state_type: type
  init: Callable
  act: Callable
  update: Callable
  # Optional: two consecutive updates in one call, (state, batches (2, B, ...), keys (2,
  # ...), axis_name) -> (state, metrics); the loop uses it when it runs an even number of
  # updates per vectorised step (TD3: its delayed actor step without a select).
  update_pair: Optional[Callable] = None


ALGORITHMS = {
    "qsm": Algorithm("qsm", QSMState, init_state, sample_actions, qsm_update),
    "sac": Algorithm("sac", SACState, init_sac, sac_act, sac_update),
    "td3": Algorithm("td3", TD3State, init_td3, td3_act, td3_update, td3_update_pair),
}


def get_algorithm(name: str) -> Algorithm:
  """The algorithm called ``name`` ('qsm', 'sac' or 'td3'); ValueError otherwise."""
  if name not in ALGORITHMS:
    raise ValueError(f"unknown algorithm {name!r}; choose one of {', '.join(ALGORITHMS)}")
  return ALGORITHMS[name]


def check_temperature(algo: str, temperature: Optional[float]) -> None:
  """ValueError unless ``temperature`` is None or a valid setting of ``algo``'s policy:
  it scales QSM's DDPM sampler noise; SAC and TD3 have no sampler."""
  if temperature is None:
    return
  if algo != "qsm":
    raise ValueError(f"temperature is a setting of QSM's sampler; this is a {algo} policy")
  if not (math.isfinite(temperature) and temperature >= 0):  # nan fails both
    raise ValueError(f"temperature must be a finite number >= 0, got {temperature}")


def act(state, obs: jax.Array, key: jax.Array, explore: bool = False,
        temperature: Optional[float] = None) -> jax.Array:
  """Actions of any algorithm's state; ``temperature`` (the DDPM sampler's) is QSM's only."""
  for algorithm in ALGORITHMS.values():
    if isinstance(state, algorithm.state_type):
      check_temperature(algorithm.name, temperature)
      if algorithm.name == "qsm":
        return sample_actions(state, obs, key, explore=explore, temperature=temperature)
      return algorithm.act(state, obs, key, explore=explore)
  raise TypeError(f"not an agent state of qsm_jax: {type(state).__name__}")
