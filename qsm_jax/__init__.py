"""qsm_jax: Q-Score Matching (Psenka et al., ICML 2024) as pure, jitted JAX functions,
with SAC and TD3 baselines in the same form.

``import qsm_jax`` loads jax, flax, optax and chex only: Brax (and MuJoCo) load with the
training loop (qsm_jax.runner / training / envs), orbax when a checkpoint is read or
written, matplotlib when a plot is drawn.

The public API:
  QSMConfig, QSMHyperparams   static configuration / numeric hyperparameter leaves
  TrainConfig                 a training run's settings (qsm_jax.runner.train runs one)
  init_state, QSMState        build the train state (our networks or your Flax modules)
  Batch, qsm_update           one pure, jitted update (optionally data-parallel)
  sample_actions              batched DDPM policy sampling
  load_policy, load_run       a trained policy / agents from a run folder, in any process
  init_sac, sac_update, sac_act, SACState    the SAC baseline, same update contract
  init_td3, td3_update, td3_act, TD3State    the TD3 baseline, same update contract
  get_algorithm, act          the loop's algorithms by name ('qsm', 'sac', 'td3'); act on any state
  NoiseModel, Critic          the authors' default networks
  make_schedule, ddpm_sample, noise_actions   the diffusion machinery
"""
from qsm_jax.algorithms import Algorithm, act, get_algorithm
from qsm_jax.config import QSMConfig, QSMHyperparams, TrainConfig
from qsm_jax.diffusion import (DiffusionSchedule, ddpm_sample, make_schedule, noise_actions)
from qsm_jax.loading import CheckpointError, LoadedRun, Policy, load_policy, load_run
from qsm_jax.networks import Critic, FourierFeatures, NoiseModel
from qsm_jax.policy import sample_actions
from qsm_jax.sac import SACState, init_sac, sac_act, sac_update
from qsm_jax.ensemble import ensemble_apply
from qsm_jax.shared import Batch
from qsm_jax.state import QSMState, init_state
from qsm_jax.td3 import TD3State, init_td3, td3_act, td3_update
from qsm_jax.update import qsm_update

__version__ = "0.1.0"

__all__ = [
    "Algorithm", "SACState", "TD3State", "act", "get_algorithm", "init_sac", "init_td3",
    "sac_act", "sac_update", "td3_act", "td3_update",
    "Batch", "CheckpointError", "Critic", "DiffusionSchedule", "FourierFeatures", "LoadedRun",
    "NoiseModel", "Policy", "QSMConfig", "QSMHyperparams", "QSMState", "TrainConfig",
    "ddpm_sample",
    "ensemble_apply", "init_state", "load_policy", "load_run", "make_schedule",
    "noise_actions", "qsm_update", "sample_actions",
]
