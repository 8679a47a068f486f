"""Shared test helpers: tiny configs so the whole suite runs in minutes on 2 CPU cores."""
import jax
import jax.numpy as jnp
import pytest

import qsm_jax as q

TINY = q.QSMConfig(actor_hidden=(32, 32), time_hidden=(16, 16), fourier_size=8,
                   critic_hidden=(32, 32))


def random_batch(key, batch_size, obs_dim, act_dim):
  k = jax.random.split(key, 5)
  return q.Batch(
      obs=jax.random.normal(k[0], (batch_size, obs_dim)),
      action=jax.random.uniform(k[1], (batch_size, act_dim), minval=-1, maxval=1),
      reward=jax.random.normal(k[2], (batch_size,)),
      next_obs=jax.random.normal(k[3], (batch_size, obs_dim)),
      mask=(jax.random.uniform(k[4], (batch_size,)) > 0.1).astype(jnp.float32),
  )


@pytest.fixture
def tiny_config():
  return TINY
