"""The multi-modality toy's other half (experiments/toy_multimodal.py): TD3 picks ONE mode.

tests/test_learning.py checks that QSM's samples cover both modes of this bandit; here the
deterministic TD3 actor, trained on the same kind of data, collapses onto a single mode.
"""
import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from qsm_jax.algorithms import get_algorithm

pytestmark = pytest.mark.optimized  # thousands of updates: the full compiler pays

MODES = jnp.array([[0.5, 0.5], [-0.5, -0.5]])
CONFIG = q.QSMConfig(actor_hidden=(32, 32), critic_hidden=(32, 32))


def _batch(key, size=128):
  """One-step bandit: constant obs 0, uniform actions, r = -min_i ||a - m_i||^2, mask 0."""
  act = jax.random.uniform(key, (size, 2), minval=-1, maxval=1)
  obs = jnp.zeros((size, 1))
  r = -jnp.min(jnp.sum((act[:, None] - MODES[None]) ** 2, -1), axis=1)
  return q.Batch(obs, act, r, obs, jnp.zeros(size))


def test_td3_deterministic_policy_collapses_onto_one_mode():
  td3 = get_algorithm("td3")
  hp = q.QSMHyperparams(actor_lr=3e-3, critic_lr=1e-3)
  init_key, data_key, act_key = jax.random.split(jax.random.PRNGKey(0), 3)
  state = td3.init(init_key, 1, 2, CONFIG, hp)

  @jax.jit
  def train(state, key):
    def body(s, k):
      batch_key, update_key = jax.random.split(k)
      return td3.update(s, _batch(batch_key), update_key)
    return jax.lax.scan(body, state, jax.random.split(key, 1000))

  def shares(state, explore):
    a = td3.act(state, jnp.zeros((2000, 1)), act_key, explore=explore)
    return np.asarray(jnp.mean(jnp.linalg.norm(a[:, None] - MODES[None], axis=-1) < 0.3, 0))

  untrained = shares(state, False)
  state, metrics = train(state, data_key)
  trained, exploring = shares(state, False), shares(state, True)
  action = np.asarray(td3.act(state, jnp.zeros((1, 1)), act_key))[0]
  gap = float(np.min(np.linalg.norm(action - np.asarray(MODES), axis=-1)))
  print(f"TD3 mode shares (within 0.3): untrained {untrained}, trained {trained}, "
        f"with exploration noise {exploring}; action {action}, {gap:.3f} from its mode")
  assert float(metrics["critic_loss"][-100:].mean()) < 0.01  # the critic learned r
  assert np.all(untrained == 0)  # the control: the initial action (0, 0) is in neither mode
  assert sorted(trained.tolist()) == [0.0, 1.0]  # every action in one mode, none in the other
  assert gap < 0.15  # measured 0.035: the actor reached the mode
  assert exploring.max() > 0.9 and exploring.min() == 0  # measured 0.99 and 0
