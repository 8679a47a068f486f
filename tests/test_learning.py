"""The paper's claims on closed-form toy problems (fixed seeds, thresholds with margin)."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from conftest import train_on_fresh_batches as _train, uniform_bandit_batch
from toy_modules import QuadraticCritic

pytestmark = pytest.mark.optimized  # thousands of updates: the full compiler pays

SMALL = q.QSMConfig(actor_hidden=(64, 64), time_hidden=(32, 32), fourier_size=16,
                    critic_hidden=(64, 64))


def test_score_alignment_with_known_critic():
  """With Q = -||a - a*(s)||^2 fixed, eps_theta -> -M_q grad_a Q and samples go to a*(s)."""
  obs_dim, act_dim, m_q = 2, 2, 1.0
  critic = QuadraticCritic(act_dim)
  hp = q.QSMHyperparams(M_q=m_q, critic_lr=0.0, actor_lr=1e-3, actor_lr_decay_steps=0.0)
  state = q.init_state(jax.random.PRNGKey(0), obs_dim, act_dim, config=SMALL, hparams=hp,
                       critic=critic)

  def make_batch(key, size=256):
    return uniform_bandit_batch(key, size, obs_dim, act_dim)

  def alignment(state, key):
    k1, k2, k3, k4 = jax.random.split(key, 4)
    b = make_batch(k1, 2048)
    t = jax.random.randint(k2, (2048,), 0, SMALL.T)
    x = q.noise_actions(q.make_schedule(SMALL.T), b.action, t,
                        jax.random.normal(k3, b.action.shape))
    eps = state.noise_model.apply(state.actor_params, b.obs, x, t[:, None].astype(jnp.float32))
    target = -m_q * (-2.0 * (x - critic.optimum(b.obs)))  # -M_q * grad_a Q
    cos = jnp.sum(eps * target, -1) / (
        jnp.linalg.norm(eps, axis=-1) * jnp.linalg.norm(target, axis=-1))
    rel_err = jnp.linalg.norm(eps - target) / jnp.linalg.norm(target)
    actions = q.sample_actions(state, b.obs, k4)
    dist = jnp.mean(jnp.linalg.norm(actions - critic.optimum(b.obs), axis=-1))
    return float(jnp.median(cos)), float(rel_err), float(dist)

  cos0, rel0, dist0 = alignment(state, jax.random.PRNGKey(5))
  trained, _ = _train(state, make_batch, jax.random.PRNGKey(1), 800)
  cos1, rel1, dist1 = alignment(trained, jax.random.PRNGKey(5))
  print(f"score alignment: median cosine {cos0:.3f} -> {cos1:.5f}, relative error "
        f"{rel0:.3f} -> {rel1:.4f}, mean |a - a*| {dist0:.3f} -> {dist1:.3f}")
  assert cos0 < 0.5 and rel0 > 0.5  # the control: untrained is not aligned
  assert cos1 > 0.999 and rel1 < 0.05  # measured: 0.99999 and 0.011
  assert dist0 > 0.8 and dist1 < 0.2  # measured: 1.27 -> 0.10


def _bandit_mode_shares(config, reward_scale, num_updates, temperature=1.0):
  """One-step bandit, reward reward_scale * -min_i ||a - m_i||^2 with modes (0.5, 0.5) and
  (-0.5, -0.5): QSM (M_q 1, the given sampler temperature) trained on uniform random
  actions. Returns the shares of samples within 0.3 of each mode before and after, and
  the final critic loss over reward_scale^2 (the critic's fit in the reward's own units)."""
  modes = jnp.array([[0.5, 0.5], [-0.5, -0.5]])
  hp = q.QSMHyperparams(M_q=1.0, actor_lr=1e-3, critic_lr=1e-3, actor_lr_decay_steps=0.0,
                        temperature=temperature)
  state = q.init_state(jax.random.PRNGKey(0), 1, 2, config=config, hparams=hp)

  def reward(a):
    return -reward_scale * jnp.min(jnp.sum((a[:, None, :] - modes[None]) ** 2, -1), axis=1)

  def make_batch(key, size=256):
    act = jax.random.uniform(key, (size, 2), minval=-1, maxval=1)
    obs = jnp.zeros((size, 1))
    return q.Batch(obs, act, reward(act), obs, jnp.zeros(size))  # mask 0: one step

  def mode_shares(state):
    a = q.sample_actions(state, jnp.zeros((4000, 1)), jax.random.PRNGKey(9))
    near = jnp.linalg.norm(a[:, None] - modes[None], axis=-1) < 0.3
    return np.asarray(jnp.mean(near, axis=0))

  untrained = mode_shares(state)
  trained_state, metrics = _train(state, make_batch, jax.random.PRNGKey(1), num_updates)
  critic_fit = float(metrics["critic_loss"][-100:].mean()) / reward_scale ** 2
  return untrained, mode_shares(trained_state), critic_fit


def test_learned_critic_policy_covers_both_optimal_modes():
  """The paper's form with M_q matched to Q's scale: the trained policy samples both modes."""
  untrained, trained, critic_fit = _bandit_mode_shares(SMALL, 1.0, 1500)
  print(f"mode shares (within 0.3): untrained {untrained}, trained {trained}")
  assert critic_fit < 0.01
  assert np.all(untrained < 0.05)  # the control: measured about 0.01 each
  assert np.all(trained > 0.15) and trained.sum() > 0.45  # measured about 0.3 each


@pytest.mark.parametrize("score_scale, ascent, reward_scale, covers", [
    ("running", False, 1.0, True), ("running", False, 100.0, True),
    # the Brax presets' sampler: the ascent step at temperature 0.25
    ("running", True, 1.0, True), ("running", True, 100.0, True),
    ("fixed", False, 100.0, False),  # the control: the paper's form with M_q 1 and Q x100
])
def test_scale_free_target_covers_both_modes_at_any_reward_scale(score_scale, ascent,
                                                                 reward_scale, covers):
  """The default (running) Q-score target with M_q 1 keeps both modes with rewards x1 and
  x100, with the paper's sampler and with the presets' ascent sampler at temperature 0.25;
  the paper's fixed target, M_q unchanged, drives every sample onto the bounds at
  x100. 5000 updates: the critic needs them to fit the x100 rewards (measured: after
  1500 it is still 50x further off, relative, and neither form finds the modes)."""
  config = dataclasses.replace(SMALL, score_scale=score_scale, ascent_sampler=ascent)
  _, trained, critic_fit = _bandit_mode_shares(config, reward_scale, 5000,
                                               temperature=0.25 if ascent else 1.0)
  print(f"{score_scale} ascent={ascent} x{reward_scale:g}: mode shares {trained}, "
        f"critic fit {critic_fit:.2g}")
  assert critic_fit < 0.001  # measured 5e-5 (x100) and 1e-6 (x1): the critics fit Q
  if covers:
    # measured 0.38-0.43 each (the paper's sampler), 0.48-0.52 (ascent: every sample near one)
    assert np.all(trained > 0.2) and trained.sum() > 0.5
  else:
    assert trained.sum() < 0.05  # measured 0: every sample on the bounds
