"""Configuration of QSM: static choices (shapes, program) and numeric hyperparameters.

``QSMConfig`` is hashable and static: changing it recompiles. ``QSMHyperparams`` is a
pytree of float leaves stored in the train state, so ``jax.vmap`` can sweep over them
(several M_q values in one program) and changing them never recompiles.
Defaults are the authors' (see ``shared/QSM_SPEC.md``).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Tuple

import flax.struct
import jax.numpy as jnp

from qsm_jax.diffusion import BETA_SCHEDULES

# How the Q-score target is scaled (QSMConfig.score_scale):
#   fixed:   -M_q * grad_a Q (the paper's form; M_q must match Q's scale);
#   batch:   -M_q * grad_a Q / s, s = the batch mean of |grad_a Q| (over rows and action
#            dims): M_q becomes a dimensionless step, the same for any reward scale;
#   running: as batch, with s an exponential moving average of the batch means
#            (QSMState.score_norm, rate QSMConfig.score_norm_rate, bias-corrected).
SCORE_SCALES = ("fixed", "batch", "running")
SCORE_CRITICS = ("online", "target")


@dataclasses.dataclass(frozen=True)
class QSMConfig:
  """Static configuration: anything that changes array shapes or the compiled program.

  Attributes:
    T: number of diffusion steps.
    beta_schedule: 'vp' (default), 'cosine' or 'linear'.
    clip_sampler: clip x to [-1, 1] after every sampler step.
    num_critics: size of the critic ensemble (2: the twin critics of the spec).
    actor_hidden: hidden widths of the default noise model's main MLP.
    time_hidden: hidden widths of the default noise model's time-embedding MLP.
    fourier_size: width of the learnable Fourier time features.
    critic_hidden: hidden widths of the default critic.
    adam_b1, adam_b2, adam_eps: Adam's constants (both optimizers).
    score_scale: how the Q-score target is scaled: 'fixed' (the paper's -M_q grad_a Q),
      'batch' or 'running' (divided by a batch / moving-average estimate of mean
      |grad_a Q|, so M_q is a step size free of the reward's scale). See SCORE_SCALES.
    score_norm_rate: the moving average's rate for score_scale='running'.
    score_critic: which critics give grad_a Q for the actor's target: 'online' (the
      paper's: the critics just updated) or 'target' (their Polyak-averaged copies).
    clip_denoised: sample through the predicted clean action, clipped to [-1, 1]
      (x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), then the DDPM posterior mean);
      without the clip this is the same step as the paper's sampler.
  """
  T: int = 5
  beta_schedule: str = "vp"
  clip_sampler: bool = True
  num_critics: int = 2
  actor_hidden: Tuple[int, ...] = (512, 512)
  time_hidden: Tuple[int, ...] = (128, 128)
  fourier_size: int = 64
  critic_hidden: Tuple[int, ...] = (512, 512)
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  score_scale: str = "fixed"
  score_norm_rate: float = 0.005
  score_critic: str = "online"
  clip_denoised: bool = False

  def __post_init__(self):
    if not isinstance(self.T, int) or self.T < 1:
      raise ValueError(f"T must be a positive int, got {self.T!r}")
    if self.beta_schedule not in BETA_SCHEDULES:
      raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; choose one of {BETA_SCHEDULES}")
    if self.score_scale not in SCORE_SCALES:
      raise ValueError(f"unknown score_scale {self.score_scale!r}; choose one of {SCORE_SCALES}")
    if self.score_critic not in SCORE_CRITICS:
      raise ValueError(f"unknown score_critic {self.score_critic!r}; choose one of {SCORE_CRITICS}")
    if not (isinstance(self.score_norm_rate, numbers.Real) and 0 < self.score_norm_rate <= 1):
      raise ValueError(f"score_norm_rate must be in (0, 1], got {self.score_norm_rate!r}")
    for name in ("adam_b1", "adam_b2", "adam_eps"):
      value = getattr(self, name)
      if not (isinstance(value, numbers.Real) and math.isfinite(value) and value >= 0):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    if not isinstance(self.num_critics, int) or self.num_critics < 1:
      raise ValueError(f"num_critics must be a positive int, got {self.num_critics!r}")
    for name in ("actor_hidden", "time_hidden", "critic_hidden"):
      widths = tuple(getattr(self, name))
      if not widths:  # an empty list would silently build a linear network
        raise ValueError(f"{name} must list at least one hidden width, e.g. 64,64")
      if any((not isinstance(w, int)) or w < 1 for w in widths):
        raise ValueError(f"{name} must be positive ints, got {widths!r}")
      object.__setattr__(self, name, widths)  # lists -> tuples, so the config stays hashable
    if self.fourier_size < 2 or self.fourier_size % 2:
      raise ValueError(f"fourier_size must be an even int >= 2, got {self.fourier_size!r}")


@flax.struct.dataclass
class QSMHyperparams:
  """Numeric hyperparameters, pytree leaves (vmappable, never recompile).

  Attributes:
    M_q: scale of the Q-score target, -M_q * grad_a Q (the paper's alpha).
    gamma: discount.
    tau: Polyak rate of the target critics.
    actor_lr: peak actor learning rate (Adam), cosine-decayed to 0.
    actor_lr_decay_steps: updates over which the actor lr decays; <= 0 keeps it constant.
    critic_lr: critic learning rate (Adam); 0 freezes the critics.
    target_noise: std of the Gaussian noise added to a' in the critic target.
    exploration_noise: std of the Gaussian noise added to actions when exploring.
    temperature: scale of the noise injected by the DDPM sampler.
  """
  M_q: float = 50.0
  gamma: float = 0.99
  tau: float = 0.005
  actor_lr: float = 3e-4
  actor_lr_decay_steps: float = 2e6
  critic_lr: float = 3e-4
  target_noise: float = 0.1
  exploration_noise: float = 0.1
  temperature: float = 1.0

  def validate(self) -> "QSMHyperparams":
    """Raises ValueError for out-of-range concrete values (traced values are skipped)."""
    checks = {
        "M_q": lambda v: v >= 0, "gamma": lambda v: 0 <= v <= 1, "tau": lambda v: 0 <= v <= 1,
        "actor_lr": lambda v: v >= 0, "critic_lr": lambda v: v >= 0,
        "target_noise": lambda v: v >= 0, "exploration_noise": lambda v: v >= 0,
        "temperature": lambda v: v >= 0,
    }
    for name, ok in checks.items():
      value = getattr(self, name)
      if isinstance(value, numbers.Real) and not ok(value):
        raise ValueError(f"hyperparameter {name}={value!r} is out of range")
    for f in dataclasses.fields(self):  # inf passes the range checks: refuse it here
      value = getattr(self, f.name)
      if isinstance(value, numbers.Real) and not math.isfinite(value):
        raise ValueError(f"hyperparameter {f.name}={value!r} must be finite")
    return self

  def as_arrays(self) -> "QSMHyperparams":
    """The same values as float32 arrays (so every state has one dtype per leaf)."""
    return QSMHyperparams(**{f.name: jnp.asarray(getattr(self, f.name), jnp.float32)
                             for f in dataclasses.fields(self)})
