"""Acting with the diffusion policy: batched DDPM sampling from a ``QSMState``."""
from __future__ import annotations

import functools
from typing import Optional

import chex
import jax
import jax.numpy as jnp

from qsm_jax.diffusion import ddpm_sample, make_schedule
from qsm_jax.ensemble import Params, ensemble_apply
from qsm_jax.state import QSMState


def sample_from_params(state: QSMState, actor_params: Params, obs: jax.Array, key: jax.Array,
                       temperature: jax.Array, normal=None) -> jax.Array:
  """Runs the DDPM sampler with the given noise-model parameters: (B, A) in [-1, 1]."""
  schedule = make_schedule(state.config.T, state.config.beta_schedule)

  def eps_fn(o, x, t):
    return state.noise_model.apply(actor_params, o, x, t)

  return ddpm_sample(schedule, eps_fn, obs, state.act_dim, key, temperature=temperature,
                     clip_sampler=state.config.clip_sampler, normal=normal,
                     clip_denoised=state.config.clip_denoised,
                     ascent=state.config.ascent_sampler)


def best_by_q(state: QSMState, obs: jax.Array, candidates: jax.Array) -> jax.Array:
  """Per row, the candidate action with the highest Q (the min over the online critics).

  ``candidates`` is (N, B, A) for obs (B, O); returns (B, A).
  """
  n, b = candidates.shape[:2]
  q = ensemble_apply(state.critic, state.critic_params,
                     jnp.broadcast_to(obs, (n, *obs.shape)).reshape(n * b, -1),
                     candidates.reshape(n * b, -1))
  best = jnp.argmax(jnp.min(q, axis=0).reshape(n, b), axis=0)
  return jnp.take_along_axis(candidates, best[None, :, None], axis=0)[0]


def policy_temperature(state: QSMState, explore: bool, temperature: Optional[float] = None):
  """The sampler's noise scale: ``temperature`` if given, else the config's
  ``eval_temperature`` for the noise-free policy (when set), else the training one."""
  if temperature is not None:
    return temperature
  if not explore and state.config.eval_temperature is not None:
    return state.config.eval_temperature
  return state.hparams.temperature


@functools.partial(jax.jit, static_argnames=("explore", "best_of"))
def sample_actions(state: QSMState, obs: jax.Array, key: jax.Array, explore: bool = False,
                   temperature: Optional[float] = None, best_of: Optional[int] = None
                   ) -> jax.Array:
  """Samples one action per observation from the diffusion policy.

  Args:
    state: a ``QSMState``.
    obs: (B, obs_dim) observations.
    key: PRNG key.
    explore: add N(0, exploration_noise^2) and clip (static: True/False compile apart).
    temperature: sampler noise scale; None uses ``state.config.eval_temperature``
      without exploration when it is set, else ``state.hparams.temperature`` (0 gives the
      deterministic, noise-free sampler).
    best_of: draw this many sampler outputs per observation and keep the one the
      critics value most (static). None: ``state.config.eval_best_of`` without
      exploration (evaluation, ``load_policy``), ``state.config.act_best_of`` with it
      (acting in training).

  Returns:
    (B, act_dim) actions in [-1, 1].
  """
  chex.assert_rank(obs, 2)
  chex.assert_axis_dimension(obs, 1, state.obs_dim)
  temp = policy_temperature(state, explore, temperature)
  n = best_of
  if n is None:
    n = state.config.act_best_of if explore else state.config.eval_best_of
  if not isinstance(n, int) or n < 1:
    raise ValueError(f"best_of must be a positive int, got {n!r}")
  sample_key, noise_key = jax.random.split(key)
  if n == 1:
    actions = sample_from_params(state, state.actor_params, obs, sample_key, temp)
  else:
    candidates = jax.vmap(lambda k: sample_from_params(state, state.actor_params, obs, k, temp))(
        jax.random.split(sample_key, n))
    actions = best_by_q(state, obs, candidates)
  if explore:
    noise = jax.random.normal(noise_key, actions.shape, actions.dtype)
    actions = jnp.clip(actions + state.hparams.exploration_noise * noise, -1.0, 1.0)
  return actions


