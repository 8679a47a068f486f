"""TD3 (Fujimoto et al., 2018), a baseline for QSM, in the same pure-update form.

Twin critics, clipped double-Q targets with target-policy smoothing, and a deterministic
tanh actor updated (with both targets) every second update. It reads the shared settings
of QSM's config objects so a comparison uses the same sizes and rates:
``config.actor_hidden`` / ``critic_hidden`` / ``num_critics`` / Adam constants,
``hparams.actor_lr`` (constant), ``critic_lr``, ``gamma``, ``tau``, and
``exploration_noise`` (Gaussian noise added while collecting data, 0.1 as in TD3).
The target-policy smoothing is TD3's own (noise 0.2 clipped to 0.5), not QSM's
``target_noise``.
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
from qsm_jax.networks import Critic, DeterministicActor
from qsm_jax.ensemble import Params, ensemble_init
from qsm_jax.shared import (Batch, adam_direction, adam_step, axis_pmean, check_batch,
                            critic_step, global_batch_draws)

POLICY_NOISE = 0.2   # std of the smoothing noise on the target action
NOISE_CLIP = 0.5     # the smoothing noise is clipped to [-NOISE_CLIP, NOISE_CLIP]
POLICY_DELAY = 2     # critic updates per actor (and target) update


@flax.struct.dataclass
class TD3State:
  """Actor, critics, both target copies, their Adam states and the update counter."""
  actor_params: Params
  target_actor_params: Params
  critic_params: Params
  target_critic_params: Params
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  step: jax.Array
  hparams: QSMHyperparams
  actor: nn.Module = flax.struct.field(pytree_node=False)
  critic: nn.Module = flax.struct.field(pytree_node=False)
  config: QSMConfig = flax.struct.field(pytree_node=False)
  obs_dim: int = flax.struct.field(pytree_node=False)
  act_dim: int = flax.struct.field(pytree_node=False)


def init_td3(key: jax.Array, obs_dim: int, act_dim: int, config: QSMConfig = QSMConfig(),
             hparams: QSMHyperparams = QSMHyperparams()) -> TD3State:
  """A fresh TD3 state with the default networks at ``config``'s sizes (vmappable)."""
  hparams.validate()
  actor = DeterministicActor(act_dim, config.actor_hidden)
  critic = Critic(config.critic_hidden, config.critic_layer_norm)
  actor_key, critic_key = jax.random.split(key)
  obs = jnp.zeros((1, obs_dim), jnp.float32)
  act = jnp.zeros((1, act_dim), jnp.float32)
  actor_params = actor.init(actor_key, obs)
  critic_params = ensemble_init(critic, critic_key, config.num_critics, obs, act)
  adam = adam_direction(config)
  return TD3State(actor_params=actor_params, target_actor_params=actor_params,
                  critic_params=critic_params, target_critic_params=critic_params,
                  actor_opt_state=adam.init(actor_params),
                  critic_opt_state=adam.init(critic_params), step=jnp.zeros((), jnp.int32),
                  hparams=hparams.as_arrays(), actor=actor, critic=critic, config=config,
                  obs_dim=obs_dim, act_dim=act_dim)


@functools.partial(jax.jit, static_argnames=("explore",))
def td3_act(state: TD3State, obs: jax.Array, key: jax.Array, explore: bool = False
            ) -> jax.Array:
  """TD3's actions for (B, obs_dim) observations: the deterministic actor,
  plus N(0, exploration_noise^2) clipped to [-1, 1] when ``explore``."""
  action = state.actor.apply(state.actor_params, obs)
  if explore:
    noise = jax.random.normal(key, action.shape, action.dtype)
    action = jnp.clip(action + state.hparams.exploration_noise * noise, -1.0, 1.0)
  return action




def _td3_step(state: TD3State, batch: Batch, key: jax.Array, axis_name: Optional[str],
              actor_step: Optional[bool]) -> tuple[TD3State, dict]:
  """A critic step, then the actor step and the Polyak update of both targets when
  ``actor_step``: True / False decide it while tracing (nothing of the other branch is
  traced); None decides it from the counter (``lax.cond`` on ``state.step``)."""
  check_batch(state, batch)
  hp, cfg = state.hparams, state.config
  pmean = axis_pmean(axis_name)
  normal, _ = global_batch_draws(axis_name)

  # Critic: clipped double-Q target at the smoothed target-policy action.
  smoothing = jnp.clip(POLICY_NOISE * normal(key, batch.action.shape), -NOISE_CLIP, NOISE_CLIP)
  next_action = jnp.clip(state.actor.apply(state.target_actor_params, batch.next_obs)
                         + smoothing, -1.0, 1.0)
  target = losses.critic_target(state.critic, state.target_critic_params, batch.reward,
                                batch.mask, batch.next_obs, next_action, hp.gamma)
  critic_params, critic_opt_state, critic_aux, critic_grads = critic_step(
      state, batch, target, pmean)

  # Actor: maximise Q_1(s, pi(s)), then both targets move.
  first_critic = jax.tree.map(lambda x: x[0], critic_params)

  def actor_loss(params):
    action = state.actor.apply(params, batch.obs)
    return -jnp.mean(state.critic.apply(first_critic, batch.obs, action))

  def with_actor(_):
    loss, grads = jax.value_and_grad(actor_loss)(state.actor_params)
    grads = pmean(grads)
    params, opt_state = adam_step(cfg, state.actor_params, state.actor_opt_state, grads,
                                  hp.actor_lr)
    targets = (optax.incremental_update(params, state.target_actor_params, hp.tau),
               optax.incremental_update(critic_params, state.target_critic_params, hp.tau))
    return params, opt_state, targets, pmean(loss), optax.tree.norm(grads)

  def without_actor(_):
    targets = (state.target_actor_params, state.target_critic_params)
    return (state.actor_params, state.actor_opt_state, targets,
            pmean(actor_loss(state.actor_params)), jnp.zeros((), jnp.float32))

  if actor_step is None:
    branch = jax.lax.cond(state.step % POLICY_DELAY == 0, with_actor, without_actor, None)
  else:
    branch = with_actor(None) if actor_step else without_actor(None)
  actor_params, actor_opt_state, (target_actor, target_critic), loss, grad_norm = branch

  new_state = state.replace(
      actor_params=actor_params, target_actor_params=target_actor,
      critic_params=critic_params, target_critic_params=target_critic,
      actor_opt_state=actor_opt_state, critic_opt_state=critic_opt_state,
      step=state.step + 1)
  metrics = {
      "critic_loss": pmean(critic_aux["critic_loss"]),
      "actor_loss": loss,
      "q_mean": pmean(jnp.mean(critic_aux["q"])),
      "target_q_mean": pmean(jnp.mean(target)),
      "critic_grad_norm": optax.tree.norm(critic_grads),
      "actor_grad_norm": grad_norm,  # 0 on the updates without an actor step
  }
  return new_state, metrics


@functools.partial(jax.jit, static_argnames=("axis_name",))
def td3_update(state: TD3State, batch: Batch, key: jax.Array,
               axis_name: Optional[str] = None) -> tuple[TD3State, dict]:
  """One TD3 update: critic step; every second call (``state.step`` even) also the actor
  step and the Polyak update of both targets.

  Pure and jitted, the same contract as ``qsm_update``: ``(state, batch, key,
  axis_name=None) -> (new_state, metrics)``. Metrics: critic_loss, actor_loss (-Q_1(s, pi(s))
  before the step), q_mean, target_q_mean, critic_grad_norm, actor_grad_norm (0 on the
  calls without an actor step).

  The delay is a ``lax.cond``: under ``vmap`` (several seeds) it becomes a select that
  computes both branches; ``td3_update_pair`` skips the actor's work for real.
  """
  return _td3_step(state, batch, key, axis_name, actor_step=None)


@functools.partial(jax.jit, static_argnames=("axis_name",))
def td3_update_pair(state: TD3State, batches: Batch, keys: jax.Array,
                    axis_name: Optional[str] = None) -> tuple[TD3State, dict]:
  """Two TD3 updates from an even ``state.step``: the first with the actor step and the
  Polyak updates, the second critic-only, with no select in between. The same result
  as two ``td3_update`` calls (tests/test_baselines.py), at the cost of one actor step
  under ``vmap`` too.

  ``batches`` and ``keys`` have a leading axis of 2 (one per update). Metrics are the
  two updates' means, except actor_loss and actor_grad_norm: the actor step's.
  """
  state, first = _td3_step(state, jax.tree.map(lambda x: x[0], batches), keys[0], axis_name,
                           actor_step=True)
  state, second = _td3_step(state, jax.tree.map(lambda x: x[1], batches), keys[1], axis_name,
                            actor_step=False)
  metrics = jax.tree.map(lambda a, b: (a + b) / 2, first, second)
  metrics.update(actor_loss=first["actor_loss"], actor_grad_norm=first["actor_grad_norm"])
  return state, metrics
