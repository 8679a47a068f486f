"""SAC (Haarnoja et al., 2018), a baseline for QSM, in the same pure-update form.

Twin critics with Polyak targets, a tanh-squashed Gaussian actor, and the entropy
temperature alpha tuned automatically toward the target entropy -act_dim (alpha starts
at 1, as in Brax's and jaxrl's SAC). It reads the shared settings of QSM's config
objects so a comparison uses the same sizes and rates: ``config.actor_hidden`` /
``critic_hidden`` / ``num_critics`` / Adam constants, ``hparams.actor_lr`` (actor and
alpha, constant), ``critic_lr``, ``gamma``, ``tau``. QSM-only fields (M_q, T, the
schedule, target/exploration noise, temperature) are ignored: SAC explores by sampling.
"""
from __future__ import annotations

import functools
from typing import Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from qsm_jax import losses
from qsm_jax.config import QSMConfig, QSMHyperparams
from qsm_jax.networks import Critic, GaussianActor
from qsm_jax.ensemble import Params, ensemble_apply, ensemble_init
from qsm_jax.shared import (Batch, adam_direction, adam_step, axis_pmean, check_batch,
                            critic_step, global_batch_draws)


@flax.struct.dataclass
class SACState:
  """Actor, critics, targets, log alpha, their Adam states and the update counter."""
  actor_params: Params
  critic_params: Params
  target_critic_params: Params
  log_alpha: jax.Array
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  alpha_opt_state: optax.OptState
  step: jax.Array
  hparams: QSMHyperparams
  actor: nn.Module = flax.struct.field(pytree_node=False)
  critic: nn.Module = flax.struct.field(pytree_node=False)
  config: QSMConfig = flax.struct.field(pytree_node=False)
  obs_dim: int = flax.struct.field(pytree_node=False)
  act_dim: int = flax.struct.field(pytree_node=False)


def init_sac(key: jax.Array, obs_dim: int, act_dim: int, config: QSMConfig = QSMConfig(),
             hparams: QSMHyperparams = QSMHyperparams()) -> SACState:
  """A fresh SAC state with the default networks at ``config``'s sizes (vmappable)."""
  hparams.validate()
  actor, critic = GaussianActor(act_dim, config.actor_hidden), Critic(config.critic_hidden, config.critic_layer_norm)
  actor_key, critic_key = jax.random.split(key)
  obs = jnp.zeros((1, obs_dim), jnp.float32)
  act = jnp.zeros((1, act_dim), jnp.float32)
  actor_params = actor.init(actor_key, obs)
  critic_params = ensemble_init(critic, critic_key, config.num_critics, obs, act)
  log_alpha = jnp.zeros((), jnp.float32)
  adam = adam_direction(config)
  return SACState(actor_params=actor_params, critic_params=critic_params,
                  target_critic_params=critic_params, log_alpha=log_alpha,
                  actor_opt_state=adam.init(actor_params),
                  critic_opt_state=adam.init(critic_params),
                  alpha_opt_state=adam.init(log_alpha), step=jnp.zeros((), jnp.int32),
                  hparams=hparams.as_arrays(), actor=actor, critic=critic, config=config,
                  obs_dim=obs_dim, act_dim=act_dim)


def tanh_gaussian(mean: jax.Array, log_std: jax.Array, noise: jax.Array
                  ) -> tuple[jax.Array, jax.Array]:
  """(tanh(mean + std * noise), its log-density), summed over action dims.

  log(1 - tanh(u)^2) = 2 (log 2 - u - softplus(-2u)): exact and stable for large |u|.
  """
  pre = mean + jnp.exp(log_std) * noise
  gaussian = jnp.sum(-0.5 * noise ** 2 - log_std - 0.5 * jnp.log(2.0 * jnp.pi), axis=-1)
  squash = jnp.sum(2.0 * (jnp.log(2.0) - pre - jax.nn.softplus(-2.0 * pre)), axis=-1)
  return jnp.tanh(pre), gaussian - squash


@functools.partial(jax.jit, static_argnames=("explore",))
def sac_act(state: SACState, obs: jax.Array, key: jax.Array, explore: bool = False
            ) -> jax.Array:
  """SAC's actions for (B, obs_dim) observations: a sample from the squashed
  Gaussian when ``explore``, else tanh(mean) (what evaluations use)."""
  mean, log_std = state.actor.apply(state.actor_params, obs)
  if not explore:
    return jnp.tanh(mean)
  action, _ = tanh_gaussian(mean, log_std, jax.random.normal(key, mean.shape, mean.dtype))
  return action




@functools.partial(jax.jit, static_argnames=("axis_name",))
def sac_update(state: SACState, batch: Batch, key: jax.Array,
               axis_name: Optional[str] = None) -> tuple[SACState, dict]:
  """One SAC update: critic step, Polyak targets, actor step, alpha step.

  Pure and jitted, the same contract as ``qsm_update``: ``(state, batch, key,
  axis_name=None) -> (new_state, metrics)``; with ``axis_name`` the batch is this device's
  shard of a global batch (gradients pmean-ed, draws made for the global batch).
  Metrics: critic_loss, actor_loss, q_mean, target_q_mean, alpha, entropy (-E log pi),
  critic_grad_norm, actor_grad_norm.
  """
  check_batch(state, batch)
  hp, cfg = state.hparams, state.config
  pmean = axis_pmean(axis_name)
  normal, _ = global_batch_draws(axis_name)
  next_key, actor_key = jax.random.split(key)
  alpha = jnp.exp(state.log_alpha)
  shape = batch.action.shape

  # Critic: soft target from a fresh action at s' and the target critics.
  mean, log_std = state.actor.apply(state.actor_params, batch.next_obs)
  next_action, next_logp = tanh_gaussian(mean, log_std, normal(next_key, shape))
  # y = r + gamma * mask * (min_i Q'_i(s', a') - alpha log pi(a'|s')), written as QSM's
  # target with the entropy term folded into the reward.
  soft_reward = batch.reward - hp.gamma * batch.mask * alpha * next_logp
  target = losses.critic_target(state.critic, state.target_critic_params, soft_reward,
                                batch.mask, batch.next_obs, next_action, hp.gamma)
  critic_params, critic_opt_state, critic_aux, critic_grads = critic_step(
      state, batch, target, pmean)
  target_critic_params = optax.incremental_update(
      critic_params, state.target_critic_params, hp.tau)

  # Actor: maximise min_i Q_i(s, a) - alpha log pi(a|s) with the critics just updated.
  noise = normal(actor_key, shape)

  def actor_loss(params):
    mean, log_std = state.actor.apply(params, batch.obs)
    action, logp = tanh_gaussian(mean, log_std, noise)
    q = jnp.min(ensemble_apply(state.critic, critic_params, batch.obs, action), axis=0)
    return jnp.mean(alpha * logp - q), logp

  (actor_loss_value, logp), actor_grads = jax.value_and_grad(actor_loss, has_aux=True)(
      state.actor_params)
  actor_grads = pmean(actor_grads)
  actor_params, actor_opt_state = adam_step(
      cfg, state.actor_params, state.actor_opt_state, actor_grads, hp.actor_lr)

  # Temperature: loss -log_alpha * (E log pi + target_entropy), target_entropy = -act_dim;
  # its gradient is entropy - target_entropy: alpha falls while entropy exceeds the target.
  entropy = -pmean(jnp.mean(logp))
  alpha_grad = entropy + state.act_dim
  log_alpha, alpha_opt_state = adam_step(
      cfg, state.log_alpha, state.alpha_opt_state, jax.lax.stop_gradient(alpha_grad),
      hp.actor_lr)

  new_state = state.replace(
      actor_params=actor_params, critic_params=critic_params,
      target_critic_params=target_critic_params, log_alpha=log_alpha,
      actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
      alpha_opt_state=alpha_opt_state, step=state.step + 1)
  metrics = {
      "critic_loss": critic_aux["critic_loss"],
      "actor_loss": actor_loss_value,
      "q_mean": jnp.mean(critic_aux["q"]),
      "target_q_mean": jnp.mean(target),
      "alpha": alpha,
      "entropy": entropy,
      "critic_grad_norm": optax.tree.norm(critic_grads),
      "actor_grad_norm": optax.tree.norm(actor_grads),
  }
  return new_state, jax.tree.map(pmean, metrics)


