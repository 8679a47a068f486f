"""Shared test helpers: tiny configs so the whole suite runs in minutes on 2 CPU cores."""
import os
import tempfile

# JAX's persistent compilation cache, shared by both xdist workers and every subprocess a
# test starts (they inherit the environment): many tests compile the same tiny training
# chunk (runs, their resumes, the scripts), and compiling dominates their time. Set
# before jax is imported; a JAX_COMPILATION_CACHE_DIR already set is kept.
os.environ.setdefault("JAX_COMPILATION_CACHE_DIR",
                      os.path.join(tempfile.gettempdir(), "qsm_jax_test_jit_cache"))
# Cache every program, not only those that took a second to compile (JAX's default): a
# run compiles about 130 small ones (inits, resets, metrics). Measured: a warm tiny run
# 23.9 -> 22.5 s; test_run_script + test_dmc from a cold cache, 234 s either way.
os.environ.setdefault("JAX_PERSISTENT_CACHE_MIN_COMPILE_TIME_SECS", "0")
# Most tests compile tiny programs and run them for a fraction of a second: XLA's
# optimisation passes cost more than they save there (a tiny training run: 31 s instead
# of 46 s). Tests marked `optimized` (the learning tests, whose thresholds were measured
# on optimised programs and which run thousands of updates) get the full compiler.
os.environ.setdefault("JAX_DISABLE_MOST_OPTIMIZATIONS", "1")
# A cached CPU executable makes XLA log an ERROR line about tuning flags of the machine
# that compiled it (prefer-no-gather, -scatter), this very machine: keep stderr clean.
os.environ.setdefault("TF_CPP_MIN_LOG_LEVEL", "3")

import jax  # noqa: E402  pylint: disable=wrong-import-position
import jax.numpy as jnp  # noqa: E402  pylint: disable=wrong-import-position
import pytest  # noqa: E402  pylint: disable=wrong-import-position

import qsm_jax as q  # noqa: E402  pylint: disable=wrong-import-position

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


def uniform_bandit_batch(key, size, obs_dim, act_dim):
  """A one-step bandit batch for a frozen known critic: obs and actions uniform in
  [-1, 1], reward 0, next_obs = obs, mask 0."""
  k1, k2 = jax.random.split(key)
  obs = jax.random.uniform(k1, (size, obs_dim), minval=-1, maxval=1)
  act = jax.random.uniform(k2, (size, act_dim), minval=-1, maxval=1)
  return q.Batch(obs, act, jnp.zeros(size), obs, jnp.zeros(size))


def train_on_fresh_batches(state, make_batch, key, num_updates):
  """num_updates qsm_update calls on fresh batches ``make_batch(key)``, inside one jitted
  lax.scan: (final state, stacked metrics)."""
  @jax.jit
  def run(state, key):
    def body(s, k):
      batch_key, update_key = jax.random.split(k)
      return q.qsm_update(s, make_batch(batch_key), update_key)
    return jax.lax.scan(body, state, jax.random.split(key, num_updates))
  return run(state, key)


def pytest_collection_modifyitems(items):
  """Tests marked ``slow`` (a minute or more each) first: xdist hands tests out in this
  order, so the long ones start early and the workers finish together instead of one
  idling while the other runs a long test collected last."""
  items.sort(key=lambda item: item.get_closest_marker("slow") is None)  # stable sort


@pytest.fixture(autouse=True)
def _xla_optimizations(request):
  """The full XLA compiler for tests marked ``optimized``, the quick one otherwise."""
  if request.node.get_closest_marker("optimized") is None:
    yield
    return
  before = jax.config.read("jax_disable_most_optimizations")
  jax.config.update("jax_disable_most_optimizations", False)
  try:
    yield
  finally:
    jax.config.update("jax_disable_most_optimizations", before)


@pytest.fixture
def tiny_config():
  return TINY
