"""QSM's update in PyTorch: the same algorithm as ``qsm_jax.qsm_update``, for side-by-side speed.

Written the way a competent PyTorch user would write it: ``nn.Module`` networks, the twin
critics as ONE batched ensemble (``baddbmm``, as in CORL/EDAC-style ensembles) instead of
a Python loop, fused Adam, in-place Polyak averaging with ``_foreach_lerp_``, no host
syncs inside an update. ``TorchQSM(compile=True)`` wraps the three compute phases in
``torch.compile``.

Mirrors shared/QSM_SPEC.md and qsm_jax exactly (see tests/test_torch_equivalence.py):
noise model with learnable Fourier time features and mish MLPs, ReLU critics, Xavier-
uniform kernels and zero biases, the vp schedule, the T-step DDPM sampler with per-step
clipping and temperature, critic target min over target critics with clipped target
noise and the continuation mask, critic loss = SUM of per-critic MSEs, Polyak targets,
actor loss = MSE to -M_q * mean_i grad_a Q_i, Adam (optax's scale_by_adam constants),
cosine-decayed actor lr.

Random numbers: ``update(batch, draws=None)`` draws its own (torch RNG) or takes a
``Draws`` with exactly the numbers the JAX update drew, so the test can compare.
"""
from __future__ import annotations

import dataclasses
import math
from typing import Mapping, NamedTuple, Optional, Sequence

import numpy as np
import torch
from torch import nn
import torch.nn.functional as F


@dataclasses.dataclass(frozen=True)
class TorchQSMConfig:
  """The static sizes and numeric hyperparameters (qsm_jax.QSMConfig + QSMHyperparams).

  No defaults of its own: ``from_qsm`` copies them from qsm_jax's config objects, so the
  two implementations cannot drift apart.
  """
  obs_dim: int
  act_dim: int
  T: int
  clip_sampler: bool
  num_critics: int
  actor_hidden: Sequence[int]
  time_hidden: Sequence[int]
  fourier_size: int
  critic_hidden: Sequence[int]
  adam_b1: float
  adam_b2: float
  adam_eps: float
  M_q: float
  gamma: float
  tau: float
  actor_lr: float
  actor_lr_decay_steps: float
  critic_lr: float
  target_noise: float
  temperature: float

  @classmethod
  def from_qsm(cls, obs_dim: int, act_dim: int, config, hparams) -> "TorchQSMConfig":
    """From a ``qsm_jax.QSMConfig`` and ``QSMHyperparams`` (same field names)."""
    values = {}
    for field in dataclasses.fields(cls)[2:]:
      source = config if hasattr(config, field.name) else hparams
      value = getattr(source, field.name)
      values[field.name] = value if isinstance(value, (bool, int, tuple)) else float(value)
    return cls(obs_dim=obs_dim, act_dim=act_dim, **values)


def vp_beta_schedule(T: int, b_min: float = 0.1, b_max: float = 10.0) -> np.ndarray:
  """The spec's vp schedule, computed as qsm_jax.diffusion does (float64, then float32)."""
  t = np.arange(1, T + 1, dtype=np.float64)
  alpha = np.exp(-b_min / T - 0.5 * (b_max - b_min) * (2 * t - 1) / T**2)
  return (1.0 - alpha).astype(np.float32)


class Schedule(NamedTuple):
  betas: np.ndarray
  alphas: np.ndarray
  alpha_bars: np.ndarray


def make_schedule(T: int) -> Schedule:
  betas = vp_beta_schedule(T)
  alphas = (1.0 - betas).astype(np.float32)
  alpha_bars = np.cumprod(alphas.astype(np.float64)).astype(np.float32)
  return Schedule(betas, alphas, alpha_bars)


# ---------------------------------------------------------------------------- networks

def xavier_linear(fan_in: int, fan_out: int) -> nn.Linear:
  layer = nn.Linear(fan_in, fan_out)
  nn.init.xavier_uniform_(layer.weight)
  nn.init.zeros_(layer.bias)  # Flax Dense's default bias init
  return layer


class MLP(nn.Module):
  """Linear layers with an activation between them (none after the last)."""

  def __init__(self, in_dim: int, features: Sequence[int], activation):
    super().__init__()
    dims = [in_dim, *features]
    self.layers = nn.ModuleList(xavier_linear(a, b) for a, b in zip(dims[:-1], dims[1:]))
    self.activation = activation

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i + 1 < len(self.layers):
        x = self.activation(x)
    return x


class FourierFeatures(nn.Module):
  """[cos 2 pi t W^T, sin 2 pi t W^T] with a learnable (size/2, 1) kernel, init N(0, 0.2^2)."""

  def __init__(self, output_size: int):
    super().__init__()
    self.kernel = nn.Parameter(torch.randn(output_size // 2, 1) * 0.2)

  def forward(self, t: torch.Tensor) -> torch.Tensor:
    f = 2.0 * math.pi * t @ self.kernel.T
    return torch.cat([torch.cos(f), torch.sin(f)], dim=-1)


class NoiseModel(nn.Module):
  """eps_theta(s, a_t, t): Fourier time features -> mish MLP; mish MLP on [a_t, s, emb].

  As qsm_jax's ``NoiseModel(num_steps=T)``: ``t`` holds integer steps in [0, T), so the
  time embedding and its share of the first layer are computed for the T steps once per
  call and picked per row (the same function; what qsm_jax does, so both run the same
  FLOPs).
  """

  def __init__(self, cfg: TorchQSMConfig):
    super().__init__()
    self.fourier = FourierFeatures(cfg.fourier_size)
    self.time_mlp = MLP(cfg.fourier_size, cfg.time_hidden, F.mish)
    in_dim = cfg.act_dim + cfg.obs_dim + cfg.time_hidden[-1]
    self.mlp = MLP(in_dim, (*cfg.actor_hidden, cfg.act_dim), F.mish)
    self.register_buffer("steps", torch.arange(cfg.T, dtype=torch.float32)[:, None])

  def forward(self, obs: torch.Tensor, noisy_action: torch.Tensor,
              t: torch.Tensor) -> torch.Tensor:
    emb = self.time_mlp(self.fourier(self.steps))                    # (T, E)
    first, rest = self.mlp.layers[0], self.mlp.layers[1:]
    x = torch.cat([noisy_action, obs], dim=-1)
    nx = x.shape[-1]
    step_part = F.linear(emb, first.weight[:, nx:])                   # (T, H)
    x = F.linear(x, first.weight[:, :nx], first.bias) + step_part[t[:, 0].long()]
    for layer in rest:
      x = layer(F.mish(x))
    return x


class EnsembleLinear(nn.Module):
  """``num`` independent Linear layers applied as one batched matmul: (E, B, in) -> (E, B, out)."""

  def __init__(self, num: int, fan_in: int, fan_out: int):
    super().__init__()
    # Stored (E, in, out) like qsm_jax's stacked Flax kernels; each slice is Xavier-uniform.
    self.weight = nn.Parameter(torch.empty(num, fan_in, fan_out))
    self.bias = nn.Parameter(torch.zeros(num, 1, fan_out))
    bound = math.sqrt(6.0 / (fan_in + fan_out))
    nn.init.uniform_(self.weight, -bound, bound)

  def forward(self, x: torch.Tensor) -> torch.Tensor:
    return torch.baddbmm(self.bias, x, self.weight)


class CriticEnsemble(nn.Module):
  """``num_critics`` ReLU MLPs Q_i(s, a) with scalar heads, evaluated together: (E, B)."""

  def __init__(self, cfg: TorchQSMConfig):
    super().__init__()
    dims = [cfg.obs_dim + cfg.act_dim, *cfg.critic_hidden, 1]
    self.num = cfg.num_critics
    self.layers = nn.ModuleList(EnsembleLinear(self.num, a, b)
                                for a, b in zip(dims[:-1], dims[1:]))

  def forward(self, obs: torch.Tensor, action: torch.Tensor) -> torch.Tensor:
    x = torch.cat([obs, action], dim=-1).expand(self.num, -1, -1)
    for i, layer in enumerate(self.layers):
      x = layer(x)
      if i + 1 < len(self.layers):
        x = F.relu(x)
    return x[..., 0]


# ----------------------------------------------------------------------------- update

class Batch(NamedTuple):
  obs: torch.Tensor       # (B, obs_dim)
  action: torch.Tensor    # (B, act_dim)
  reward: torch.Tensor    # (B,)
  next_obs: torch.Tensor  # (B, obs_dim)
  mask: torch.Tensor      # (B,) 0 only at a true terminal


class Draws(NamedTuple):
  """Every random number one update uses (the JAX update's draws, in its order)."""
  sampler_init: torch.Tensor   # (B, A): x_T of the sampler
  sampler_steps: torch.Tensor  # (T, B, A): z of each sampler step, in order t = T-1 .. 0
  target_noise: torch.Tensor   # (B, A)
  t: torch.Tensor              # (B,) int64 diffusion steps of the actor loss
  eps: torch.Tensor            # (B, A) forward noise of the actor loss


def cosine_decay(base_lr: float, step: int, decay_steps: float) -> float:
  """optax.cosine_decay_schedule(base_lr, decay_steps)(step); decay_steps <= 0: constant."""
  if decay_steps <= 0:
    return base_lr
  frac = min(step, decay_steps) / decay_steps
  return base_lr * 0.5 * (1.0 + math.cos(math.pi * frac))


def _adam(params, lr: float, cfg: TorchQSMConfig, device: torch.device) -> torch.optim.Adam:
  # fused=True: one multi-tensor kernel per step, on CPU and CUDA alike.
  return torch.optim.Adam(params, lr=lr, betas=(cfg.adam_b1, cfg.adam_b2), eps=cfg.adam_eps,
                          fused=True)


class TorchQSM:
  """Networks, target critics, optimizers and the QSM update, in PyTorch."""

  def __init__(self, cfg: TorchQSMConfig, device: str | torch.device = "cpu",
               compile: bool = False, seed: int = 0):  # pylint: disable=redefined-builtin
    self.cfg = cfg
    self.device = torch.device(device)
    torch.manual_seed(seed)
    self.actor = NoiseModel(cfg).to(self.device)
    self.critic = CriticEnsemble(cfg).to(self.device)
    self.target_critic = CriticEnsemble(cfg).to(self.device)
    self.target_critic.load_state_dict(self.critic.state_dict())
    self.target_critic.requires_grad_(False)
    self.actor_opt = _adam(self.actor.parameters(), cfg.actor_lr, cfg, self.device)
    self.critic_opt = _adam(self.critic.parameters(), cfg.critic_lr, cfg, self.device)
    self.step = 0
    sched = make_schedule(cfg.T)
    # Per-step sampler constants as Python floats (float32 values, as the JAX side uses).
    f32 = np.float32
    self._eps_coef = [float(f32(sched.betas[t]) / np.sqrt(f32(1.0) - sched.alpha_bars[t]))
                      for t in range(cfg.T)]
    self._sqrt_alpha = [float(np.sqrt(sched.alphas[t])) for t in range(cfg.T)]
    self._noise_coef = [float(np.sqrt(sched.betas[t])) for t in range(cfg.T)]
    self._sqrt_abar = torch.tensor(np.sqrt(sched.alpha_bars), device=self.device)
    self._sqrt_1m_abar = torch.tensor(np.sqrt(1.0 - sched.alpha_bars), device=self.device)
    phases = (self._critic_target, self._critic_loss, self._actor_loss)
    if compile:
      phases = tuple(torch.compile(f) for f in phases)
    self._target_fn, self._critic_loss_fn, self._actor_loss_fn = phases

  # -- the three compute phases (what torch.compile sees)

  def sample(self, obs: torch.Tensor, x: torch.Tensor, steps: torch.Tensor,
             temperature: float) -> torch.Tensor:
    """The DDPM sampler from x_T = ``x`` with step noise ``steps`` (T, B, A); no grad."""
    batch = obs.shape[0]
    for i, t in enumerate(range(self.cfg.T - 1, -1, -1)):
      t_in = torch.full((batch, 1), float(t), device=obs.device)
      eps = self.actor(obs, x, t_in)
      x = (x - self._eps_coef[t] * eps) / self._sqrt_alpha[t]
      if t > 0:
        x = x + (self._noise_coef[t] * temperature) * steps[i]
      if self.cfg.clip_sampler:
        x = x.clamp(-1.0, 1.0)
    return x.clamp(-1.0, 1.0)

  def _critic_target(self, batch: Batch, draws: Draws) -> torch.Tensor:
    cfg = self.cfg
    next_action = self.sample(batch.next_obs, draws.sampler_init, draws.sampler_steps,
                              cfg.temperature)
    next_action = (next_action + cfg.target_noise * draws.target_noise).clamp(-1.0, 1.0)
    next_q = self.target_critic(batch.next_obs, next_action).min(dim=0).values
    return batch.reward + cfg.gamma * batch.mask * next_q

  def _critic_loss(self, batch: Batch, target: torch.Tensor):
    q = self.critic(batch.obs, batch.action)          # (E, B)
    per_critic = ((q - target) ** 2).mean(dim=1)
    return per_critic.sum(), per_critic.mean()

  def _actor_loss(self, batch: Batch, draws: Draws) -> torch.Tensor:
    t = draws.t
    noisy = self._sqrt_abar[t][:, None] * batch.action + self._sqrt_1m_abar[t][:, None] * draws.eps
    # grad_a of the batch sum = the per-sample gradient; only the action needs a gradient
    # (torch.func.grad: torch.compile traces it, where autograd.grad breaks the graph).
    grad_q = torch.func.grad(lambda a: self.critic(batch.obs, a).sum())(noisy.detach())
    score_target = -self.cfg.M_q * (grad_q / self.cfg.num_critics)  # mean over critics
    eps_pred = self.actor(batch.obs, noisy, t.to(noisy.dtype)[:, None])
    return ((score_target.detach() - eps_pred) ** 2).mean()

  # -- the update

  def draw(self, batch_size: int) -> Draws:
    """Fresh random numbers for one update (torch's RNG, on the device)."""
    cfg, dev = self.cfg, self.device
    shape = (batch_size, cfg.act_dim)
    return Draws(sampler_init=torch.randn(shape, device=dev),
                 sampler_steps=torch.randn((cfg.T, *shape), device=dev),
                 target_noise=torch.randn(shape, device=dev),
                 t=torch.randint(0, cfg.T, (batch_size,), device=dev),
                 eps=torch.randn(shape, device=dev))

  def update(self, batch: Batch, draws: Optional[Draws] = None) -> dict:
    """One QSM update: critic step, Polyak targets, actor step. Returns loss tensors."""
    cfg = self.cfg
    draws = self.draw(batch.obs.shape[0]) if draws is None else draws
    with torch.no_grad():
      target = self._target_fn(batch, draws)

    critic_loss_sum, critic_loss = self._critic_loss_fn(batch, target)
    self.critic_opt.zero_grad(set_to_none=True)
    critic_loss_sum.backward()
    self.critic_opt.step()

    with torch.no_grad():  # Q' <- tau Q + (1 - tau) Q'
      torch._foreach_lerp_(list(self.target_critic.parameters()),  # pylint: disable=protected-access
                           list(self.critic.parameters()), cfg.tau)

    actor_loss = self._actor_loss_fn(batch, draws)
    self.actor_opt.zero_grad(set_to_none=True)
    actor_loss.backward()
    lr = cosine_decay(cfg.actor_lr, self.step, cfg.actor_lr_decay_steps)
    for group in self.actor_opt.param_groups:
      group["lr"] = lr
    self.actor_opt.step()
    self.step += 1
    return {"critic_loss": critic_loss.detach(), "actor_loss": actor_loss.detach()}

  @torch.no_grad()
  def act(self, obs: torch.Tensor, exploration_noise: float = 0.1) -> torch.Tensor:
    """Exploration actions: sampler output + N(0, noise^2), clipped (for the env loop)."""
    shape = (obs.shape[0], self.cfg.act_dim)
    x = torch.randn(shape, device=obs.device)
    steps = torch.randn((self.cfg.T, *shape), device=obs.device)
    a = self.sample(obs, x, steps, self.cfg.temperature)
    return (a + exploration_noise * torch.randn_like(a)).clamp(-1.0, 1.0)


# -------------------------------------------------------------- parameters from JAX

def _t(x, device) -> torch.Tensor:
  return torch.tensor(np.asarray(x, dtype=np.float32), device=device)


def load_jax_params(agent: TorchQSM, actor_params: Mapping, critic_params: Mapping,
                    target_critic_params: Optional[Mapping] = None) -> None:
  """Copies qsm_jax parameters (trees of arrays, as from ``QSMState``) into ``agent``.

  Flax Dense kernels are (in, out), torch Linear weights (out, in): transposed. The JAX
  critic ensemble is stacked on axis 0, which is EnsembleLinear's layout already.
  """
  dev = agent.device
  a = actor_params["params"]
  with torch.no_grad():
    agent.actor.fourier.kernel.copy_(_t(a["FourierFeatures_0"]["kernel"], dev))
    for mlp_name, mlp in (("MLP_0", agent.actor.time_mlp), ("MLP_1", agent.actor.mlp)):
      for i, layer in enumerate(mlp.layers):
        dense = a[mlp_name][f"Dense_{i}"]
        layer.weight.copy_(_t(dense["kernel"], dev).T)
        layer.bias.copy_(_t(dense["bias"], dev))
    for module, tree in ((agent.critic, critic_params),
                         (agent.target_critic, target_critic_params or critic_params)):
      for i, layer in enumerate(module.layers):
        dense = tree["params"]["MLP_0"][f"Dense_{i}"]
        layer.weight.copy_(_t(dense["kernel"], dev))
        layer.bias.copy_(_t(dense["bias"], dev)[:, None, :])


def actor_params_as_jax_layout(agent: TorchQSM) -> dict:
  """The actor's parameters as numpy arrays in qsm_jax's tree layout (for comparisons)."""
  n = lambda x: x.detach().cpu().numpy()
  tree = {"FourierFeatures_0": {"kernel": n(agent.actor.fourier.kernel)}}
  for mlp_name, mlp in (("MLP_0", agent.actor.time_mlp), ("MLP_1", agent.actor.mlp)):
    tree[mlp_name] = {f"Dense_{i}": {"kernel": n(layer.weight).T, "bias": n(layer.bias)}
                      for i, layer in enumerate(mlp.layers)}
  return {"params": tree}


def critic_params_as_jax_layout(module: CriticEnsemble) -> dict:
  """A critic ensemble's parameters as numpy arrays in qsm_jax's stacked layout."""
  n = lambda x: x.detach().cpu().numpy()
  return {"params": {"MLP_0": {f"Dense_{i}": {"kernel": n(layer.weight),
                                              "bias": n(layer.bias)[:, 0, :]}
                               for i, layer in enumerate(module.layers)}}}
