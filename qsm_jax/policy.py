"""Acting with the diffusion policy: batched DDPM sampling from a ``QSMState``."""
from __future__ import annotations

import functools
from typing import Optional

import chex
import jax
import jax.numpy as jnp

from qsm_jax.diffusion import ddpm_sample, make_schedule
from qsm_jax.ensemble import Params
from qsm_jax.state import QSMState


def sample_from_params(state: QSMState, actor_params: Params, obs: jax.Array, key: jax.Array,
                       temperature: jax.Array, normal=None) -> jax.Array:
  """Runs the DDPM sampler with the given noise-model parameters: (B, A) in [-1, 1]."""
  schedule = make_schedule(state.config.T, state.config.beta_schedule)

  def eps_fn(o, x, t):
    return state.noise_model.apply(actor_params, o, x, t)

  return ddpm_sample(schedule, eps_fn, obs, state.act_dim, key, temperature=temperature,
                     clip_sampler=state.config.clip_sampler, normal=normal,
                     clip_denoised=state.config.clip_denoised)


@functools.partial(jax.jit, static_argnames=("explore",))
def sample_actions(state: QSMState, obs: jax.Array, key: jax.Array, explore: bool = False,
                   temperature: Optional[float] = None) -> jax.Array:
  """Samples one action per observation from the diffusion policy.

  Args:
    state: a ``QSMState``.
    obs: (B, obs_dim) observations.
    key: PRNG key.
    explore: add N(0, exploration_noise^2) and clip (static: True/False compile apart).
    temperature: sampler noise scale; None uses ``state.hparams.temperature``
      (0 gives the deterministic, noise-free sampler).

  Returns:
    (B, act_dim) actions in [-1, 1].
  """
  chex.assert_rank(obs, 2)
  chex.assert_axis_dimension(obs, 1, state.obs_dim)
  temp = state.hparams.temperature if temperature is None else temperature
  sample_key, noise_key = jax.random.split(key)
  actions = sample_from_params(state, state.actor_params, obs, sample_key, temp)
  if explore:
    noise = jax.random.normal(noise_key, actions.shape, actions.dtype)
    actions = jnp.clip(actions + state.hparams.exploration_noise * noise, -1.0, 1.0)
  return actions


