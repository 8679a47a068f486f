"""What QSM, SAC and TD3 share: the batch, the Adam step with a traced learning rate, the
critic ensemble's step, global-batch random draws and the device-mean helper."""
from __future__ import annotations

from typing import Callable, Optional

import chex
import flax.struct
import jax
import jax.numpy as jnp
import optax

from qsm_jax import losses


@flax.struct.dataclass
class Batch:
  """A batch of transitions.

  Attributes:
    obs: (B, obs_dim).
    action: (B, act_dim), in [-1, 1].
    reward: (B,).
    next_obs: (B, obs_dim).
    mask: (B,) continuation mask: 0 only at a true terminal, 1 otherwise (including
      time-limit truncations, which are not terminal).
  """
  obs: jax.Array
  action: jax.Array
  reward: jax.Array
  next_obs: jax.Array
  mask: jax.Array


def cosine_decay(base_lr: jax.Array, step: jax.Array, decay_steps: jax.Array) -> jax.Array:
  """optax.cosine_decay_schedule(base_lr, decay_steps) at ``step``, with traced decay_steps.

  decay_steps <= 0 means a constant learning rate.
  """
  safe_steps = jnp.maximum(decay_steps, 1.0)
  frac = jnp.minimum(step.astype(jnp.float32), safe_steps) / safe_steps
  decayed = base_lr * 0.5 * (1.0 + jnp.cos(jnp.pi * frac))
  return jnp.where(decay_steps > 0, decayed, base_lr)


def adam_direction(config) -> optax.GradientTransformation:
  """Adam without the learning rate: the lr is a hyperparameter leaf applied in the update."""
  return optax.scale_by_adam(b1=config.adam_b1, b2=config.adam_b2, eps=config.adam_eps)


def adam_step(config, params, opt_state, grads, lr):
  """One Adam step with a (traced) learning rate; shared by QSM and the baselines."""
  direction, opt_state = adam_direction(config).update(grads, opt_state, params)
  params = optax.apply_updates(params, jax.tree.map(lambda d: -lr * d, direction))
  return params, opt_state


def axis_pmean(axis_name: Optional[str]) -> Callable:
  """The mean over the mapped axis ``axis_name`` (identity without one)."""
  return (lambda x: jax.lax.pmean(x, axis_name)) if axis_name else (lambda x: x)


def global_batch_draws(axis_name: Optional[str]):
  """(normal, randint) drawing for the GLOBAL batch and keeping this device's rows.

  With the same key on every device, k devices then draw exactly the numbers one
  device draws for the whole batch, so a data-parallel update is the same algorithm
  as the single-device one (up to float reduction order).
  """
  normal = lambda k, shape: jax.random.normal(k, shape, jnp.float32)
  randint = lambda k, shape, lo, hi: jax.random.randint(k, shape, lo, hi)
  if axis_name is None:
    return normal, randint
  n, i = jax.lax.axis_size(axis_name), jax.lax.axis_index(axis_name)

  def local(draw):
    def draw_rows(key, shape, *args):
      full = draw(key, (n * shape[0], *shape[1:]), *args)
      return jax.lax.dynamic_slice_in_dim(full, i * shape[0], shape[0])
    return draw_rows

  return local(normal), local(randint)


def check_batch(state, batch: Batch) -> None:
  """Shapes of a batch against any agent state with obs_dim / act_dim."""
  b = batch.obs.shape[0]
  chex.assert_shape(batch.obs, (b, state.obs_dim))
  chex.assert_shape(batch.next_obs, (b, state.obs_dim))
  chex.assert_shape(batch.action, (b, state.act_dim))
  chex.assert_shape([batch.reward, batch.mask], (b,))


def critic_step(state, batch: Batch, target: jax.Array, pmean):
  """One Adam step of the critic ensemble toward ``target`` (shared by QSM and baselines).

  Returns (critic_params, critic_opt_state, aux of losses.critic_loss, averaged grads).
  """
  (_, aux), grads = jax.value_and_grad(losses.critic_loss, has_aux=True)(
      state.critic_params, state.critic, batch.obs, batch.action, target)
  grads = pmean(grads)
  params, opt_state = adam_step(state.config, state.critic_params, state.critic_opt_state,
                                grads, state.hparams.critic_lr)
  return params, opt_state, aux, grads
