"""Configuration: QSM's static choices (shapes, program) and numeric hyperparameters, and
the training run's ``TrainConfig`` (saved as a run's config.json).

``QSMConfig`` is hashable and static: changing it recompiles. ``QSMHyperparams`` is a
pytree of float leaves stored in the train state, so ``jax.vmap`` can sweep over them
(several M_q values in one program) and changing them never recompiles.
Defaults are the authors' (see ``shared/QSM_SPEC.md``).
"""
from __future__ import annotations

import dataclasses
import math
import numbers
from typing import Any, Optional, Tuple

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
# What the critic learns from (QSMConfig.critic_reward_norm):
#   none:    the rewards as given (the paper's critic);
#   running: rewards divided by a moving average of the batch mean |r| (QSMState.reward_norm,
#            rate QSMConfig.score_norm_rate, bias-corrected), so Q, grad_a Q and the losses
#            have the same size for any reward scale;
#   shrink:  rewards divided by max(1, that average): scaled down to about unit size when
#            they are larger, left as given when smaller (DreamerV3's max(1, S) for its
#            returns), so small or sparse rewards are never amplified.
CRITIC_REWARD_NORMS = ("none", "running", "shrink")


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
    critic_layer_norm: a LayerNorm after every hidden layer of the default critic (SAC's
      and TD3's critics too); off: the authors' critic.
    adam_b1, adam_b2, adam_eps: Adam's constants (both optimizers).
    score_scale: how the Q-score target is scaled: 'fixed' (the paper's -M_q grad_a Q),
      'batch' or 'running' (divided by a batch / moving-average estimate of mean
      |grad_a Q|, so M_q is a step size free of the reward's scale). See SCORE_SCALES.
    score_norm_rate: the moving averages' rate (score_scale='running',
      critic_reward_norm='running' or 'shrink').
    score_critic: which critics give grad_a Q for the actor's target: 'online' (the
      paper's: the critics just updated) or 'target' (their Polyak-averaged copies).
    clip_denoised: sample through the predicted clean action, clipped to [-1, 1]
      (x0 = (x_t - sqrt(1 - abar_t) eps) / sqrt(abar_t), then the DDPM posterior mean);
      without the clip this is the same step as the paper's sampler.
    ascent_sampler: the sampler's step without the DDPM division by sqrt(alpha_t)
      (``diffusion.ddpm_sample``'s ``ascent``): with QSM's noise model, noisy gradient
      ascent on Q, whose noise-free draw is Q's maximum rather than a point beyond it
      toward the bounds. Off: the paper's DDPM sampler. Not with clip_denoised.
    score_sigma_weight: multiply the Q-score target by sigma_t = sqrt(1 - abar_t) of the
      noised replay action's step, so the noise model's implied score -eps / sigma_t is
      M_q grad_a Q (scaled as score_scale says) at every noise level and the sampler's
      last, low-noise steps move a sample by less; off: the paper's target, the same at
      every step.
    critic_reward_norm: 'none' (the paper's critic: the rewards as given), 'running'
      (the critic learns from rewards divided by a moving average of the batch mean |r|,
      so the whole update is free of the reward's scale; Q is then in those units) or
      'shrink' (divided by max(1, that average): free of the scale for rewards above
      about 1 per step, the rewards as given below it). See CRITIC_REWARD_NORMS.
      'running' hurts where rewards are small or zero for long stretches: its average
      starts small and grows as the policy learns, changing Q's units under the critic
      (dmc/finger_spin, 3 seeds: 262 with it, 422 without; 'shrink' leaves DMC's
      rewards, all in [0, 1], as given; experiments/RESULTS.md).
    eval_best_of: the noise-free policy (evaluation, ``load_policy``) draws this many
      sampler outputs per observation and takes the one the critics value most (their
      min Q); 1: one draw, the paper's policy.
    act_best_of: the same for acting in training (before the exploration noise); 1: one
      draw, the paper's.
    eval_temperature: the sampler's noise scale for the noise-free policy (evaluation,
      ``load_policy``); None: the training temperature (hparams.temperature), the paper's.
      0 is the deterministic sampler, which with score_sigma_weight climbs to the
      policy's mode without overshooting.
    target_temperature: the sampler's noise scale for the next action a' of the critic's
      target; None: the training temperature, the paper's (the critic then values the
      exploring sampler). Lower values make the critic value a greedier policy than the
      one that acts.
    spread_target: adapt M_q online so the exploring policy keeps this width, as SAC's
      temperature is tuned toward a target entropy: each update measures the spread, the
      mean |a - a_0| over the batch's next observations and action dims between a
      sampler draw at the training temperature and the deterministic draw (temperature
      0) from the same start, and moves log M_q by spread_rate x (log spread - log
      spread_target): a policy wider than the target gets a larger M_q. The factor is
      QSMState.log_m_q_gain (within 1/1000 to 1000 x hparams.M_q). Costs one extra
      sampler pass per update (two if target_temperature is neither 0 nor None). Meant
      for samplers whose spread falls as M_q grows: 10 or 20 cosine steps, or
      score_sigma_weight (the 5- and 10-step vp samplers' spread rises again at M_q 2-4
      before their draws pile on the bounds). On a quadratic critic, past a sampler's
      window the draws pile on the bounds, the spread falls to about 0 and M_q is
      lowered again; on learned critics whose policy resists narrowing (hopper,
      inverted_pendulum) M_q can climb past the window with the spread still on target,
      and the policy drifts (experiments/RESULTS.md). None: M_q is fixed, the paper's.
    spread_rate: the controller's step on log M_q per update per unit of log error.
  """
  T: int = 5
  beta_schedule: str = "vp"
  clip_sampler: bool = True
  num_critics: int = 2
  actor_hidden: Tuple[int, ...] = (512, 512)
  time_hidden: Tuple[int, ...] = (128, 128)
  fourier_size: int = 64
  critic_hidden: Tuple[int, ...] = (512, 512)
  critic_layer_norm: bool = False
  adam_b1: float = 0.9
  adam_b2: float = 0.999
  adam_eps: float = 1e-8
  score_scale: str = "fixed"
  score_norm_rate: float = 0.005
  score_critic: str = "online"
  clip_denoised: bool = False
  ascent_sampler: bool = False
  score_sigma_weight: bool = False
  critic_reward_norm: str = "none"
  eval_best_of: int = 1
  act_best_of: int = 1
  eval_temperature: Optional[float] = None
  target_temperature: Optional[float] = None
  spread_target: Optional[float] = None
  spread_rate: float = 1e-3

  def __post_init__(self):
    if not isinstance(self.T, int) or self.T < 1:
      raise ValueError(f"T must be a positive int, got {self.T!r}")
    if self.beta_schedule not in BETA_SCHEDULES:
      raise ValueError(f"unknown beta_schedule {self.beta_schedule!r}; choose one of {BETA_SCHEDULES}")
    if self.score_scale not in SCORE_SCALES:
      raise ValueError(f"unknown score_scale {self.score_scale!r}; choose one of {SCORE_SCALES}")
    if self.ascent_sampler and self.clip_denoised:
      raise ValueError("ascent_sampler and clip_denoised are two different sampler steps; "
                       "choose one (the Brax presets set ascent_sampler: add "
                       "--noascent_sampler to use clip_denoised)")
    if self.score_critic not in SCORE_CRITICS:
      raise ValueError(f"unknown score_critic {self.score_critic!r}; choose one of {SCORE_CRITICS}")
    if self.critic_reward_norm not in CRITIC_REWARD_NORMS:
      raise ValueError(f"unknown critic_reward_norm {self.critic_reward_norm!r}; choose one of "
                       f"{CRITIC_REWARD_NORMS}")
    if not (isinstance(self.score_norm_rate, numbers.Real) and 0 < self.score_norm_rate <= 1):
      raise ValueError(f"score_norm_rate must be in (0, 1], got {self.score_norm_rate!r}")
    if self.spread_target is not None and (
        isinstance(self.spread_target, bool) or not isinstance(self.spread_target, numbers.Real)
        or not (math.isfinite(self.spread_target) and 0 < self.spread_target < 2)):
      raise ValueError(f"spread_target must be a number in (0, 2) (a distance between actions "
                       f"in [-1, 1]), got {self.spread_target!r}")
    if not (isinstance(self.spread_rate, numbers.Real) and 0 < self.spread_rate <= 1):
      raise ValueError(f"spread_rate must be in (0, 1], got {self.spread_rate!r}")
    optional = tuple(name for name in ("eval_temperature", "target_temperature")
                     if getattr(self, name) is not None)
    for name in ("adam_b1", "adam_b2", "adam_eps") + optional:
      value = getattr(self, name)
      if (isinstance(value, bool) or not isinstance(value, numbers.Real)
          or not (math.isfinite(value) and value >= 0)):
        raise ValueError(f"{name} must be a finite number >= 0, got {value!r}")
    for name in ("eval_best_of", "act_best_of"):
      value = getattr(self, name)
      if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be a positive int, got {value!r}")
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


@dataclasses.dataclass(frozen=True)
class TrainConfig:
  """Everything that defines a training run (saved as the run's config.json).

  Attributes:
    algo: 'qsm' (default), or the baselines 'sac' / 'td3' (qsm_jax/algorithms.py); the
      baselines read the shared fields of ``qsm`` and ``hparams`` (network widths,
      learning rates, gamma, tau), so one config compares them like for like.
    env: Brax env name, or dmc/<task> for a DM Control Suite task (MuJoCo Playground).
    backend: Brax physics backend: spring, positional, generalized or mjx (None: the env's
      default, qsm_jax/envs.py DEFAULT_BACKENDS).
    episode_length: episode time limit in env steps (every end at it is a truncation,
      bootstrapped).
    action_repeat: physics steps per env step, the same action repeated (Brax's
      EpisodeWrapper).
    fresh_resets: a finished training env restarts from a newly drawn initial state
      (True); False restarts it from the state it was first reset to, as Brax's and
      Playground's AutoResetWrapper do, so each seed trains on only num_envs initial
      states (e.g. num_envs reacher targets). Runs saved before the option read as False.
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
    seed: the run's seed: agent keys are split from PRNGKey(seed).
    num_seeds: independent agents trained together, vmapped, one key each.
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
  fresh_resets: bool = True
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
    from qsm_jax.algorithms import ALGORITHMS  # pylint: disable=import-outside-toplevel
    from qsm_jax.envs import check_env  # pylint: disable=import-outside-toplevel  # brax
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
    d = {**SAVED_BEFORE_ADDED, **d}
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
# are what runs saved before did, unless SAVED_BEFORE_ADDED says otherwise).
ADDED_FIELDS = ("fresh_resets", "algo", "sweep_name", "sweep_values", "qsm.adam_b1", "qsm.adam_b2",
                "qsm.score_scale", "qsm.score_norm_rate", "qsm.score_critic",
                "qsm.clip_denoised", "qsm.critic_layer_norm", "qsm.critic_reward_norm",
                "qsm.eval_best_of", "qsm.act_best_of", "qsm.score_sigma_weight",
                "qsm.eval_temperature", "qsm.target_temperature", "qsm.spread_target",
                "qsm.spread_rate", "qsm.ascent_sampler")

# Top-level fields whose value for a saved config without them differs from the default
# of new runs: what the runs saved before them did.
SAVED_BEFORE_ADDED = {"fresh_resets": False}


def is_optional_number(field: dataclasses.Field) -> bool:
  """Whether a config field defaulting to None holds a number when set (its flag is a
  float flag, its saved value a number or null)."""
  return field.default is None and str(field.type) == "Optional[float]"


def _type_error(default: Any, value: Any, optional_number: bool = False) -> Optional[str]:
  """What is wrong with ``value`` for a field whose default is ``default`` (None: ok).

  The defaults give the schema: int -> an integer, float -> a finite number, bool ->
  true/false, str -> a string, None -> null or a string (null or a finite number if
  ``optional_number``), tuple -> a list of numbers.
  """
  is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
  is_number = lambda v: isinstance(v, (int, float)) and not isinstance(v, bool)
  if optional_number:
    if value is None:
      return None
    return _type_error(0.0, value)
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
  def check(d, defaults, prefix, optional_numbers=()):
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
        fields = dataclasses.fields(default)
        check(d[name], {f.name: getattr(default, f.name) for f in fields}, f"{name}.",
              [f.name for f in fields if is_optional_number(f)])
        continue
      problem = _type_error(default, d[name], name in optional_numbers)
      if problem:
        raise ValueError(f"{source}: field '{prefix}{name}' {problem}, got {d[name]!r}")

  defaults = TrainConfig()
  check(d, {f.name: getattr(defaults, f.name) for f in dataclasses.fields(TrainConfig)}, "")
