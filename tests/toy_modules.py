"""Small user-defined Flax modules with closed-form behaviour, for hand-checked tests."""
import flax.linen as nn
import jax.numpy as jnp


class LinearCritic(nn.Module):
  """Q(s, a) = a . w: grad_a Q = w."""
  act_dim: int

  @nn.compact
  def __call__(self, obs, action):
    w = self.param("w", nn.initializers.zeros, (self.act_dim,))
    return action @ w


class ConstantNoise(nn.Module):
  """eps(s, a, t) = b for every input."""
  act_dim: int

  @nn.compact
  def __call__(self, obs, x, t):
    b = self.param("b", nn.initializers.zeros, (self.act_dim,))
    return jnp.zeros_like(x) + b


class QuadraticCritic(nn.Module):
  """Q(s, a) = -||a - a*(s)||^2 with a*(s) = 0.5 * s[:, :A]; no parameters to learn."""
  act_dim: int

  def optimum(self, obs):
    return 0.5 * obs[:, :self.act_dim]

  @nn.compact
  def __call__(self, obs, action):
    # A dummy parameter keeps the tree non-empty; it does not change Q.
    dummy = self.param("unused", nn.initializers.zeros, ())
    return -jnp.sum((action - self.optimum(obs)) ** 2, axis=-1) + 0.0 * dummy


class ScaledCritic(nn.Module):
  """Another critic's Q times ``scale``: the same task with rewards in other units."""
  critic: nn.Module
  scale: float

  def __call__(self, obs, action):
    return self.scale * self.critic(obs, action)
