"""QSM's loss terms as pure functions of parameters and data (no state, no RNG)."""
from __future__ import annotations

from typing import Any

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp

from qsm_jax.ensemble import ensemble_apply

Params = Any


def critic_target(critic: nn.Module, target_params: Params, reward: jax.Array,
                  mask: jax.Array, next_obs: jax.Array, next_action: jax.Array,
                  gamma: jax.Array) -> jax.Array:
  """y = r + gamma * mask * min_i Q'_i(s', a'), without gradient. Shape (B,)."""
  chex.assert_rank([reward, mask], 1)
  next_q = ensemble_apply(critic, target_params, next_obs, next_action)
  y = reward + gamma * mask * jnp.min(next_q, axis=0)
  return jax.lax.stop_gradient(y)


def critic_loss(critic_params: Params, critic: nn.Module, obs: jax.Array, action: jax.Array,
                target: jax.Array) -> tuple[jax.Array, dict]:
  """Sum over critics of each critic's MSE to the target.

  The sum (not the mean) makes each critic's gradient exactly that of its own MSE,
  i.e. independent critic updates. Returns (loss, aux) with the per-critic MSEs' mean
  and the Q values.
  """
  q = ensemble_apply(critic, critic_params, obs, action)  # (num_critics, B)
  chex.assert_equal_shape([q[0], target])
  per_critic = jnp.mean((q - jax.lax.stop_gradient(target)) ** 2, axis=1)
  return jnp.sum(per_critic), {"critic_loss": jnp.mean(per_critic), "q": q}


def q_action_gradient(critic: nn.Module, critic_params: Params, obs: jax.Array,
                      action: jax.Array) -> jax.Array:
  """Mean over the ensemble of grad_a Q_i(s, a), per sample: (B, A), no gradient.

  Samples are independent, so the gradient of the batch sum is the per-sample gradient,
  and the gradient of the sum over critics is the sum of their gradients: one backward
  pass through the ensemble. (A jacrev over the critic axis would run a backward pass of
  the WHOLE ensemble per critic: num_critics times the work, for the same numbers.)
  """
  num_critics = jax.tree.leaves(critic_params)[0].shape[0]

  def total_q(a):
    return jnp.sum(ensemble_apply(critic, critic_params, obs, a))

  return jax.lax.stop_gradient(jax.grad(total_q)(action) / num_critics)


def actor_loss(actor_params: Params, noise_model: nn.Module, obs: jax.Array,
               noisy_action: jax.Array, t: jax.Array, score_target: jax.Array
               ) -> tuple[jax.Array, jax.Array]:
  """Mean over batch and action dims of (score_target - eps_theta(s, a~, t))^2.

  ``score_target`` is -M_q * grad_a Q at the noised action (constant). ``t`` is (B,)
  integer steps. Returns (loss, eps_theta).
  """
  t_in = t.astype(jnp.float32)[:, None]
  eps = noise_model.apply(actor_params, obs, noisy_action, t_in)
  chex.assert_equal_shape([eps, score_target])
  return jnp.mean((jax.lax.stop_gradient(score_target) - eps) ** 2), eps
