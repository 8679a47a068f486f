import dataclasses
import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import qsm_jax as q
from conftest import TINY
from qsm_jax import diffusion
from qsm_jax.policy import sample_from_params
from toy_modules import QuadraticCritic


def test_vp_betas_match_closed_form_T5():
  # beta_t = 1 - exp(-0.1/5 - 0.5 * 9.9 * (2t - 1) / 25), t = 1..5, worked out with math.exp.
  expected = [1 - math.exp(-0.02 - 0.198 * (2 * t - 1)) for t in range(1, 6)]
  # First value by hand: 1 - exp(-0.218) = 0.1958746...
  assert expected[0] == pytest.approx(0.1958746, abs=1e-6)
  np.testing.assert_allclose(diffusion.vp_beta_schedule(5), expected, atol=1e-6)


@pytest.mark.parametrize("name", diffusion.BETA_SCHEDULES)
def test_alpha_bars_are_cumulative_products(name):
  sched = diffusion.make_schedule(7, name)
  np.testing.assert_allclose(sched.alphas, 1 - sched.betas, atol=1e-7)
  np.testing.assert_allclose(sched.alpha_bars, np.cumprod(1 - sched.betas), rtol=1e-6)


@pytest.mark.parametrize("name", ["cosine", "linear"])
def test_cosine_and_linear_monotone_in_unit_interval(name):
  betas = diffusion.make_schedule(20, name).betas
  assert np.all(betas > 0) and np.all(betas < 1)
  assert np.all(np.diff(betas) > 0)


def test_linear_endpoints_and_bad_names():
  betas = diffusion.linear_beta_schedule(10)
  assert betas[0] == pytest.approx(1e-4) and betas[-1] == pytest.approx(2e-2)
  with pytest.raises(ValueError, match="unknown beta_schedule"):
    diffusion.make_schedule(5, "sigmoid")
  with pytest.raises(ValueError, match="positive int"):
    diffusion.make_schedule(0, "vp")


def test_noise_actions_formula():
  sched = diffusion.make_schedule(5, "vp")
  a = jnp.array([[0.5, -1.0], [0.2, 0.3]])
  eps = jnp.array([[1.0, 2.0], [-1.0, 0.0]])
  t = jnp.array([0, 4])
  out = diffusion.noise_actions(sched, a, t, eps)
  abar = sched.alpha_bars
  expected = np.stack([np.sqrt(abar[0]) * a[0] + np.sqrt(1 - abar[0]) * eps[0],
                       np.sqrt(abar[4]) * a[1] + np.sqrt(1 - abar[4]) * eps[1]])
  np.testing.assert_allclose(out, expected, rtol=1e-6)


def _zero_eps(obs, x, t):
  return jnp.zeros_like(x)


def _random_eps(obs, x, t):
  return 3.0 * jnp.sin(x * 5 + obs[:, :1] + t)


def test_sampler_shape_range_determinism():
  sched = diffusion.make_schedule(5, "vp")
  obs = jax.random.normal(jax.random.PRNGKey(0), (64, 3))
  key = jax.random.PRNGKey(1)
  sample = jax.jit(lambda k: diffusion.ddpm_sample(sched, _random_eps, obs, 4, k))
  a1, a2 = sample(key), sample(key)
  a3 = sample(jax.random.PRNGKey(2))
  assert a1.shape == (64, 4)
  assert float(jnp.max(jnp.abs(a1))) <= 1.0
  np.testing.assert_array_equal(a1, a2)
  assert float(jnp.mean(jnp.abs(a1 - a3))) > 1e-2


@pytest.mark.parametrize("clip_sampler", [True, False])
def test_sampler_zero_noise_model_zero_temperature_is_closed_form(clip_sampler):
  # eps = 0 and temperature 0: x_{t-1} = x_t / sqrt(alpha_t), clipped each step if asked.
  sched = diffusion.make_schedule(5, "vp")
  obs = jnp.zeros((16, 1))
  key = jax.random.PRNGKey(3)
  out = diffusion.ddpm_sample(sched, _zero_eps, obs, 2, key, temperature=0.0,
                              clip_sampler=clip_sampler)
  init_key, _ = jax.random.split(key)
  x = np.asarray(jax.random.normal(init_key, (16, 2)), np.float64)
  if clip_sampler:
    for t in range(4, -1, -1):
      x = np.clip(x / np.sqrt(sched.alphas[t]), -1, 1)
  else:
    x = np.clip(x / np.sqrt(sched.alpha_bars[-1]), -1, 1)  # prod of alphas = abar_T
  np.testing.assert_allclose(out, x, rtol=1e-5, atol=1e-6)


def test_clip_denoised_is_the_paper_step_while_x0_stays_inside():
  # A noise model that predicts exactly the noise of the clean action 0.3: x0 = 0.3 at
  # every step, nothing is clipped, and both samplers end at 0.3 (temperature 0).
  sched = diffusion.make_schedule(5, "vp")
  abar = jnp.asarray(sched.alpha_bars)

  def exact_eps(obs, x, t):
    a = abar[t[:, 0].astype(jnp.int32)][:, None]
    return (x - jnp.sqrt(a) * 0.3) / jnp.sqrt(1.0 - a)

  obs = jnp.zeros((16, 1))
  key = jax.random.PRNGKey(4)
  paper = diffusion.ddpm_sample(sched, exact_eps, obs, 2, key, temperature=0.0,
                                clip_sampler=False)
  clipped = diffusion.ddpm_sample(sched, exact_eps, obs, 2, key, temperature=0.0,
                                  clip_sampler=False, clip_denoised=True)
  np.testing.assert_allclose(paper, 0.3, atol=1e-5)
  np.testing.assert_allclose(clipped, 0.3, atol=1e-5)
  # With sampler noise too, the two samplers take the same steps.
  paper = diffusion.ddpm_sample(sched, exact_eps, obs, 2, key, clip_sampler=False)
  clipped = diffusion.ddpm_sample(sched, exact_eps, obs, 2, key, clip_sampler=False,
                                  clip_denoised=True)
  np.testing.assert_allclose(paper, clipped, atol=1e-5)


def test_clip_denoised_zero_noise_model_by_hand():
  # eps = 0: x0 = x / sqrt(abar_t), clipped, then the posterior mean.
  sched = diffusion.make_schedule(5, "vp")
  obs = jnp.zeros((16, 1))
  key = jax.random.PRNGKey(3)
  out = diffusion.ddpm_sample(sched, _zero_eps, obs, 2, key, temperature=0.0,
                              clip_sampler=False, clip_denoised=True)
  init_key, _ = jax.random.split(key)
  x = np.asarray(jax.random.normal(init_key, (16, 2)), np.float64)
  b, a, ab = (np.asarray(v, np.float64) for v in (sched.betas, sched.alphas, sched.alpha_bars))
  for t in range(4, -1, -1):
    ab_prev = ab[t - 1] if t > 0 else 1.0
    x0 = np.clip(x / np.sqrt(ab[t]), -1, 1)
    x = (np.sqrt(ab_prev) * b[t] * x0 + np.sqrt(a[t]) * (1 - ab_prev) * x) / (1 - ab[t])
  np.testing.assert_allclose(out, np.clip(x, -1, 1), rtol=1e-5, atol=1e-6)


def test_best_of_n_keeps_the_draw_the_critics_value_most():
  # Q = -|a - a*(s)|^2 (QuadraticCritic): of N sampler draws per observation, the policy
  # must return exactly the one nearest a*(s), worked out here from the same draws.
  cfg = dataclasses.replace(TINY, eval_best_of=16)
  critic = QuadraticCritic(2)
  state = q.init_state(jax.random.PRNGKey(0), 2, 2, config=cfg, critic=critic)
  obs = jax.random.uniform(jax.random.PRNGKey(1), (64, 2), minval=-1, maxval=1)
  key = jax.random.PRNGKey(2)
  best = q.sample_actions(state, obs, key)  # noise-free acting: eval_best_of draws
  draws = jax.vmap(lambda k: sample_from_params(state, state.actor_params, obs, k, 1.0))(
      jax.random.split(jax.random.split(key)[0], 16))
  dist = jnp.sum((draws - critic.optimum(obs)) ** 2, axis=-1)  # (16, 64)
  expected = draws[jnp.argmin(dist, axis=0), jnp.arange(64)]
  np.testing.assert_allclose(best, expected, atol=1e-6)
  one = q.sample_actions(state, obs, key, best_of=1)  # one draw, with the sampler's key
  np.testing.assert_allclose(
      one, sample_from_params(state, state.actor_params, obs, jax.random.split(key)[0], 1.0),
      atol=1e-6)
  assert float(jnp.mean(jnp.min(dist, axis=0))) < 0.5 * float(jnp.mean(dist[0]))
  # Acting in training uses act_best_of (1 here): one draw, plus exploration noise.
  explored = q.sample_actions(state, obs, key, explore=True)
  noise = jax.random.normal(jax.random.split(key)[1], one.shape)
  np.testing.assert_allclose(explored, jnp.clip(one + 0.1 * noise, -1, 1), atol=1e-6)
  with pytest.raises(ValueError, match="eval_best_of must be a positive int"):
    dataclasses.replace(TINY, eval_best_of=0)


def test_eval_temperature_sets_the_noise_free_policys_sampler_only():
  cfg = dataclasses.replace(TINY, eval_temperature=0.0)
  state = q.init_state(jax.random.PRNGKey(0), 2, 2, config=cfg)
  obs = jax.random.uniform(jax.random.PRNGKey(1), (8, 2), minval=-1, maxval=1)
  key = jax.random.PRNGKey(2)
  draw = lambda temperature: sample_from_params(state, state.actor_params, obs,
                                                jax.random.split(key)[0], temperature)
  deterministic, training = draw(0.0), draw(1.0)
  assert not np.allclose(deterministic, training, atol=1e-3)  # the control
  # Evaluation: the config's eval_temperature (0) over hparams.temperature (1) ...
  np.testing.assert_allclose(q.sample_actions(state, obs, key), deterministic, atol=1e-6)
  # ... unless a temperature is given.
  np.testing.assert_allclose(q.sample_actions(state, obs, key, temperature=1.0), training,
                             atol=1e-6)
  # Acting in training keeps the training temperature (plus exploration noise).
  noise = jax.random.normal(jax.random.split(key)[1], training.shape)
  np.testing.assert_allclose(q.sample_actions(state, obs, key, explore=True),
                             jnp.clip(training + 0.1 * noise, -1, 1), atol=1e-6)
  # Unset (the paper's): evaluation samples at the training temperature.
  plain = state.replace(config=TINY)
  np.testing.assert_allclose(q.sample_actions(plain, obs, key), training, atol=1e-6)
  with pytest.raises(ValueError, match="eval_temperature must be a finite number >= 0"):
    dataclasses.replace(TINY, eval_temperature=-0.5)


def _samples_of_an_exact_score_model(T, beta_schedule, M_q, sigma_weight, n=4000,
                                     optimum=0.3, temperature=1.0, ascent=False):
  """Sampler output for a noise model equal to its QSM target on a 1-D quadratic Q with
  its optimum at ``optimum``: -M_q grad_a Q / mean|grad_a Q| (mean over uniform actions
  in [-1, 1] for the optimum 0.3: 0.545 k), times sigma_t = sqrt(1 - abar_t) if
  ``sigma_weight``."""
  sched = diffusion.make_schedule(T, beta_schedule)
  sigma = jnp.sqrt(1.0 - jnp.asarray(sched.alpha_bars))

  def eps_fn(obs, x, t):
    weight = sigma[t[:, 0].astype(jnp.int32)][:, None] if sigma_weight else 1.0
    return -M_q * weight * -(x - optimum) / 0.545

  return np.asarray(diffusion.ddpm_sample(sched, eps_fn, jnp.zeros((n, 1)), 1,
                                          jax.random.PRNGKey(0), temperature=temperature,
                                          ascent=ascent))


def test_sigma_weighted_target_makes_M_q_an_inverse_temperature():
  # The paper's target (T = 5): M_q is a step size with a narrow window; at 5 every
  # sample is thrown onto a bound (the control: measured 100% beyond 0.95).
  assert np.mean(np.abs(_samples_of_an_exact_score_model(5, "vp", 5.0, False)) > 0.95) > 0.9
  # Weighted by sigma_t (T = 20): the samples stay around the optimum for M_q from 1 to
  # 20 and only get sharper as M_q grows (measured std 0.48, 0.24, 0.11).
  spreads = []
  for m_q in (1.0, 5.0, 20.0):
    a = _samples_of_an_exact_score_model(20, "cosine", m_q, True)
    assert abs(np.mean(a) - 0.3) < 0.1 and np.mean(np.abs(a) > 0.95) < 0.15
    spreads.append(np.std(a))
  assert spreads[0] > 1.5 * spreads[1] > 2.25 * spreads[2] and spreads[2] < 0.2


def test_ascent_sampler_zero_and_constant_noise_model_by_hand():
  # eps = c: each step moves x by -beta_t / sqrt(1 - abar_t) * c and nothing else (the
  # DDPM step would also divide by sqrt(alpha_t)); with eps = 0 the start stays put.
  sched = diffusion.make_schedule(5, "vp")
  obs = jnp.zeros((16, 1))
  key = jax.random.PRNGKey(3)
  x_start = np.asarray(jax.random.normal(jax.random.split(key)[0], (16, 2)), np.float64)
  out = diffusion.ddpm_sample(sched, _zero_eps, obs, 2, key, temperature=0.0,
                              clip_sampler=False, ascent=True)
  np.testing.assert_allclose(out, np.clip(x_start, -1, 1), rtol=1e-6, atol=1e-6)
  const = lambda o, x, t: jnp.full_like(x, 0.1)
  out = diffusion.ddpm_sample(sched, const, obs, 2, key, temperature=0.0, clip_sampler=False,
                              ascent=True)
  b, ab = (np.asarray(v, np.float64) for v in (sched.betas, sched.alpha_bars))
  moved = x_start - 0.1 * np.sum(b / np.sqrt(1 - ab))
  np.testing.assert_allclose(out, np.clip(moved, -1, 1), rtol=1e-5, atol=1e-5)
  with pytest.raises(ValueError, match="choose one"):
    diffusion.ddpm_sample(sched, const, obs, 2, key, clip_denoised=True, ascent=True)
  with pytest.raises(ValueError, match="ascent_sampler and clip_denoised"):
    dataclasses.replace(TINY, ascent_sampler=True, clip_denoised=True)


def test_ascent_sampler_finds_the_optimum_the_ddpm_step_overshoots():
  # A noise model equal to QSM's target on a quadratic Q, T = 5 vp, M_q 1. Noise-free, the
  # ascent sampler's draw lands on Q's maximum (measured within 0.003 from 64 starts); the
  # paper's DDPM step overshoots it toward the bound (measured 0.35-0.36 and 0.82: the control).
  for optimum in (0.3, 0.7):
    ascent = _samples_of_an_exact_score_model(5, "vp", 1.0, False, n=64, optimum=optimum,
                                              temperature=0.0, ascent=True)
    ddpm = _samples_of_an_exact_score_model(5, "vp", 1.0, False, n=64, optimum=optimum,
                                            temperature=0.0)
    np.testing.assert_allclose(ascent, optimum, atol=5e-3)
    assert np.all(ddpm > optimum + 0.04)
  # At temperature 1 the draws spread around the optimum, none on a bound (measured
  # 0.290 ± 0.109).
  draws = _samples_of_an_exact_score_model(5, "vp", 1.0, False, optimum=0.3, ascent=True)
  assert abs(np.mean(draws) - 0.3) < 0.05 and 0.1 < np.std(draws) < 0.4
  assert np.mean(np.abs(draws) > 0.99) < 0.02
