"""``qsm_update``: one critic step, target update and QSM actor step, as one pure function."""
from __future__ import annotations

import functools
import math
from typing import Optional

import jax
import jax.numpy as jnp
import optax

from qsm_jax import losses
from qsm_jax.diffusion import make_schedule, noise_actions
from qsm_jax.policy import sample_from_params
from qsm_jax.shared import (Batch, adam_step, axis_pmean, check_batch, cosine_decay,
                            critic_step, global_batch_draws)
from qsm_jax.state import QSMState


def _running_mean(average: jax.Array, batch_value: jax.Array, rate: float, step: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """(bias-corrected estimate, new moving average): Adam's correction, the average
  starting at 0; the estimate never drops below 1e-12."""
  average = (1.0 - rate) * average + rate * batch_value
  correction = 1.0 - (1.0 - rate) ** (step.astype(jnp.float32) + 1.0)
  return jnp.maximum(average / correction, 1e-12), average


def q_score_scale(cfg, score_norm: jax.Array, step: jax.Array, grad_q: jax.Array, pmean
                  ) -> tuple[jax.Array, jax.Array]:
  """(divisor of -M_q grad_a Q, new moving average) for ``cfg.score_scale``.

  'fixed' divides by 1. 'batch' divides by the mean of |grad_a Q| over the (global)
  batch and action dims; 'running' by the bias-corrected moving average of those means
  (Adam's correction: the average starts at 0). Device means are averaged, so every
  replica holds the same statistic. The divisor never drops below 1e-12: a zero
  gradient gives a zero target.
  """
  if cfg.score_scale == "fixed":
    return jnp.ones((), jnp.float32), score_norm
  batch_norm = jax.lax.stop_gradient(pmean(jnp.mean(jnp.abs(grad_q))))
  if cfg.score_scale == "batch":
    return jnp.maximum(batch_norm, 1e-12), score_norm
  return _running_mean(score_norm, batch_norm, cfg.score_norm_rate, step)


def critic_reward_divisor(cfg, reward_norm: jax.Array, step: jax.Array, reward: jax.Array,
                          pmean) -> tuple[jax.Array, jax.Array]:
  """(divisor of the rewards the critic learns from, new moving average) for
  ``cfg.critic_reward_norm``: 1 for 'none'; for 'running' the bias-corrected moving
  average of the (global) batch mean |r|, the same on every replica; for 'shrink'
  max(1, that average), so rewards below about 1 reach the critic exactly as given."""
  if cfg.critic_reward_norm == "none":
    return jnp.ones((), jnp.float32), reward_norm
  divisor, reward_norm = _running_mean(reward_norm, pmean(jnp.mean(jnp.abs(reward))),
                                       cfg.score_norm_rate, step)
  if cfg.critic_reward_norm == "shrink":
    divisor = jnp.maximum(divisor, 1.0)
  return divisor, reward_norm


def policy_spread(state: QSMState, obs: jax.Array, key: jax.Array, drawn: jax.Array,
                  normal, pmean) -> jax.Array:
  """Mean |a - a_0| over rows and action dims: a drawn at the training temperature, a_0
  by the deterministic sampler (temperature 0), both from ``key`` (the same start x_T).

  ``drawn`` is the critic target's a' (drawn with ``key`` at ``target_temperature``): it
  is reused where it is one of the two draws, so the spread costs one sampler pass
  unless target_temperature is neither 0 nor None.
  """
  cfg = state.config
  draw = lambda temperature: sample_from_params(state, state.actor_params, obs, key,
                                                temperature, normal=normal)
  greedy = drawn if cfg.target_temperature == 0 else draw(0.0)
  exploring = drawn if cfg.target_temperature is None else draw(state.hparams.temperature)
  return pmean(jnp.mean(jnp.abs(exploring - greedy)))


# The spread controller keeps M_q within this factor of hparams.M_q either way.
MAX_LOG_M_Q_GAIN = math.log(1000.0)


def spread_controller(cfg, log_m_q_gain: jax.Array, spread: jax.Array) -> jax.Array:
  """The next log factor on M_q: up when the policy is wider than ``cfg.spread_target``,
  down when narrower, by ``cfg.spread_rate`` x the log ratio (a spread of about 0, draws
  piled on the bounds, counts as far too narrow)."""
  error = jnp.log(jnp.maximum(spread, 1e-6)) - jnp.log(cfg.spread_target)
  return jnp.clip(log_m_q_gain + cfg.spread_rate * error, -MAX_LOG_M_Q_GAIN, MAX_LOG_M_Q_GAIN)


@functools.partial(jax.jit, static_argnames=("axis_name",))
def qsm_update(state: QSMState, batch: Batch, key: jax.Array,
               axis_name: Optional[str] = None) -> tuple[QSMState, dict]:
  """One QSM update: critic step, Polyak target update, then the QSM actor step.

  Pure and jitted: ``new_state, metrics = qsm_update(state, batch, key)``.

  Args:
    state: a ``QSMState`` (from ``init_state``, with our networks or yours).
    batch: a ``Batch`` of B transitions.
    key: PRNG key for the sampler, target noise, diffusion steps and noise.
    axis_name: if given, ``batch`` is this device's shard of a global batch split over
      the mapped axis (``pmap`` / ``shard_map``): gradients and metrics are averaged with
      ``lax.pmean``, and random draws are made for the global batch with ``key`` and
      sliced to this shard. Give every device the SAME key: k devices then compute the
      same update as one device with the whole batch. None (default): single device.

  Returns:
    (new_state, metrics): metrics holds critic_loss, actor_loss, q_mean, target_q_mean,
    grad_q_norm (mean |grad_a Q|), eps_pred_norm (mean |eps_theta|), score_target_norm,
    score_scale (what -M_q grad_a Q was divided by: 1 with score_scale='fixed'),
    reward_divisor (what the critic's rewards were divided by: 1 with
    critic_reward_norm='none'),
    critic_grad_norm, actor_grad_norm and actor_lr, as scalars; with
    ``config.spread_target`` also spread (the policy's, see ``policy_spread``) and M_q
    (the value this update used: hparams.M_q x exp(state.log_m_q_gain)).

  Works under ``jax.vmap`` (seeds, hyperparameter sweeps) and inside your own ``jit``
  or ``lax.scan``.
  """
  check_batch(state, batch)
  hp, cfg = state.hparams, state.config
  schedule = make_schedule(cfg.T, cfg.beta_schedule)
  pmean = axis_pmean(axis_name)
  next_key, target_noise_key, t_key, eps_key = jax.random.split(key, 4)
  normal, randint = global_batch_draws(axis_name)

  # 1-2. Critic target from the current policy's (noised) action at s', with the rewards
  # divided by their running size if critic_reward_norm is 'running' ('shrink': only if
  # that is above 1).
  reward_divisor, reward_norm = critic_reward_divisor(cfg, state.reward_norm, state.step,
                                                      batch.reward, pmean)
  target_temperature = (hp.temperature if cfg.target_temperature is None
                        else cfg.target_temperature)
  next_action = sample_from_params(state, state.actor_params, batch.next_obs, next_key,
                                   target_temperature, normal=normal)
  # The spread controller (spread_target): M_q for this update from the factor so far,
  # the factor for the next from the policy's spread at s'.
  m_q, log_m_q_gain, controller_metrics = hp.M_q, state.log_m_q_gain, {}
  if cfg.spread_target is not None:
    m_q = hp.M_q * jnp.exp(state.log_m_q_gain)
    spread = policy_spread(state, batch.next_obs, next_key, next_action, normal, pmean)
    log_m_q_gain = spread_controller(cfg, state.log_m_q_gain, spread)
    controller_metrics = {"spread": spread, "M_q": m_q}
  next_action = jnp.clip(
      next_action + hp.target_noise * normal(target_noise_key, next_action.shape), -1.0, 1.0)
  target = losses.critic_target(state.critic, state.target_critic_params,
                                batch.reward / reward_divisor, batch.mask, batch.next_obs,
                                next_action, hp.gamma)

  # 3. Critic step.
  critic_params, critic_opt_state, critic_aux, critic_grads = critic_step(
      state, batch, target, pmean)

  # 4. Polyak target update.
  target_critic_params = optax.incremental_update(
      critic_params, state.target_critic_params, hp.tau)

  # 5-7. Actor step: regress eps_theta onto -M_q * grad_a Q at the noised replay action
  # (divided by the size of grad_a Q unless score_scale is 'fixed'; times sigma_t with
  # score_sigma_weight).
  batch_size = batch.obs.shape[0]
  t = randint(t_key, (batch_size,), 0, cfg.T)
  eps = normal(eps_key, batch.action.shape)
  noisy_action = noise_actions(schedule, batch.action, t, eps)
  score_params = target_critic_params if cfg.score_critic == "target" else critic_params
  grad_q = losses.q_action_gradient(state.critic, score_params, batch.obs, noisy_action)
  score_scale, score_norm = q_score_scale(cfg, state.score_norm, state.step, grad_q, pmean)
  score_target = -m_q * grad_q / score_scale
  if cfg.score_sigma_weight:  # the implied score -eps / sigma_t is then M_q grad_a Q
    sigma = jnp.sqrt(1.0 - jnp.asarray(schedule.alpha_bars))[t][:, None]
    score_target = sigma * score_target
  (actor_loss, eps_pred), actor_grads = jax.value_and_grad(losses.actor_loss, has_aux=True)(
      state.actor_params, state.noise_model, batch.obs, noisy_action, t, score_target)
  actor_grads = pmean(actor_grads)
  actor_lr = cosine_decay(hp.actor_lr, state.step, hp.actor_lr_decay_steps)
  actor_params, actor_opt_state = adam_step(
      cfg, state.actor_params, state.actor_opt_state, actor_grads, actor_lr)

  new_state = state.replace(
      actor_params=actor_params, critic_params=critic_params,
      target_critic_params=target_critic_params, actor_opt_state=actor_opt_state,
      critic_opt_state=critic_opt_state, step=state.step + 1, score_norm=score_norm,
      reward_norm=reward_norm, log_m_q_gain=log_m_q_gain)
  metrics = {
      "critic_loss": critic_aux["critic_loss"],
      "actor_loss": actor_loss,
      "q_mean": jnp.mean(critic_aux["q"]),
      "target_q_mean": jnp.mean(target),
      "grad_q_norm": jnp.mean(jnp.linalg.norm(grad_q, axis=-1)),
      "eps_pred_norm": jnp.mean(jnp.linalg.norm(eps_pred, axis=-1)),
      "score_target_norm": jnp.mean(jnp.linalg.norm(score_target, axis=-1)),
      "score_scale": score_scale,
      "reward_divisor": reward_divisor,
      "critic_grad_norm": optax.tree.norm(critic_grads),
      "actor_grad_norm": optax.tree.norm(actor_grads),
      "actor_lr": actor_lr,
      **controller_metrics,
  }
  return new_state, jax.tree.map(pmean, metrics)


