"""Default Flax networks of QSM (the authors' defaults, sizes configurable).

Any Flax module with the same call signature can replace them:
  noise model: ``model(obs (B, O), noisy_action (B, A), t (B, 1) float32) -> (B, A)``
  critic:      ``critic(obs (B, O), action (B, A)) -> (B,)``
The baselines' actors (``GaussianActor`` for SAC, ``DeterministicActor`` for TD3) are
ReLU MLPs on the observation. The twin critics are one stacked parameter tree (leading axis = critic index), made
by vmapping ``init`` / ``apply`` of a single critic: see ``qsm_jax.state``.
"""
from __future__ import annotations

from typing import Callable, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.xavier_uniform


def mish(x: jax.Array) -> jax.Array:
  """Mish activation: x * tanh(softplus(x))."""
  return x * jnp.tanh(jax.nn.softplus(x))


class MLP(nn.Module):
  """Dense layers with Xavier-uniform init; no activation after the last one."""
  features: Sequence[int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu

  @nn.compact
  def __call__(self, x: jax.Array) -> jax.Array:
    for i, width in enumerate(self.features):
      x = nn.Dense(width, kernel_init=default_init())(x)
      if i + 1 < len(self.features):
        x = self.activation(x)
    return x


class FourierFeatures(nn.Module):
  """Learnable Fourier features of the diffusion step: [cos 2 pi t W^T, sin 2 pi t W^T]."""
  output_size: int = 64

  @nn.compact
  def __call__(self, t: jax.Array) -> jax.Array:
    w = self.param("kernel", nn.initializers.normal(0.2),
                   (self.output_size // 2, t.shape[-1]), jnp.float32)
    f = 2.0 * jnp.pi * t @ w.T
    return jnp.concatenate([jnp.cos(f), jnp.sin(f)], axis=-1)


class NoiseModel(nn.Module):
  """eps_theta(s, a_t, t): time embedding -> mish MLP, then mish MLP on [a_t, s, emb]."""
  act_dim: int
  hidden: Sequence[int] = (512, 512)
  time_hidden: Sequence[int] = (128, 128)
  fourier_size: int = 64

  @nn.compact
  def __call__(self, obs: jax.Array, noisy_action: jax.Array, t: jax.Array) -> jax.Array:
    emb = FourierFeatures(self.fourier_size)(t)
    emb = MLP(tuple(self.time_hidden), activation=mish)(emb)
    x = jnp.concatenate([noisy_action, obs, emb], axis=-1)
    return MLP((*self.hidden, self.act_dim), activation=mish)(x)


class Critic(nn.Module):
  """Q(s, a): ReLU MLP on [s, a] with a linear scalar head."""
  hidden: Sequence[int] = (512, 512)

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs, action], axis=-1)
    return MLP((*self.hidden, 1), activation=nn.relu)(x)[..., 0]


class GaussianActor(nn.Module):
  """SAC's actor: ReLU MLP on s -> (mean, log_std) of a Gaussian, squashed by tanh later.

  log_std is clipped to [-10, 2] (the usual SAC bounds), so the std stays in [4.5e-5, 7.4].
  """
  act_dim: int
  hidden: Sequence[int] = (512, 512)

  @nn.compact
  def __call__(self, obs: jax.Array) -> tuple[jax.Array, jax.Array]:
    out = MLP((*self.hidden, 2 * self.act_dim), activation=nn.relu)(obs)
    mean, log_std = jnp.split(out, 2, axis=-1)
    return mean, jnp.clip(log_std, -10.0, 2.0)


class DeterministicActor(nn.Module):
  """TD3's actor: ReLU MLP on s, tanh to [-1, 1]."""
  act_dim: int
  hidden: Sequence[int] = (512, 512)

  @nn.compact
  def __call__(self, obs: jax.Array) -> jax.Array:
    return jnp.tanh(MLP((*self.hidden, self.act_dim), activation=nn.relu)(obs))
