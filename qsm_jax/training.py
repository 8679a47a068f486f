"""The on-device training loop: acting, replay insertion, sampling and updates in lax.scan.

``make_trainer(cfg)`` returns pure functions over a ``TrainState`` for ONE agent (seed);
the runner vmaps them over seeds and jits them. Nothing here touches the host.
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Callable, NamedTuple, Optional

import flax.struct
import jax
import jax.numpy as jnp

from qsm_jax.algorithms import ALGORITHMS, get_algorithm
from qsm_jax.config import QSMConfig, QSMHyperparams
from qsm_jax.envs import check_env, make_env, normalise_env_state
from qsm_jax.evaluation import run_episodes
from qsm_jax.replay import ReplayState, replay_add, replay_init, replay_sample
from qsm_jax.update import Batch


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run (saved as the run's config.json).

  Attributes:
    algo: 'qsm' (default), or the baselines 'sac' / 'td3' (qsm_jax/algorithms.py); the
      baselines read the shared fields of ``qsm`` and ``hparams`` (network widths,
      learning rates, gamma, tau), so one config compares them like for like.
    env, backend: Brax env name and physics backend (None: the env's default).
    episode_length, action_repeat: Brax's EpisodeWrapper settings.
    num_envs: parallel training envs per seed (one vectorised step = num_envs env steps).
    num_eval_envs: envs (episodes) per evaluation.
    total_steps: env steps per seed, warm-up included.
    warmup_steps: env steps of uniform random actions before learning starts.
    utd: updates per env step (the update-to-data ratio); utd * num_envs updates run
      after each vectorised step, so it must be a positive integer.
    batch_size: transitions per update (global batch).
    buffer_size: replay capacity per seed (rounded down to a multiple of num_envs).
    reward_scale: rewards are multiplied by this before they enter the buffer.
    log_every: env steps per chunk: the host sees the run (logs, evals, checkpoints)
      only between chunks.
    eval_every: env steps between evaluations (at the next chunk boundary).
    seed, num_seeds: num_seeds agents, keys split from PRNGKey(seed), are trained
      together, vmapped, as independent agents.
    sweep_name, sweep_values: a sweep over one numeric hyperparameter (a field of
      QSMHyperparams, e.g. "M_q"): every value is trained with each of the num_seeds
      seeds, all agents in one program (the value is a leaf, so nothing recompiles).
    qsm: static QSM configuration; hparams: numeric QSM hyperparameters.
  """
  algo: str = "qsm"
  env: str = "inverted_pendulum"
  backend: Optional[str] = None
  episode_length: int = 1000
  action_repeat: int = 1
  num_envs: int = 16
  num_eval_envs: int = 16
  total_steps: int = 100_000
  warmup_steps: int = 10_000
  utd: float = 1.0
  batch_size: int = 256
  buffer_size: int = 1_000_000
  reward_scale: float = 1.0
  log_every: int = 5_000
  eval_every: int = 10_000
  seed: int = 0
  num_seeds: int = 1
  sweep_name: Optional[str] = None
  sweep_values: tuple = ()
  qsm: QSMConfig = QSMConfig()
  hparams: QSMHyperparams = QSMHyperparams()

  # Derived sizes (computed, never written back into the config).
  @property
  def updates_per_iteration(self) -> int:
    return int(round(self.utd * self.num_envs))

  @property
  def iterations_per_chunk(self) -> int:
    return max(1, self.log_every // self.num_envs)

  @property
  def chunk_env_steps(self) -> int:
    return self.iterations_per_chunk * self.num_envs

  @property
  def warmup_iterations(self) -> int:
    return math.ceil(self.warmup_steps / self.num_envs)

  @property
  def num_agents(self) -> int:
    """Agents trained together: num_seeds, times the number of sweep values."""
    return self.num_seeds * max(1, len(self.sweep_values))

  def seed_index(self, agent: int) -> int:
    """Which of the num_seeds seed streams an agent uses (they repeat for every sweep
    value, value-major): its key is ``split(PRNGKey(seed), num_seeds)[seed_index]``."""
    return agent % self.num_seeds

  def agent_hparams(self, agent: int) -> QSMHyperparams:
    if not self.sweep_values:
      return self.hparams
    value = self.sweep_values[agent // self.num_seeds]
    return self.hparams.replace(**{self.sweep_name: float(value)})

  def agent_label(self, agent: int) -> str:
    label = f"seed #{self.seed_index(agent)}"
    if self.sweep_values:
      label = f"{self.sweep_name}={self.sweep_values[agent // self.num_seeds]:g} " + label
    return label

  @property
  def replay_capacity(self) -> int:
    return (self.buffer_size // self.num_envs) * self.num_envs

  @property
  def num_chunks(self) -> int:
    remaining = self.total_steps - self.warmup_iterations * self.num_envs
    return max(0, math.ceil(remaining / self.chunk_env_steps))

  def validate(self) -> "TrainConfig":
    """Raises ValueError with a one-line reason for any invalid setting."""
    if self.algo not in ALGORITHMS:
      raise ValueError(f"--algo: unknown algorithm {self.algo!r}; choose one of "
                       f"{', '.join(ALGORITHMS)}")
    check_env(self.env, self.backend)
    positive = ("episode_length", "action_repeat", "num_envs", "num_eval_envs", "total_steps",
                "batch_size", "buffer_size", "log_every", "eval_every", "num_seeds")
    for name in positive:
      value = getattr(self, name)
      if not isinstance(value, int) or value < 1:
        raise ValueError(f"--{name} must be a positive integer, got {value!r}")
    for name in ("utd", "reward_scale"):
      value = getattr(self, name)
      if not isinstance(value, numbers.Real) or not math.isfinite(value):
        raise ValueError(f"--{name} must be a finite number, got {value!r}")
    if self.utd <= 0 or abs(self.utd * self.num_envs - self.updates_per_iteration) > 1e-6:
      raise ValueError(f"--utd * --num_envs must be a positive integer (updates per vectorised "
                       f"step); got {self.utd} * {self.num_envs}")
    if self.warmup_steps < self.num_envs:
      raise ValueError(f"--warmup_steps ({self.warmup_steps}) must be at least --num_envs "
                       f"({self.num_envs}): the buffer needs data before the first update")
    if self.warmup_steps >= self.total_steps:
      raise ValueError(f"--warmup_steps ({self.warmup_steps}) must be below --total_steps "
                       f"({self.total_steps})")
    if self.buffer_size < self.num_envs:
      raise ValueError(f"--buffer_size ({self.buffer_size}) must be at least --num_envs "
                       f"({self.num_envs})")
    if self.batch_size > self.replay_capacity:
      raise ValueError(f"--batch_size ({self.batch_size}) is larger than the replay buffer "
                       f"({self.replay_capacity})")
    if self.reward_scale <= 0:
      raise ValueError(f"--reward_scale must be positive, got {self.reward_scale}")
    self.hparams.validate()
    if self.sweep_name is not None or self.sweep_values:
      names = [f.name for f in dataclasses.fields(QSMHyperparams)]
      if self.sweep_name not in names:
        raise ValueError(f"--sweep: {self.sweep_name!r} is not a numeric hyperparameter; "
                         f"sweepable: {', '.join(names)}")
      if not self.sweep_values:
        raise ValueError(f"--sweep: no values given for {self.sweep_name}")
      for agent in range(0, self.num_agents, self.num_seeds):
        self.agent_hparams(agent).validate()
    return self

  def to_dict(self) -> dict:
    d = dataclasses.asdict(self)
    d["qsm"] = {k: list(v) if isinstance(v, tuple) else v for k, v in d["qsm"].items()}
    d["sweep_values"] = [float(v) for v in self.sweep_values]
    d["hparams"] = {f.name: float(getattr(self.hparams, f.name))
                    for f in dataclasses.fields(self.hparams)}
    return d

  @classmethod
  def from_saved(cls, d: Any, source: str = "saved config") -> "TrainConfig":
    """The config of a saved run (``to_dict``'s output read back from JSON), checked
    against the schema first: ValueError naming ``source`` and the field for a field
    that is unknown, missing (fields added since the first release may be missing
    and take their defaults) or of the wrong type or a non-finite number."""
    check_saved_config(d, source)
    try:
      return cls.from_dict(d)
    except ValueError as e:  # a value QSMConfig refuses, e.g. an unknown score_scale
      raise ValueError(f"{source}: {e}") from e

  @classmethod
  def from_dict(cls, d: dict) -> "TrainConfig":
    try:
      d = dict(d)
      qsm = {k: tuple(v) if isinstance(v, list) else v for k, v in d.pop("qsm").items()}
      d["sweep_values"] = tuple(float(v) for v in d.get("sweep_values", ()))
      return cls(qsm=QSMConfig(**qsm), hparams=QSMHyperparams(**d.pop("hparams")), **d)
    except (KeyError, TypeError) as e:
      raise ValueError(f"saved config does not match this version of qsm_jax: {e}") from e


# Fields added since the first release: a saved config may lack them (their defaults
# are what runs saved before did).
ADDED_FIELDS = ("algo", "sweep_name", "sweep_values", "qsm.adam_b1", "qsm.adam_b2",
                "qsm.score_scale", "qsm.score_norm_rate", "qsm.score_critic",
                "qsm.clip_denoised")


def _type_error(default: Any, value: Any) -> Optional[str]:
  """What is wrong with ``value`` for a field whose default is ``default`` (None: ok).

  The defaults give the schema: int -> an integer, float -> a finite number, bool ->
  true/false, str -> a string, None -> null or a string, tuple -> a list of numbers.
  """
  is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
  is_number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  if isinstance(default, bool):
    return None if isinstance(value, bool) else "must be true or false"
  if isinstance(default, int):
    return None if is_int(value) else "must be an integer"
  if isinstance(default, float):
    if not is_number(value):
      return "must be a number"
    return None if math.isfinite(value) else "must be finite"
  if isinstance(default, str):
    return None if isinstance(value, str) else "must be a string"
  if default is None:
    return None if value is None or isinstance(value, str) else "must be a string or null"
  if isinstance(default, tuple):
    if not isinstance(value, (list, tuple)) or not all(is_number(v) for v in value):
      return "must be a list of numbers"
    return None if all(math.isfinite(v) for v in value) else "must hold finite numbers"
  return None


def check_saved_config(d: Any, source: str = "saved config") -> None:
  """Raises ValueError (one line, naming the field) unless ``d`` is a saved TrainConfig."""
  def check(d, defaults, prefix):
    if not isinstance(d, dict):
      what = "the config" if not prefix else f"field '{prefix[:-1]}'"
      raise ValueError(f"{source}: {what} must be a JSON object, got {type(d).__name__}")
    for name in d:
      if name not in defaults:
        raise ValueError(f"{source}: unknown field '{prefix}{name}' (not a qsm_jax run's "
                         "config, or from a newer version)")
    for name, default in defaults.items():
      if name not in d:
        if prefix + name in ADDED_FIELDS:
          continue
        raise ValueError(f"{source}: missing field '{prefix}{name}' (not a qsm_jax run's "
                         "config?)")
      if name in ("qsm", "hparams"):
        check(d[name], {f.name: getattr(default, f.name)
                        for f in dataclasses.fields(default)}, f"{name}.")
        continue
      problem = _type_error(default, d[name])
      if problem:
        raise ValueError(f"{source}: field '{prefix}{name}' {problem}, got {d[name]!r}")

  defaults = TrainConfig()
  check(d, {f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainConfig)}, "")


@flax.struct.dataclass
class TrainState:
  """The whole state of one agent's run: everything a checkpoint needs to resume exactly."""
  agent: Any             # the algorithm's state (QSMState, SACState or TD3State)
  env_state: Any          # brax.envs.State of the num_envs training envs
  replay: ReplayState
  key: jax.Array          # the training key stream
  env_steps: jax.Array    # int32 env steps taken (warm-up included)


class Trainer(NamedTuple):
  """Pure functions of one training run (one seed); vmap them over seeds."""
  cfg: TrainConfig
  backend: str
  obs_dim: int
  act_dim: int
  init: Callable[[jax.Array, Optional[QSMHyperparams]], TrainState]
  warmup: Callable[[TrainState], TrainState]
  train_chunk: Callable[[TrainState], tuple[TrainState, dict]]
  evaluate: Callable[[Any, jax.Array], dict]


def _transition(env_state, next_state, actions, reward_scale) -> Batch:
  done = next_state.done
  truncated = next_state.info["truncation"]
  return Batch(obs=env_state.obs, action=actions, reward=next_state.reward * reward_scale,
               next_obs=next_state.info["next_obs"],
               mask=1.0 - done * (1.0 - truncated))  # 0 only at true terminals


def check_divisible(cfg: TrainConfig, num_devices: int) -> None:
  """Raises ValueError unless the envs, batch, eval envs and buffer split evenly."""
  for name in ("num_envs", "batch_size", "num_eval_envs"):
    if getattr(cfg, name) % num_devices:
      raise ValueError(f"--{name} ({getattr(cfg, name)}) must be divisible by the number of "
                       f"devices ({num_devices})")


def make_trainer(cfg: TrainConfig, num_devices: int = 1,
                 axis_name: Optional[str] = None) -> Trainer:
  """Builds the env and the pure init / warmup / train_chunk / evaluate functions.

  With ``num_devices > 1`` the functions are one device's part of a data-parallel run,
  to be mapped over ``axis_name`` (``pmap``): each device steps ``num_envs /
  num_devices`` envs, keeps that share of the replay buffer, samples ``batch_size /
  num_devices`` rows per update and averages gradients through the update's axis
  name. Acting, env and sampling keys are folded with the device index (distinct
  streams); the update key is shared (global-batch semantics), so parameters stay
  identical on every device.
  """
  cfg.validate()
  check_divisible(cfg, num_devices)
  algorithm = get_algorithm(cfg.algo)
  if (num_devices > 1) != (axis_name is not None):
    raise ValueError("a data-parallel trainer needs both num_devices > 1 and an axis_name")
  env = make_env(cfg.env, cfg.backend, cfg.episode_length, cfg.action_repeat)
  eval_env = make_env(cfg.env, cfg.backend, cfg.episode_length, cfg.action_repeat,
                      auto_reset=False)
  obs_dim, act_dim = int(env.observation_size), int(env.action_size)
  n = cfg.num_envs // num_devices                # envs on this device
  batch_size = cfg.batch_size // num_devices     # rows of each update's batch on this device
  num_eval = cfg.num_eval_envs // num_devices
  updates = cfg.updates_per_iteration

  def device_key(key):
    return jax.random.fold_in(key, jax.lax.axis_index(axis_name)) if axis_name else key

  def psum(x):
    return jax.lax.psum(x, axis_name) if axis_name else x

  def env_reset(key):
    return normalise_env_state(env.reset(jax.random.split(key, n)))

  def init(key: jax.Array, hparams: Optional[QSMHyperparams] = None) -> TrainState:
    agent_key, env_key, loop_key = jax.random.split(key, 3)
    agent = algorithm.init(agent_key, obs_dim, act_dim, cfg.qsm,
                           cfg.hparams if hparams is None else hparams)
    env_state = env_reset(device_key(env_key))
    example = Batch(obs=jnp.zeros(obs_dim), action=jnp.zeros(act_dim), reward=jnp.zeros(()),
                    next_obs=jnp.zeros(obs_dim), mask=jnp.zeros(()))
    return TrainState(agent=agent, env_state=env_state,
                      replay=replay_init(example, cfg.replay_capacity // num_devices),
                      key=loop_key,
                      env_steps=jnp.zeros((), jnp.int32))

  def step_envs(ts: TrainState, actions: jax.Array):
    next_state = normalise_env_state(env.step(ts.env_state, actions))
    replay = replay_add(ts.replay, _transition(ts.env_state, next_state, actions,
                                               cfg.reward_scale))
    return (ts.replace(env_state=next_state, replay=replay, env_steps=ts.env_steps + cfg.num_envs),
            next_state)

  def warmup(ts: TrainState) -> TrainState:
    def body(ts, _):
      key, act_key = jax.random.split(ts.key)
      actions = jax.random.uniform(device_key(act_key), (n, act_dim), minval=-1.0, maxval=1.0)
      ts, _ = step_envs(ts.replace(key=key), actions)
      return ts, None
    ts, _ = jax.lax.scan(body, ts, None, length=cfg.warmup_iterations)
    return ts

  def iteration(ts: TrainState, _):
    key, act_key, sample_key, update_key = jax.random.split(ts.key, 4)
    actions = algorithm.act(ts.agent, ts.env_state.obs, device_key(act_key), explore=True)
    ts, next_state = step_envs(ts.replace(key=key), actions)
    batches = replay_sample(ts.replay, device_key(sample_key), (updates, batch_size))

    def update(agent, inputs):
      batch, k = inputs
      return algorithm.update(agent, batch, k, axis_name=axis_name)

    agent, metrics = jax.lax.scan(update, ts.agent, (batches, jax.random.split(update_key, updates)))
    metrics = jax.tree.map(jnp.mean, metrics)
    done = next_state.done
    metrics.update(
        action_saturation=psum(jnp.mean(jnp.abs(actions) > 0.95)) / num_devices,
        episodes=psum(jnp.sum(done)),
        episode_return_sum=psum(jnp.sum(done * next_state.info["episode_metrics"]["sum_reward"])))
    return ts.replace(agent=agent), metrics

  def train_chunk(ts: TrainState) -> tuple[TrainState, dict]:
    ts, metrics = jax.lax.scan(iteration, ts, None, length=cfg.iterations_per_chunk)
    episodes = jnp.sum(metrics.pop("episodes"))
    returns = jnp.sum(metrics.pop("episode_return_sum"))
    metrics = jax.tree.map(jnp.mean, metrics)
    metrics["train_episodes"] = episodes
    metrics["train_return"] = jnp.where(episodes > 0, returns / jnp.maximum(episodes, 1), jnp.nan)
    return ts, metrics

  def evaluate(agent, key: jax.Array) -> dict:
    reset_key, act_key = jax.random.split(key)
    act = lambda obs, k: algorithm.act(agent, obs, k, explore=False)
    episodes = run_episodes(eval_env, act, device_key(reset_key), device_key(act_key), num_eval,
                            cfg.episode_length, cfg.action_repeat)
    ret, length = episodes["returns"], episodes["lengths"]
    if axis_name:  # every device's episodes
      ret = jax.lax.all_gather(ret, axis_name).reshape(-1)
      length = jax.lax.all_gather(length, axis_name).reshape(-1)
    return {"eval_return": jnp.mean(ret), "eval_return_std": jnp.std(ret),
            "eval_episode_length": jnp.mean(length)}

  return Trainer(cfg=cfg, backend=check_env(cfg.env, cfg.backend), obs_dim=obs_dim, act_dim=act_dim, init=init, warmup=warmup,
                 train_chunk=train_chunk, evaluate=evaluate)
