"""The QSM train state: one pytree with every array an update reads or writes."""
from __future__ import annotations

from typing import Optional

import flax.linen as nn
import flax.struct
import jax
import jax.numpy as jnp
import optax

from qsm_jax.config import QSMConfig, QSMHyperparams
from qsm_jax.ensemble import Params, ensemble_apply, ensemble_init  # noqa: F401 (re-exported)
from qsm_jax.networks import Critic, NoiseModel
from qsm_jax.shared import adam_direction


@flax.struct.dataclass
class QSMState:
  """Actor and critics with their optimizer states, target critics, counter, hyperparameters.

  Array fields are pytree leaves. The modules and config are static (part of the
  tree structure), so a jitted function taking a ``QSMState`` compiles once per
  (modules, config, shapes) and never for new values.

  Attributes:
    actor_params: variables of the noise model eps_theta.
    critic_params: variables of the critic ensemble, stacked on a leading axis.
    target_critic_params: Polyak-averaged copy of ``critic_params``.
    actor_opt_state, critic_opt_state: Adam moments (``optax.scale_by_adam``).
    step: number of updates done (int32); drives the actor's cosine lr decay.
    score_norm: moving average of the batch mean |grad_a Q| (float32 scalar, before bias
      correction); read only with ``config.score_scale == 'running'``, kept 0 otherwise.
    reward_norm: moving average of the batch mean |reward| (float32 scalar, before bias
      correction); read only with critic_reward_norm 'running' or 'shrink', 0 otherwise.
    log_m_q_gain: log of the factor on hparams.M_q set by the spread controller
      (``config.spread_target``; float32 scalar, starts at 0); 0 and unused otherwise.
    hparams: numeric hyperparameters (leaves).
    noise_model: Flax module, ``(obs, noisy_action, t) -> eps`` (static).
    critic: Flax module of ONE critic, ``(obs, action) -> q`` (static).
    config: static configuration.
    obs_dim, act_dim: sizes (static).
  """
  actor_params: Params
  critic_params: Params
  target_critic_params: Params
  actor_opt_state: optax.OptState
  critic_opt_state: optax.OptState
  step: jax.Array
  hparams: QSMHyperparams
  score_norm: jax.Array
  reward_norm: jax.Array
  log_m_q_gain: jax.Array
  noise_model: nn.Module = flax.struct.field(pytree_node=False)
  critic: nn.Module = flax.struct.field(pytree_node=False)
  config: QSMConfig = flax.struct.field(pytree_node=False)
  obs_dim: int = flax.struct.field(pytree_node=False)
  act_dim: int = flax.struct.field(pytree_node=False)


def default_networks(config: QSMConfig, act_dim: int) -> tuple[NoiseModel, Critic]:
  """The authors' noise model and critic at the sizes in ``config``."""
  noise_model = NoiseModel(act_dim=act_dim, hidden=config.actor_hidden,
                           time_hidden=config.time_hidden, fourier_size=config.fourier_size,
                           num_steps=config.T)
  return noise_model, Critic(hidden=config.critic_hidden, layer_norm=config.critic_layer_norm)


def init_state(key: jax.Array, obs_dim: int, act_dim: int,
               config: QSMConfig = QSMConfig(),
               hparams: QSMHyperparams = QSMHyperparams(),
               noise_model: Optional[nn.Module] = None,
               critic: Optional[nn.Module] = None) -> QSMState:
  """Builds a fresh train state.

  Args:
    key: PRNG key for parameter init.
    obs_dim, act_dim: observation and action sizes (actions live in [-1, 1]^act_dim).
    config: static configuration (network sizes apply to the default networks only).
    hparams: numeric hyperparameters; stored as float32 leaves.
    noise_model: your own Flax module ``(obs (B,O), x (B,A), t (B,1) float) -> (B,A)``;
      default: the authors' ``NoiseModel``.
    critic: your own Flax module for ONE critic ``(obs (B,O), a (B,A)) -> (B,)``; it is
      ensembled ``config.num_critics`` times. Default: the authors' ``Critic``.

  Works under ``jax.vmap`` over keys (one state per seed) and hyperparameter values.
  """
  for name, value in (("obs_dim", obs_dim), ("act_dim", act_dim)):
    if not isinstance(value, int) or value < 1:
      raise ValueError(f"{name} must be a positive int, got {value!r}")
  hparams.validate()
  default_noise, default_critic = default_networks(config, act_dim)
  noise_model = default_noise if noise_model is None else noise_model
  critic = default_critic if critic is None else critic

  actor_key, critic_key = jax.random.split(key)
  obs = jnp.zeros((1, obs_dim), jnp.float32)
  act = jnp.zeros((1, act_dim), jnp.float32)
  actor_params = noise_model.init(actor_key, obs, act, jnp.zeros((1, 1), jnp.float32))
  eps = noise_model.apply(actor_params, obs, act, jnp.zeros((1, 1), jnp.float32))
  if eps.shape != (1, act_dim):
    raise ValueError(f"noise model must return (B, act_dim)=(1, {act_dim}), got {eps.shape}")
  critic_params = ensemble_init(critic, critic_key, config.num_critics, obs, act)
  q = ensemble_apply(critic, critic_params, obs, act)
  if q.shape != (config.num_critics, 1):
    raise ValueError(f"critic must return (B,) Q values; got {q.shape[1:]} for B=1")
  optimizer = adam_direction(config)
  return QSMState(
      actor_params=actor_params,
      critic_params=critic_params,
      target_critic_params=critic_params,
      actor_opt_state=optimizer.init(actor_params),
      critic_opt_state=optimizer.init(critic_params),
      step=jnp.zeros((), jnp.int32),
      hparams=hparams.as_arrays(),
      score_norm=jnp.zeros((), jnp.float32),
      reward_norm=jnp.zeros((), jnp.float32),
      log_m_q_gain=jnp.zeros((), jnp.float32),
      noise_model=noise_model,
      critic=critic,
      config=config,
      obs_dim=obs_dim,
      act_dim=act_dim,
  )
