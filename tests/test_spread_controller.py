"""The spread controller (QSMConfig.spread_target): M_q tuned online toward a policy width."""
import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from qsm_jax import update
from qsm_jax.policy import sample_from_params
from conftest import TINY, random_batch, train_on_fresh_batches, uniform_bandit_batch
from toy_modules import QuadraticCritic, ScaledCritic

ident = lambda x: x


def test_controller_step_by_hand():
  cfg = dataclasses.replace(TINY, spread_target=0.1, spread_rate=0.01)
  step = lambda gain, spread: float(update.spread_controller(cfg, jnp.float32(gain),
                                                             jnp.float32(spread)))
  assert step(0.0, 0.2) == pytest.approx(0.01 * np.log(2.0), rel=1e-5)  # too wide: M_q up
  assert step(0.5, 0.05) == pytest.approx(0.5 - 0.01 * np.log(2.0), rel=1e-5)  # too narrow
  assert step(0.0, 0.1) == 0.0
  # Every draw on the same bound (spread 0) counts as 1e-6: M_q comes down fast, no NaN.
  assert step(0.0, 0.0) == pytest.approx(0.01 * np.log(1e-6 / 0.1), rel=1e-5)
  assert step(update.MAX_LOG_M_Q_GAIN, 1.0) == pytest.approx(update.MAX_LOG_M_Q_GAIN)
  assert step(-update.MAX_LOG_M_Q_GAIN, 0.0) == pytest.approx(-update.MAX_LOG_M_Q_GAIN)


@pytest.mark.parametrize("target_temperature", [0.0, None, 0.5])
def test_spread_reuses_the_critic_targets_draw_only_where_it_is_one_of_the_two(
    target_temperature):
  # a' is drawn at target_temperature (None: the training temperature, 1): whichever way
  # the spread is made, it equals mean |draw at 1 - draw at 0| from the same key.
  cfg = dataclasses.replace(TINY, target_temperature=target_temperature, spread_target=0.1)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=cfg)
  obs, key = jax.random.normal(jax.random.PRNGKey(1), (16, 3)), jax.random.PRNGKey(2)
  draw = lambda temperature: sample_from_params(state, state.actor_params, obs, key, temperature)
  expected = float(jnp.mean(jnp.abs(draw(1.0) - draw(0.0))))
  drawn = draw(1.0 if target_temperature is None else target_temperature)
  got = float(update.policy_spread(state, obs, key, drawn, None, ident))
  assert expected > 0.05  # the untrained policy is wide: the two draws differ
  assert got == pytest.approx(expected, rel=1e-6)


def test_update_uses_the_factor_so_far_and_moves_it():
  hp = q.QSMHyperparams(M_q=1.0)
  cfg = dataclasses.replace(TINY, spread_target=0.05, spread_rate=0.1)
  state = q.init_state(jax.random.PRNGKey(0), 3, 2, config=cfg, hparams=hp)
  state = state.replace(log_m_q_gain=jnp.float32(np.log(2.0)))
  batch, key = random_batch(jax.random.PRNGKey(1), 32, 3, 2), jax.random.PRNGKey(2)
  new, m = q.qsm_update(state, batch, key)
  assert float(m["M_q"]) == pytest.approx(2.0, rel=1e-6)
  assert float(new.log_m_q_gain) == pytest.approx(
      np.log(2.0) + 0.1 * np.log(float(m["spread"]) / 0.05), rel=1e-5)
  # The same step as M_q 2 without the controller: the spread's draws take no key away
  # from the rest of the update.
  plain = q.init_state(jax.random.PRNGKey(0), 3, 2, config=TINY,
                       hparams=q.QSMHyperparams(M_q=2.0))
  plain_new, plain_m = q.qsm_update(plain, batch, key)
  assert "spread" not in plain_m and float(plain_new.log_m_q_gain) == 0.0
  for a, b in zip(jax.tree.leaves((new.actor_params, new.critic_params)),
                  jax.tree.leaves((plain_new.actor_params, plain_new.critic_params))):
    np.testing.assert_allclose(a, b, atol=1e-6)


# The toy: a frozen quadratic critic Q = -||a - 0.5 s||^2, uniform replay, a sampler whose
# spread falls as M_q grows (10 cosine steps), the critic's a' deterministic (the presets').
TOY = dataclasses.replace(TINY, critic_hidden=(8,), T=10, beta_schedule="cosine",
                          score_scale="running", target_temperature=0.0, spread_rate=0.01)


def _toy_run(spread_target, score_scale="running", q_scale=1.0, spread_rate=0.01):
  cfg = dataclasses.replace(TOY, spread_target=spread_target, score_scale=score_scale,
                            spread_rate=spread_rate)
  hp = q.QSMHyperparams(M_q=1.0, critic_lr=0.0, actor_lr=1e-3)
  state = q.init_state(jax.random.PRNGKey(0), 2, 2, config=cfg, hparams=hp,
                       critic=ScaledCritic(QuadraticCritic(2), q_scale))
  _, metrics = train_on_fresh_batches(
      state, lambda k: uniform_bandit_batch(k, 128, 2, 2), jax.random.PRNGKey(1), 1500)
  return float(np.mean(metrics["spread"][-300:])), float(metrics["M_q"][-1])


@pytest.mark.optimized
def test_the_policy_settles_at_the_target_width_for_any_q_scale():
  # Measured: spread 0.050 / 0.100 / 0.200 at M_q 6.3 / 2.3 / 1.3 (running); the
  # paper's fixed target with Q x100 settles at the same width with M_q 100x smaller.
  # The control: with the controller all but off (rate 1e-6: M_q stays 1) the spread is
  # 0.25, so each target moved it.
  fixed_spread, fixed_m_q = _toy_run(0.1, spread_rate=1e-6)
  assert fixed_spread > 0.22 and fixed_m_q == pytest.approx(1.0, abs=0.01)
  results = {t: _toy_run(t) for t in (0.05, 0.1, 0.2)}
  print(results)
  for target, (spread, _) in results.items():
    assert spread == pytest.approx(target, rel=0.1)
  m_q = [results[t][1] for t in (0.05, 0.1, 0.2)]
  assert m_q[0] > 1.5 * m_q[1] > 1.5 ** 2 * m_q[2]  # narrower: a larger M_q
  spread, m_q_fixed = _toy_run(0.1, score_scale="fixed", q_scale=100.0)
  print(spread, m_q_fixed)
  assert spread == pytest.approx(0.1, rel=0.1)
  assert m_q_fixed < 0.1  # M_q absorbed the critic's x100 (unnormalised: about 2.3 / 100 / s)


@pytest.mark.parametrize("field,bad", [("spread_target", 0.0), ("spread_target", -0.1),
                                       ("spread_target", 2.0), ("spread_target", float("nan")),
                                       ("spread_target", True), ("spread_rate", 0.0),
                                       ("spread_rate", 1.5)])
def test_bad_settings_are_refused_naming_the_field(field, bad):
  with pytest.raises(ValueError, match=field):
    dataclasses.replace(TINY, **{field: bad})
