"""DDPM machinery for the action-space diffusion policy: schedules, noising, sampler.

Time indices are 0-based in code: step ``t`` in ``0..T-1`` uses ``betas[t]``, which is
the spec's ``beta_{t+1}`` (the spec writes its formulas for t = 1..T).
"""
from __future__ import annotations

from typing import Callable, NamedTuple, Optional

import chex
import jax
import jax.numpy as jnp
import numpy as np

BETA_SCHEDULES = ("vp", "cosine", "linear")


def vp_beta_schedule(T: int, b_min: float = 0.1, b_max: float = 10.0) -> np.ndarray:
  """Variance-preserving schedule: beta_t = 1 - exp(-b_min/T - (b_max-b_min)(2t-1)/(2T^2))."""
  t = np.arange(1, T + 1, dtype=np.float64)
  alpha = np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)
  return (1.0 - alpha).astype(np.float32)


def cosine_beta_schedule(T: int, s: float = 0.008) -> np.ndarray:
  """Cosine schedule (Nichol & Dhariwal): betas from a cos^2 cumulative alpha."""
  t = np.linspace(0, T, T + 1, dtype=np.float64) / T
  abar = np.cos((t + s) / (1 + s) * np.pi * 0.5) ** 2
  abar = abar / abar[0]
  betas = 1.0 - abar[1:] / abar[:-1]
  return np.clip(betas, 0.0, 0.999).astype(np.float32)


def linear_beta_schedule(T: int, beta_start: float = 1e-4, beta_end: float = 2e-2) -> np.ndarray:
  """Linear schedule from beta_start to beta_end."""
  return np.linspace(beta_start, beta_end, T, dtype=np.float64).astype(np.float32)


class DiffusionSchedule(NamedTuple):
  """Per-step constants of a T-step DDPM, each of shape (T,)."""
  betas: np.ndarray
  alphas: np.ndarray
  alpha_bars: np.ndarray


def make_schedule(T: int, beta_schedule: str = "vp") -> DiffusionSchedule:
  """Betas, alphas = 1 - betas and their cumulative product, as numpy constants.

  They are numpy (not jnp) arrays on purpose: T and the schedule name are static,
  so inside jit they become compile-time constants.
  """
  if not isinstance(T, int) or T < 1:
    raise ValueError(f"T (diffusion steps) must be a positive int, got {T!r}")
  if beta_schedule == "vp":
    betas = vp_beta_schedule(T)
  elif beta_schedule == "cosine":
    betas = cosine_beta_schedule(T)
  elif beta_schedule == "linear":
    betas = linear_beta_schedule(T)
  else:
    raise ValueError(f"unknown beta_schedule {beta_schedule!r}; choose one of {BETA_SCHEDULES}")
  alphas = (1.0 - betas).astype(np.float32)
  alpha_bars = np.cumprod(alphas.astype(np.float64)).astype(np.float32)
  return DiffusionSchedule(betas=betas, alphas=alphas, alpha_bars=alpha_bars)


def noise_actions(schedule: DiffusionSchedule, actions: jax.Array, t: jax.Array,
                  noise: jax.Array) -> jax.Array:
  """Forward-noise actions: a_t = sqrt(abar_t) a + sqrt(1 - abar_t) eps.

  Args:
    schedule: the diffusion constants.
    actions: (B, A) clean actions.
    t: (B,) integer steps in [0, T).
    noise: (B, A) standard normal noise.
  """
  chex.assert_rank([actions, t, noise], [2, 1, 2])
  chex.assert_equal_shape([actions, noise])
  abar = jnp.asarray(schedule.alpha_bars)[t][:, None]
  return jnp.sqrt(abar) * actions + jnp.sqrt(1.0 - abar) * noise


# eps_fn(obs (B, O), x_t (B, A), t (B, 1) float32) -> (B, A)
NoiseFn = Callable[[jax.Array, jax.Array, jax.Array], jax.Array]


def ddpm_sample(schedule: DiffusionSchedule, eps_fn: NoiseFn, obs: jax.Array, act_dim: int,
                key: jax.Array, temperature: jax.Array | float = 1.0,
                clip_sampler: bool = True,
                normal: Optional[Callable[[jax.Array, tuple], jax.Array]] = None,
                clip_denoised: bool = False, ascent: bool = False) -> jax.Array:
  """T-step DDPM ancestral sampler, one ``lax.scan`` from t = T-1 down to 0.

  x_T ~ N(0, I); x <- (x - beta_t / sqrt(1 - abar_t) * eps) / sqrt(alpha_t);
  for t > 0 add sqrt(beta_t) * temperature * z; clip to [-1, 1] each step if
  ``clip_sampler``. The result is always clipped to [-1, 1].

  Args:
    schedule: the diffusion constants (static).
    eps_fn: the noise model with its parameters closed over.
    obs: (B, O) observations; one action is sampled for each.
    act_dim: action dimension A (static).
    key: PRNG key.
    temperature: scale of the injected noise (a leaf: may be traced).
    clip_sampler: clip after every step (static).
    normal: ``(key, shape) -> standard normal draws``; default ``jax.random.normal``.
      The data-parallel update passes one that draws for the global batch and keeps
      this device's rows.
    clip_denoised: step through the predicted clean action x0 = (x - sqrt(1 - abar_t)
      eps) / sqrt(abar_t), clipped to [-1, 1], and the DDPM posterior mean
      sqrt(abar_{t-1}) beta_t / (1 - abar_t) x0 + sqrt(alpha_t) (1 - abar_{t-1}) /
      (1 - abar_t) x (static). Unclipped, that is exactly the step above; clipped, a
      noise model that overshoots can no longer throw x past the bounds by 1/sqrt(alpha_t).
    ascent: drop the step's division by sqrt(alpha_t): x <- x - beta_t / sqrt(1 - abar_t)
      * eps, then the same noise and clip (static). For a noise model that is -M_q grad_a Q
      (QSM's target) this is noisy gradient ascent on Q, whose noise-free fixed point is
      Q's maximum; the DDPM step's expansion by 1/sqrt(alpha_t) (a factor of 13 over the
      5 vp steps) moves that fixed point outward, toward the bounds. Not with clip_denoised.

  Returns:
    (B, A) actions in [-1, 1].
  """
  chex.assert_rank(obs, 2)
  if ascent and clip_denoised:
    raise ValueError("ascent and clip_denoised are two different sampler steps; choose one")
  batch = obs.shape[0]
  T = len(schedule.betas)
  betas = jnp.asarray(schedule.betas)
  alphas = jnp.asarray(schedule.alphas)
  alpha_bars = jnp.asarray(schedule.alpha_bars)
  prev_alpha_bars = jnp.concatenate([jnp.ones((1,), jnp.float32), alpha_bars[:-1]])
  normal = normal or (lambda k, shape: jax.random.normal(k, shape, jnp.float32))
  init_key, step_keys = jax.random.split(key)
  x = normal(init_key, (batch, act_dim))
  step_keys = jax.random.split(step_keys, T)

  def step(x, inputs):
    t, k = inputs
    t_in = jnp.full((batch, 1), t, dtype=jnp.float32)
    eps = eps_fn(obs, x, t_in)
    if clip_denoised:
      x0 = jnp.clip((x - jnp.sqrt(1.0 - alpha_bars[t]) * eps) / jnp.sqrt(alpha_bars[t]),
                    -1.0, 1.0)
      x = (jnp.sqrt(prev_alpha_bars[t]) * betas[t] * x0
           + jnp.sqrt(alphas[t]) * (1.0 - prev_alpha_bars[t]) * x) / (1.0 - alpha_bars[t])
    elif ascent:
      x = x - betas[t] / jnp.sqrt(1.0 - alpha_bars[t]) * eps
    else:
      x = (x - betas[t] / jnp.sqrt(1.0 - alpha_bars[t]) * eps) / jnp.sqrt(alphas[t])
    z = normal(k, x.shape)
    x = x + (t > 0) * jnp.sqrt(betas[t]) * temperature * z
    if clip_sampler:
      x = jnp.clip(x, -1.0, 1.0)
    return x, None

  ts = jnp.arange(T - 1, -1, -1)
  x, _ = jax.lax.scan(step, x, (ts, step_keys))
  return jnp.clip(x, -1.0, 1.0)
