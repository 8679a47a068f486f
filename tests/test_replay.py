import jax
import jax.numpy as jnp
import numpy as np
import pytest

from qsm_jax.replay import replay_add, replay_init, replay_sample


def _rows(start, n):
  ids = jnp.arange(start, start + n, dtype=jnp.float32)
  return {"x": ids, "v": jnp.stack([ids, -ids], axis=1)}


def test_ring_buffer_add_wraps_and_counts():
  state = replay_init({"x": jnp.zeros(()), "v": jnp.zeros(2)}, capacity=6)
  add = jax.jit(replay_add)
  state = add(state, _rows(0, 3))
  assert int(state.size) == 3 and int(state.position) == 3
  np.testing.assert_array_equal(state.data["x"], [0, 1, 2, 0, 0, 0])
  state = add(add(state, _rows(3, 3)), _rows(6, 3))  # the third add overwrites the oldest
  assert int(state.size) == 6 and int(state.position) == 3
  np.testing.assert_array_equal(state.data["x"], [6, 7, 8, 3, 4, 5])
  np.testing.assert_array_equal(state.data["v"][:, 1], -state.data["x"])


def test_sample_only_valid_rows_and_keeps_rows_together():
  state = replay_add(replay_init({"x": jnp.zeros(()), "v": jnp.zeros(2)}, capacity=100),
                     _rows(10, 4))
  batch = jax.jit(replay_sample, static_argnums=2)(state, jax.random.PRNGKey(0), (3, 50))
  assert batch["x"].shape == (3, 50) and batch["v"].shape == (3, 50, 2)
  assert set(np.unique(batch["x"]).tolist()) == {10.0, 11.0, 12.0, 13.0}  # no empty rows
  np.testing.assert_array_equal(batch["v"][..., 0], batch["x"])
  again = replay_sample(state, jax.random.PRNGKey(0), (3, 50))
  np.testing.assert_array_equal(again["x"], batch["x"])  # the key is the only randomness


def test_bad_sizes_are_rejected():
  with pytest.raises(ValueError, match="positive"):
    replay_init({"x": jnp.zeros(())}, capacity=0)
  state = replay_init({"x": jnp.zeros(())}, capacity=10)
  with pytest.raises(ValueError, match="multiple"):
    replay_add(state, {"x": jnp.zeros(3)})
