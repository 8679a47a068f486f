"""Loading trained agents from a run folder: the policy without the training machinery.

A checkpoint (``checkpoints/<env step>/`` of a run folder) holds the full training state
and, in its metadata, the run's ``TrainConfig``; the networks are rebuilt from that
config alone, so no flag has to be repeated. Only the agents are read (no envs, no
replay buffer), as host arrays, so any device count can load any run.
"""
from __future__ import annotations

import dataclasses
import os
from typing import Any, Optional

import flax.serialization
import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.algorithms import act as agent_act
from qsm_jax.algorithms import check_temperature, get_algorithm
from qsm_jax.config import TrainConfig


class CheckpointError(ValueError):
  """A run folder or checkpoint that cannot be loaded (missing, corrupt, incompatible)."""


@dataclasses.dataclass(frozen=True)
class LoadedRun:
  """The agents of one checkpoint.

  Attributes:
    config: the run's TrainConfig (from the checkpoint's metadata).
    agents: the algorithm's state (``QSMState``, ``SACState`` or ``TD3State``) of every
      trained agent, leaves stacked on a leading axis of
      size ``config.num_agents`` (seeds, times sweep values; ``config.agent_label(i)``).
    env_steps: env steps per seed at the checkpoint.
    run_dir: the run folder; checkpoint_dir: the checkpoint's own folder.
  """
  config: TrainConfig
  agents: Any
  env_steps: int
  run_dir: str
  checkpoint_dir: str

  def agent(self, index: int):
    n = self.config.num_agents
    if not 0 <= index < n:
      raise ValueError(f"agent {index} does not exist: the run trained {n} agent(s) "
                       f"(0..{n - 1})")
    return jax.tree.map(lambda x: x[index], self.agents)


def _locate(path: str, step: Optional[int]) -> tuple[str, str, Optional[int]]:
  """(run_dir, checkpoints_dir, step) from a run folder, its checkpoints/ or one checkpoint."""
  path = os.path.abspath(path)
  if not os.path.isdir(path):
    raise CheckpointError(f"no run folder or checkpoint at {path}")
  if os.path.isdir(os.path.join(path, "checkpoints")):
    return path, os.path.join(path, "checkpoints"), step
  parent, name = os.path.split(path)
  if name == "checkpoints":
    return parent, path, step
  if name.isdigit() and os.path.basename(parent) == "checkpoints":
    if step is not None and step != int(name):
      raise CheckpointError(f"{path} is the checkpoint at env step {name}, not {step}")
    return os.path.dirname(parent), parent, int(name)
  raise CheckpointError(f"{path} is not a run folder (no checkpoints/ inside) nor a checkpoint")


def _check_shapes(template, restored, what: str) -> None:
  mismatches = []

  def check(path, t, r):
    if np.shape(t) != np.shape(r):
      mismatches.append(f"{jax.tree_util.keystr(path)}: saved {np.shape(r)}, "
                        f"config gives {np.shape(t)}")

  jax.tree_util.tree_map_with_path(check, template, restored)
  if mismatches:
    raise CheckpointError(f"{what} does not match the networks of its saved config (written "
                          f"by another version of qsm_jax?): " + "; ".join(mismatches[:3]))


def load_run(path: str, step: Optional[int] = None) -> LoadedRun:
  """Loads every agent of a checkpoint (the latest one of a run folder by default).

  Args:
    path: a run folder, its ``checkpoints/`` folder, or one ``checkpoints/<step>`` folder.
    step: env step of the checkpoint to load (None: the latest, or the one ``path`` names).

  Raises:
    CheckpointError (a ValueError) with a one-line reason: no such folder, no checkpoint,
    unreadable (corrupt) checkpoint, or one written by an incompatible version.
  """
  run_dir, ckpt_dir, step = _locate(path, step)
  # orbax loads here, not with `import qsm_jax`.
  from qsm_jax.checkpoint import (  # pylint: disable=import-outside-toplevel
      ADDED_LEAVES, Checkpointer, IncompatibleCheckpoint)
  checkpointer = Checkpointer(ckpt_dir)
  try:
    steps = checkpointer.all_steps()
    if not steps:
      raise CheckpointError(f"{ckpt_dir} holds no complete checkpoint (did the run stop "
                            "before its first one?)")
    step = steps[-1] if step is None else step
    if step not in steps:
      raise CheckpointError(f"no checkpoint at env step {step} in {ckpt_dir}; it has "
                            + ", ".join(map(str, steps)))
    try:
      state, meta = checkpointer.restore_arrays(step)
    except IncompatibleCheckpoint as e:
      raise CheckpointError(str(e)) from e
    except Exception as e:  # orbax raises many types for damaged files
      first_line = (str(e).strip().splitlines() or [""])[0][:200]
      raise CheckpointError(f"cannot read the checkpoint {ckpt_dir}/{step} (corrupt or "
                            f"incomplete?): {type(e).__name__}: {first_line}") from e
  finally:
    checkpointer.close()
  try:
    config = meta.train_config(f"{ckpt_dir}/{step}")
  except ValueError as e:
    raise CheckpointError(str(e)) from e

  obs_dim, act_dim = meta.obs_dim, meta.act_dim
  if obs_dim is None:  # checkpoints written before the sizes were recorded: ask the env
    from qsm_jax.envs import env_sizes, make_env  # pylint: disable=import-outside-toplevel
    env = make_env(config.env, config.backend, config.episode_length, config.action_repeat)
    obs_dim, act_dim = env_sizes(env)
  agents = state["agent"]
  if meta.num_devices > 1:  # data-parallel run: replicas are identical, keep one
    agents = jax.tree.map(lambda x: x[0], agents)
  if config.algo == "qsm":  # leaves older formats lack (score_norm: format 2), at 0
    agents = dict(agents)
    for name in ("score_norm",) + tuple(path[-1] for _, path in ADDED_LEAVES):
      agents.setdefault(name, np.zeros((config.num_agents,), np.float32))
  init = get_algorithm(config.algo).init
  template = jax.vmap(lambda k: init(k, obs_dim, act_dim, config.qsm, config.hparams))(
      jax.random.split(jax.random.PRNGKey(0), config.num_agents))
  try:
    restored = flax.serialization.from_state_dict(template, agents)
  except (KeyError, ValueError, TypeError) as e:
    raise CheckpointError(f"the checkpoint {ckpt_dir}/{step} does not hold the agents this "
                          f"version of qsm_jax expects: {e}") from e
  _check_shapes(template, restored, f"the checkpoint {ckpt_dir}/{step}")
  restored = jax.tree.map(jnp.asarray, restored)
  return LoadedRun(config=config, agents=restored, env_steps=int(meta.env_steps),
                   run_dir=run_dir, checkpoint_dir=os.path.join(ckpt_dir, str(step)))


@dataclasses.dataclass(frozen=True)
class Policy:
  """A trained policy: ``policy(obs, key) -> actions``, jitted and batched.

  Attributes:
    agent: the state the actions come from (``QSMState`` for QSM's diffusion policy,
      ``SACState`` / ``TD3State`` for the baselines).
    config: the run's TrainConfig (env name, network sizes, ...).
    env_steps: env steps of training behind this policy.
    explore: act as in training (QSM, TD3: add the run's exploration noise; SAC: sample
      the Gaussian). False: as in the run's evaluations (QSM: the sampler's output, the
      best by Q of ``qsm.eval_best_of`` draws; SAC: tanh of the mean; TD3: the
      deterministic actor).
    temperature: QSM's sampler noise scale; None uses the run's (0: deterministic
      sampler). Not accepted for SAC and TD3 policies.
  """
  agent: Any
  config: TrainConfig
  env_steps: int
  explore: bool = False
  temperature: Optional[float] = None

  @property
  def obs_dim(self) -> int:
    return self.agent.obs_dim

  @property
  def act_dim(self) -> int:
    return self.agent.act_dim

  def __call__(self, obs: jax.Array, key: jax.Array) -> jax.Array:
    """(B, obs_dim) observations -> (B, act_dim) actions in [-1, 1]; (obs_dim,) -> (act_dim,)."""
    obs = jnp.asarray(obs, jnp.float32)
    if obs.ndim == 1:
      return self(obs[None], key)[0]
    if obs.ndim != 2 or obs.shape[1] != self.obs_dim:
      raise ValueError(f"observations must have shape (batch, {self.obs_dim}) for this "
                       f"{self.config.env} policy, got {obs.shape}")
    return agent_act(self.agent, obs, key, explore=self.explore,
                     temperature=self.temperature)


def load_policy(path: str, agent: int = 0, step: Optional[int] = None, explore: bool = False,
                temperature: Optional[float] = None) -> Policy:
  """Loads a trained policy from a run folder or checkpoint, in any process.

  ``policy = load_policy("runs/ant-..."); actions = policy(obs, jax.random.PRNGKey(0))``

  Args:
    path: a run folder, its ``checkpoints/`` folder, or one ``checkpoints/<step>`` folder.
    agent: which of the run's agents (``config.agent_label(agent)`` says which seed and
      sweep value).
    step: env step of the checkpoint (None: the latest, or the one ``path`` names).
    explore: act as in training (exploration noise; SAC: a sample of its Gaussian).
    temperature: QSM's sampler noise scale (None: the run's; 0: deterministic sampler);
      a ValueError for SAC and TD3 runs.

  Raises:
    CheckpointError (a ValueError) for a missing, corrupt or incompatible checkpoint.
  """
  run = load_run(path, step)
  check_temperature(run.config.algo, temperature)
  return Policy(agent=run.agent(agent), config=run.config, env_steps=run.env_steps,
                explore=explore, temperature=temperature)
