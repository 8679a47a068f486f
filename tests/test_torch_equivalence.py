"""benchmarks/torch_qsm.py computes the same update as qsm_update, so the benchmark compares like with like.

From the same parameters (copied JAX -> torch), the same batches and exactly the random
numbers the JAX update drew, two updates (so Adam's bias correction and the actor's
cosine lr decay are exercised past step 0) give the same losses and the same new
parameters, target critics included, to float32 tolerance.
"""
import pathlib
import sys

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from conftest import random_batch

torch = pytest.importorskip("torch")
sys.path.insert(0, str(pathlib.Path(__file__).resolve().parents[1] / "benchmarks"))
import torch_qsm as tq  # pylint: disable=wrong-import-position

OBS, ACT, B = 5, 3, 64
CONFIG = q.QSMConfig(actor_hidden=(32, 32), time_hidden=(16, 16), fourier_size=8,
                     critic_hidden=(32, 32))
# A short lr decay so the second update's actor lr differs from the first's; larger lrs so
# parameter changes are far above the comparison tolerance.
HPARAMS = q.QSMHyperparams(actor_lr=1e-3, critic_lr=1e-3, actor_lr_decay_steps=4.0, tau=0.05)
ATOL = 1e-6  # float32: parameters are O(0.1-1), Adam steps O(1e-3); measured max diff 6e-8


def jax_draws(key, batch_size, act_dim, T):
  """The random numbers qsm_update(state, batch, key) draws, in its order (update.py,
  diffusion.ddpm_sample): key -> (sampler, target noise, t, eps); sampler key -> (x_T,
  per-step keys in scan order t = T-1 .. 0)."""
  next_key, target_noise_key, t_key, eps_key = jax.random.split(key, 4)
  init_key, step_keys = jax.random.split(next_key)
  shape = (batch_size, act_dim)
  normal = lambda k: jax.random.normal(k, shape, jnp.float32)
  to_t = lambda x, dtype=torch.float32: torch.tensor(np.asarray(x)).to(dtype)
  return tq.Draws(
      sampler_init=to_t(normal(init_key)),
      sampler_steps=to_t(jnp.stack([normal(k) for k in jax.random.split(step_keys, T)])),
      target_noise=to_t(normal(target_noise_key)),
      t=to_t(jax.random.randint(t_key, (batch_size,), 0, T), torch.int64),
      eps=to_t(normal(eps_key)))


def torch_config():
  return tq.TorchQSMConfig.from_qsm(OBS, ACT, CONFIG, HPARAMS)


def torch_batch(batch):
  return tq.Batch(*(torch.tensor(np.asarray(getattr(batch, f)))
                    for f in ("obs", "action", "reward", "next_obs", "mask")))


def assert_trees_close(jax_tree, torch_tree, atol):
  flat_j = jax.tree_util.tree_flatten_with_path(jax.device_get(jax_tree))[0]
  flat_t = dict(jax.tree_util.tree_flatten_with_path(torch_tree)[0])
  assert len(flat_j) == len(flat_t)
  for path, x in flat_j:
    np.testing.assert_allclose(flat_t[path], x, rtol=0, atol=atol,
                               err_msg=jax.tree_util.keystr(path))


def max_change(a, b):
  return max(float(np.max(np.abs(np.asarray(x) - np.asarray(y))))
             for x, y in zip(jax.tree.leaves(a), jax.tree.leaves(b)))


def test_schedule_matches_qsm_jax():
  ours, theirs = tq.make_schedule(5), q.make_schedule(5, "vp")
  for name in ("betas", "alphas", "alpha_bars"):
    np.testing.assert_array_equal(getattr(ours, name), getattr(theirs, name))


def test_two_updates_match_qsm_update():
  state = q.init_state(jax.random.PRNGKey(0), OBS, ACT, config=CONFIG, hparams=HPARAMS)
  # Make the critics differ from their targets, so the target and Polyak terms matter.
  noisy = jax.tree.map(lambda x: x + 0.05 * jax.random.normal(jax.random.PRNGKey(9), x.shape),
                       state.critic_params)
  state = state.replace(critic_params=noisy)
  agent = tq.TorchQSM(torch_config())
  tq.load_jax_params(agent, state.actor_params, state.critic_params, state.target_critic_params)
  assert_trees_close(state.actor_params, tq.actor_params_as_jax_layout(agent), atol=0)
  start = state

  for i in range(2):
    batch = random_batch(jax.random.PRNGKey(10 + i), B, OBS, ACT)
    key = jax.random.PRNGKey(100 + i)
    state, metrics = q.qsm_update(state, batch, key)
    out = agent.update(torch_batch(batch), jax_draws(key, B, ACT, CONFIG.T))

    np.testing.assert_allclose(out["critic_loss"], metrics["critic_loss"], rtol=1e-5)
    np.testing.assert_allclose(out["actor_loss"], metrics["actor_loss"], rtol=1e-5)
    assert_trees_close(state.actor_params, tq.actor_params_as_jax_layout(agent), ATOL)
    assert_trees_close(state.critic_params, tq.critic_params_as_jax_layout(agent.critic), ATOL)
    assert_trees_close(state.target_critic_params,
                       tq.critic_params_as_jax_layout(agent.target_critic), ATOL)

  # The comparison has teeth: the updates moved every network far beyond the tolerance.
  for name in ("actor_params", "critic_params", "target_critic_params"):
    assert max_change(getattr(state, name), getattr(start, name)) > 50 * ATOL, name


def test_torch_draws_its_own_noise_and_learns_nothing_nonfinite():
  agent = tq.TorchQSM(torch_config())
  batch = torch_batch(random_batch(jax.random.PRNGKey(3), B, OBS, ACT))
  before = [p.detach().clone() for p in agent.actor.parameters()]
  for _ in range(3):
    out = agent.update(batch)
  assert all(np.isfinite(float(v)) for v in out.values())
  assert all(not torch.equal(a, b) for a, b in zip(before, agent.actor.parameters()))
  actions = agent.act(batch.obs)
  assert actions.shape == (B, ACT) and float(actions.abs().max()) <= 1.0
