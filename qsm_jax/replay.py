"""On-device uniform replay: a ring buffer as a pure init / add / sample pytree.

Why not Brax's ``UniformSamplingQueue``: it keeps the sampling key inside the buffer
state and, once full, makes room by ``jnp.roll``-ing the whole storage on every insert
(O(capacity) per add: 256 MB of copying per vectorised env step for a 1M-transition ant
buffer). A ring buffer overwrites in place, takes the key as an argument, and vmaps over
seeds and shards over devices like any other pytree.
"""
from __future__ import annotations

from typing import Any

import chex
import flax.struct
import jax
import jax.numpy as jnp


@flax.struct.dataclass
class ReplayState:
  """Storage (capacity, ...) for every leaf of a transition, write position and fill."""
  data: Any
  position: jax.Array  # next write index, int32
  size: jax.Array      # number of valid rows, int32


def replay_init(example: Any, capacity: int) -> ReplayState:
  """Empty buffer whose rows look like ``example`` (one transition, unbatched)."""
  if capacity < 1:
    raise ValueError(f"replay capacity must be positive, got {capacity}")
  data = jax.tree.map(lambda x: jnp.zeros((capacity, *jnp.shape(x)), jnp.asarray(x).dtype),
                      example)
  return ReplayState(data=data, position=jnp.zeros((), jnp.int32), size=jnp.zeros((), jnp.int32))


def replay_add(state: ReplayState, batch: Any) -> ReplayState:
  """Writes a batch of N transitions (leading axis N) at the ring position.

  The capacity must be a multiple of N (the training loop guarantees it), so a write
  never straddles the end and is one ``dynamic_update_slice`` per leaf.
  """
  chex.assert_trees_all_equal_structs(state.data, batch)
  n = jax.tree.leaves(batch)[0].shape[0]
  capacity = jax.tree.leaves(state.data)[0].shape[0]
  if capacity % n:
    raise ValueError(f"replay capacity {capacity} must be a multiple of the insert size {n}")

  def write(store, rows):
    chex.assert_equal(store.shape[1:], rows.shape[1:])
    start = (state.position,) + (0,) * (store.ndim - 1)
    return jax.lax.dynamic_update_slice(store, rows.astype(store.dtype), start)

  data = jax.tree.map(write, state.data, batch)
  return ReplayState(data=data, position=(state.position + n) % capacity,
                     size=jnp.minimum(state.size + n, capacity))


def replay_sample(state: ReplayState, key: jax.Array, shape: tuple[int, ...]) -> Any:
  """Uniformly samples rows with replacement among the valid ones; leading dims ``shape``."""
  idx = jax.random.randint(key, shape, 0, jnp.maximum(state.size, 1))
  return jax.tree.map(lambda store: store[idx], state.data)
