"""qsm_jax: Q-Score Matching (Psenka et al., ICML 2024) as pure, jitted JAX functions.

The public API:
  QSMConfig, QSMHyperparams   static configuration / numeric hyperparameter leaves
  init_state, QSMState        build the train state (our networks or your Flax modules)
  Batch, qsm_update           one pure, jitted update (optionally data-parallel)
  sample_actions              batched DDPM policy sampling
  NoiseModel, Critic          the authors' default networks
  make_schedule, ddpm_sample, noise_actions   the diffusion machinery
"""
from qsm_jax.config import QSMConfig, QSMHyperparams
from qsm_jax.diffusion import (DiffusionSchedule, ddpm_sample, make_schedule, noise_actions)
from qsm_jax.networks import Critic, FourierFeatures, NoiseModel
from qsm_jax.policy import sample_actions
from qsm_jax.state import QSMState, ensemble_apply, init_state
from qsm_jax.update import Batch, qsm_update

__version__ = "0.1.0"

__all__ = [
    "Batch", "Critic", "DiffusionSchedule", "FourierFeatures", "NoiseModel", "QSMConfig",
    "QSMHyperparams", "QSMState", "ddpm_sample", "ensemble_apply", "init_state",
    "make_schedule", "noise_actions", "qsm_update", "sample_actions",
]
