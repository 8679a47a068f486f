"""The critic ensemble: several critics as one tree stacked on a leading axis."""
from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax

Params = Any


def ensemble_init(critic: nn.Module, key: jax.Array, num: int, obs: jax.Array,
                  action: jax.Array) -> Params:
  """Initialises ``num`` independent critics as one tree stacked on axis 0."""
  return jax.vmap(critic.init, in_axes=(0, None, None))(jax.random.split(key, num), obs, action)


def ensemble_apply(critic: nn.Module, params: Params, obs: jax.Array,
                   action: jax.Array) -> jax.Array:
  """Q values of every critic in the ensemble: (num_critics, B)."""
  return jax.vmap(critic.apply, in_axes=(0, None, None))(params, obs, action)
