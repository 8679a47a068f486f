"""Default Flax networks of QSM (the authors' defaults, sizes configurable).

Any Flax module with the same call signature can replace them:
  noise model: ``model(obs (B, O), noisy_action (B, A), t (B, 1) float32) -> (B, A)``
  critic:      ``critic(obs (B, O), action (B, A)) -> (B,)``
The baselines' actors (``GaussianActor`` for SAC, ``DeterministicActor`` for TD3) are
ReLU MLPs on the observation. The twin critics are one stacked parameter tree (leading axis = critic index), made
by vmapping ``init`` / ``apply`` of a single critic: see ``qsm_jax.state``.
"""
from __future__ import annotations

from typing import Callable, Optional, Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

default_init = nn.initializers.xavier_uniform


def mish(x: jax.Array) -> jax.Array:
  """Mish activation, x * tanh(softplus(x)), with one exp instead of exp, log1p and tanh.

  With w = e^x, tanh(log(1 + w)) = n / (n + 2) where n = w (w + 2). Above x = 20 that
  ratio is 1 in float32, so w is capped there and nothing overflows. Equal to the
  textbook form to float32 rounding, and so is its gradient (by autodiff). A QSM update
  ran 10-24% faster with it on CPU (benchmarks/RESULTS.md).
  """
  w = jnp.exp(jnp.minimum(x, 20.0))
  n = w * (w + 2.0)
  return x * (n / (n + 2.0))


class MLP(nn.Module):
  """Dense layers with Xavier-uniform init; no activation after the last one. With
  ``layer_norm``, every hidden Dense is followed by a LayerNorm before the activation."""
  features: Sequence[int]
  activation: Callable[[jax.Array], jax.Array] = nn.relu
  layer_norm: bool = False

  @nn.compact
  def __call__(self, x: jax.Array, extra: Optional[jax.Array] = None,
               extra_rows: Optional[jax.Array] = None) -> jax.Array:
    """MLP(x), or MLP([x, extra]) with the first layer a ``ConcatDense`` when extra is given."""
    for i, width in enumerate(self.features):
      if i == 0 and extra is not None:
        x = ConcatDense(width, name="Dense_0")(x, extra, extra_rows)
      else:
        x = nn.Dense(width, kernel_init=default_init(), name=f"Dense_{i}")(x)
      if i + 1 < len(self.features):
        if self.layer_norm:
          x = nn.LayerNorm(name=f"LayerNorm_{i}")(x)
        x = self.activation(x)
    return x


class ConcatDense(nn.Module):
  """``nn.Dense`` on ``[x, extra]`` (same parameters), as x @ K_x + extra @ K_e + b.

  ``extra`` may hold fewer rows than ``x``: then ``extra_rows`` (B,) int picks row
  ``extra_rows[i]`` of ``extra @ K_e`` for row i, so a part shared by many rows (the
  time embedding of T diffusion steps) is multiplied once per distinct value, not once
  per row. A row index outside [0, len(extra)) gives NaN outputs.
  """
  features: int

  @nn.compact
  def __call__(self, x: jax.Array, extra: jax.Array,
               extra_rows: Optional[jax.Array] = None) -> jax.Array:
    nx = x.shape[-1]
    kernel = self.param("kernel", default_init(), (nx + extra.shape[-1], self.features),
                        jnp.float32)
    bias = self.param("bias", nn.initializers.zeros_init(), (self.features,), jnp.float32)
    e = extra @ kernel[nx:]
    if extra_rows is not None:
      # A row outside [0, len(extra)) gives NaN, instead of wrapping around silently.
      rows = jnp.where(extra_rows < 0, extra.shape[0], extra_rows)
      e = jnp.take(e, rows, axis=0, mode="fill", fill_value=jnp.nan)
    return x @ kernel[:nx] + e + bias


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
  """eps_theta(s, a_t, t): time embedding -> mish MLP, then mish MLP on [a_t, s, emb].

  Attributes:
    act_dim: action size (the output width).
    hidden, time_hidden, fourier_size: the main MLP, the time MLP, the Fourier features.
    num_steps: None, or T: then ``t`` must hold integer steps in [0, T), as QSM's
      sampler and actor loss pass (a step outside gives NaN; a fractional one is
      truncated). The time embedding and its share of the first layer
      are computed for the T steps once per call and picked per row, instead of once per
      row: a quarter of the noise model's FLOPs at the spec's sizes, 43% at 256 wide.
      The same function, to float32 rounding, with the same parameters.
  """
  act_dim: int
  hidden: Sequence[int] = (512, 512)
  time_hidden: Sequence[int] = (128, 128)
  fourier_size: int = 64
  num_steps: Optional[int] = None

  @nn.compact
  def __call__(self, obs: jax.Array, noisy_action: jax.Array, t: jax.Array) -> jax.Array:
    if self.num_steps is None:
      steps, rows = t, None
    else:
      steps = jnp.arange(self.num_steps, dtype=jnp.float32)[:, None]
      rows = t[..., 0].astype(jnp.int32)
    emb = FourierFeatures(self.fourier_size, name="FourierFeatures_0")(steps)
    emb = MLP(tuple(self.time_hidden), activation=mish, name="MLP_0")(emb)
    x = jnp.concatenate([noisy_action, obs], axis=-1)
    return MLP((*self.hidden, self.act_dim), activation=mish, name="MLP_1")(x, emb, rows)


class Critic(nn.Module):
  """Q(s, a): ReLU MLP on [s, a] with a linear scalar head (the authors' critic).

  ``layer_norm`` puts a LayerNorm after every hidden Dense, so the hidden features keep
  unit scale (a common way to steady critics). Off by default (the paper's critic); on
  reacher it made QSM worse (experiments/RESULTS.md, third session).
  """
  hidden: Sequence[int] = (512, 512)
  layer_norm: bool = False

  @nn.compact
  def __call__(self, obs: jax.Array, action: jax.Array) -> jax.Array:
    x = jnp.concatenate([obs, action], axis=-1)
    return MLP((*self.hidden, 1), activation=nn.relu, layer_norm=self.layer_norm)(x)[..., 0]


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
