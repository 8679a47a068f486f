"""The host side of a training run: compile, run chunks, evaluate, log, checkpoint, resume.

The host only sees the run between chunks (``TrainConfig.log_every`` env steps each).
A run folder holds:
  config.json      the TrainConfig (resume reads it back)
  run_options.json the checkpoint cadence, max_to_keep, checkpoint_replay and device
                   count (a resume keeps them unless flags override them)
  metrics.jsonl    one row per chunk: env steps, wall time, throughput, losses, eval return
  tb/              TensorBoard event files (tensorboardX)
  checkpoints/     orbax checkpoints of the full training state
  learning_curve.png   written at the end (needs matplotlib: pip install -e '.[plot]')
"""
from __future__ import annotations

import collections
import dataclasses
import json
import os
import time
from typing import Callable, NamedTuple, Optional

import jax
import numpy as np

from qsm_jax.checkpoint import CheckpointMeta, Checkpointer
from qsm_jax.metrics import MetricsWriter, to_row
from qsm_jax.plots import plot_learning_curve
from qsm_jax.parallel import DeviceLayout
from qsm_jax.config import TrainConfig
from qsm_jax.training import Trainer, TrainState, check_divisible, make_trainer

# Settings that may change when resuming: they do not change the algorithm's result.
RESUMABLE_CHANGES = ("total_steps", "eval_every", "num_eval_envs")
LOSS_KEYS = ("critic_loss", "actor_loss", "q_mean")


class NonFiniteError(RuntimeError):
  """A loss became NaN or infinite; the run stopped without saving the bad state."""


@dataclasses.dataclass(frozen=True)
class RunOptions:
  """How a run is kept on disk (not part of the algorithm).

  Attributes:
    run_dir: the run folder.
    resume: continue from the latest checkpoint in ``run_dir``.
    checkpoint_every: env steps between checkpoints (at the next chunk boundary);
      0 disables periodic checkpoints (the final state is still saved).
    checkpoint_replay: include the replay buffer in checkpoints (exact resume).
    max_to_keep: checkpoints kept.
    write_plot: write learning_curve.png at the end (if matplotlib is installed).
    num_devices: devices to split the envs, replay buffer and batch over (data
      parallel, ``pmap``); None: every local device, or in a multi-process run
      (``parallel.initialize_distributed``) every device of every process.
  """
  run_dir: str
  resume: bool = False
  checkpoint_every: int = 50_000
  checkpoint_replay: bool = True
  max_to_keep: int = 2
  write_plot: bool = True
  num_devices: Optional[int] = None

  def __post_init__(self):
    is_int = lambda v: isinstance(v, int) and not isinstance(v, bool)
    if not is_int(self.checkpoint_every) or self.checkpoint_every < 0:
      raise ValueError(f"--checkpoint_every must be an integer >= 0 (0: only at the end), "
                       f"got {self.checkpoint_every!r}")
    if not is_int(self.max_to_keep) or self.max_to_keep < 1:
      raise ValueError(f"--max_to_keep must be a positive integer, got {self.max_to_keep!r}")
    if not isinstance(self.checkpoint_replay, bool):
      raise ValueError(f"--checkpoint_replay must be true or false, got "
                       f"{self.checkpoint_replay!r}")
    if self.num_devices is not None and (not is_int(self.num_devices)
                                         or self.num_devices < 1):
      raise ValueError(f"--num_devices must be a positive integer (leave it out for every "
                       f"device), got {self.num_devices!r}")


# The run options saved with a run (run_options.json) and restored by a resume: a
# resumed run keeps its checkpoint cadence and device count unless a flag overrides them.
SAVED_OPTIONS = ("checkpoint_every", "checkpoint_replay", "max_to_keep", "num_devices")
OPTIONS_FILE = "run_options.json"


def save_run_options(opts: RunOptions) -> None:
  """Writes the SAVED_OPTIONS of ``opts`` to the run folder's run_options.json."""
  path = os.path.join(opts.run_dir, OPTIONS_FILE)
  with open(path + ".tmp", "w") as f:
    json.dump({name: getattr(opts, name) for name in SAVED_OPTIONS}, f, indent=2)
  os.replace(path + ".tmp", path)  # never a half-written file


def resume_options(run_dir: str, given: dict) -> tuple[RunOptions, list[str]]:
  """RunOptions to resume ``run_dir`` with: its saved options, overridden by ``given``
  (option name -> value, only the options the user gave); and one line per override
  (or a line saying that a run from before run_options.json has nothing saved).

  Raises ValueError (one line) for an unreadable or invalid run_options.json.
  """
  path = os.path.join(run_dir, OPTIONS_FILE)
  notes = []
  saved = {}
  if os.path.exists(path):
    try:
      with open(path) as f:
        saved = json.load(f)
    except ValueError as e:
      raise ValueError(f"{path} is not valid JSON ({e})") from e
    if not isinstance(saved, dict):
      raise ValueError(f"{path}: must be a JSON object, got {type(saved).__name__}")
    unknown = sorted(set(saved) - set(SAVED_OPTIONS))
    if unknown:
      raise ValueError(f"{path}: unknown field '{unknown[0]}'")
  else:
    notes.append(f"resume: {run_dir} has no {OPTIONS_FILE} (saved by an older qsm_jax): "
                 "run options come from the flags and their defaults")
  for name, value in given.items():
    if name in saved and saved[name] != value:
      notes.append(f"resume: --{name}={value} overrides the run's saved {saved[name]}")
  options = {**saved, **given}
  try:
    opts = RunOptions(run_dir=run_dir, resume=True, **options)
  except ValueError as e:
    raise ValueError(f"{path}: {e}") from e
  return opts, notes


@dataclasses.dataclass
class RunResult:
  train_state: TrainState
  rows: list
  compile_s: float
  train_s: float
  run_dir: str


def read_run_config(run_dir: str, context: str) -> TrainConfig:
  """The TrainConfig saved in ``run_dir``/config.json, checked field by field (a field
  added since the run was saved takes its default). ValueError in one line, starting
  with ``context``, for a missing, unreadable or invalid file."""
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    raise ValueError(f"{context}: {path} does not exist")
  try:
    with open(path) as f:
      saved = json.load(f)
  except ValueError as e:
    raise ValueError(f"{context}: {path} is not valid JSON ({e})") from e
  return TrainConfig.from_saved(saved, f"{context}: {path}")


def config_mismatch(saved: dict, current: dict) -> list[str]:
  """Names of settings that differ between a saved run and the requested one."""
  diffs = []
  for key in sorted(set(saved) | set(current)):
    if key in RESUMABLE_CHANGES:
      continue
    if saved.get(key) != current.get(key):
      diffs.append(f"{key}: saved {saved.get(key)!r} != requested {current.get(key)!r}")
  return diffs


def memory_report(ts: TrainState) -> dict:
  """Bytes held by the replay buffer, networks (+targets), optimizer states and envs."""
  nbytes = lambda tree: int(sum(x.nbytes for x in jax.tree.leaves(tree)))
  fields = [f.name for f in dataclasses.fields(ts.agent)]
  opt = [getattr(ts.agent, n) for n in fields if n.endswith("opt_state")]
  params = [getattr(ts.agent, n) for n in fields if n.endswith("params")]
  return {"replay_bytes": nbytes(ts.replay), "network_bytes": nbytes(params),
          "optimizer_bytes": nbytes(opt), "env_state_bytes": nbytes(ts.env_state)}


def _fmt_time(seconds: float) -> str:
  seconds = int(max(seconds, 0))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _eval_keys(cfg: TrainConfig, env_steps: int) -> jax.Array:
  # Evaluation draws its own keys, so evaluating never changes the training stream.
  base = jax.random.fold_in(jax.random.PRNGKey(cfg.seed), 0x0E7A1)
  return jax.random.split(jax.random.fold_in(base, env_steps), cfg.num_agents)


def _agents_text(cfg: TrainConfig) -> str:
  text = f"{cfg.num_seeds} seed(s)"
  if cfg.sweep_values:
    text += f" x {len(cfg.sweep_values)} {cfg.sweep_name} values"
  return text


def _groups(cfg: TrainConfig) -> list[tuple[str, list[int]]]:
  """(label, agent indices) per sweep value, or one group of every agent."""
  if not cfg.sweep_values:
    return [("", list(range(cfg.num_agents)))]
  n = cfg.num_seeds
  return [(f"{cfg.sweep_name}={v:g}", list(range(i * n, (i + 1) * n)))
          for i, v in enumerate(cfg.sweep_values)]


def _per_agent_text(cfg: TrainConfig, values: list) -> str:
  """Eval returns per agent (<= 8 agents), or per sweep value (mean over its seeds)."""
  fmt = lambda vs: ", ".join(f"{v:.0f}" for v in vs if v is not None)
  if not cfg.sweep_values:
    return fmt(values) if len(values) <= 8 else ""
  means = []
  for label, agents in _groups(cfg):
    finite = [values[a] for a in agents if values[a] is not None]
    means.append(f"{label}: {np.mean(finite):.0f}" if finite else f"{label}: nan")
  return " | ".join(means)


def _crossed(prev: int, now: int, every: int) -> bool:
  return every > 0 and now // every > prev // every


class _Programs(NamedTuple):
  trainer: Trainer
  init: Callable
  warmup: Callable
  chunk: Callable
  evaluate: Callable


_PROGRAMS: "collections.OrderedDict[tuple, _Programs]" = collections.OrderedDict()


def _programs(cfg: TrainConfig, layout: DeviceLayout) -> _Programs:
  """The trainer's functions, mapped over seeds and devices. The last few are kept, so
  another run of the same settings in this process (a resume, a notebook's second run)
  reuses the traced and compiled programs instead of tracing them again. The settings
  the programs do not read are not part of the key (total_steps, eval_every and seed
  only set how many chunks run, when to evaluate and the keys passed in; hparams are
  arrays passed to init, so a run with other values reuses the programs); make_trainer
  is (a replaced one builds its own)."""
  key = (make_trainer, dataclasses.replace(cfg, total_steps=0, eval_every=0, seed=0,
                                           hparams=type(cfg.hparams)()), layout)
  if key not in _PROGRAMS:
    trainer = make_trainer(cfg, layout.num_devices, layout.axis_name)
    _PROGRAMS[key] = _Programs(trainer=trainer, init=layout.map(trainer.init),
                               warmup=layout.map(trainer.warmup),
                               chunk=layout.map(trainer.train_chunk, donate_argnums=0),
                               evaluate=layout.map(trainer.evaluate))
    while len(_PROGRAMS) > 8:
      _PROGRAMS.popitem(last=False)
  _PROGRAMS.move_to_end(key)
  return _PROGRAMS[key]


def train(cfg: TrainConfig, opts: RunOptions,
          log: Callable[[str], None] = print) -> RunResult:
  """Trains (or resumes) a run end to end; returns the final state and the metric rows.

  Raises ValueError for invalid settings or a checkpoint that does not match ``cfg``,
  NonFiniteError if a loss becomes non-finite (the last good checkpoint is kept).
  """
  cfg.validate()
  layout = DeviceLayout.create(opts.num_devices)
  num_devices = layout.num_devices
  check_divisible(cfg, num_devices)
  if not layout.is_main_process:  # one voice: the main process logs and writes files
    log = lambda message: None
  run_dir = os.path.abspath(opts.run_dir)
  config_path = os.path.join(run_dir, "config.json")
  ckpt_dir = os.path.join(run_dir, "checkpoints")
  if opts.resume:
    saved = read_run_config(run_dir, "cannot resume").to_dict()
    diffs = config_mismatch(saved, cfg.to_dict())
    if diffs:
      raise ValueError("checkpoint config does not match: " + "; ".join(diffs))
  elif os.path.exists(ckpt_dir) and os.listdir(ckpt_dir):
    raise ValueError(f"{run_dir} already holds checkpoints; pass --resume to continue it "
                     "or choose another --run_dir")
  if layout.is_main_process:
    os.makedirs(run_dir, exist_ok=True)
    with open(config_path, "w") as f:
      json.dump(cfg.to_dict(), f, indent=2)

  # One copy of every seed's state per device (pmap over devices, vmap over seeds):
  # agents replicated, envs and replay split. pmap keeps the per-device program plain
  # and its collectives (qsm_update's pmean) explicit; see qsm_jax/parallel.py.
  programs = _programs(cfg, layout)
  trainer, warmup_fn, chunk_fn = programs.trainer, programs.warmup, programs.chunk
  checkpointer = Checkpointer(ckpt_dir, opts.max_to_keep, opts.checkpoint_replay)
  replicate, first = layout.replicate, layout.first
  init_fn = lambda keys, hparams: programs.init(replicate(keys), replicate(hparams))
  eval_fn = lambda agent, keys: first(programs.evaluate(agent, replicate(keys)))

  log(f"qsm_jax | {cfg.algo.upper()} | env {cfg.env} ({trainer.backend} backend) "
      f"obs {trainer.obs_dim} act {trainer.act_dim} | {_agents_text(cfg)} x {cfg.num_envs} envs | "
      f"{cfg.updates_per_iteration} updates per vectorised step | "
      f"{num_devices} x {jax.devices()[0].platform} device(s)"
      + (f" in {jax.process_count()} processes" if jax.process_count() > 1 else ""))
  t0 = time.time()
  # Agent i: seed stream cfg.seed_index(i) (the same streams for every sweep value) and
  # its own hyperparameters.
  seed_keys = jax.random.split(jax.random.PRNGKey(cfg.seed), cfg.num_seeds)
  agent_keys = np.stack([seed_keys[cfg.seed_index(i)] for i in range(cfg.num_agents)])
  agent_hparams = jax.tree.map(lambda *v: np.asarray(v, np.float32),
                               *[cfg.agent_hparams(i) for i in range(cfg.num_agents)])
  ts = init_fn(agent_keys, agent_hparams)
  start_step = None
  if opts.resume and checkpointer.latest_step() is not None:
    checkpointer.read_meta().check_resumable(cfg.algo, num_devices)
    restored, meta = checkpointer.restore(layout.checkpoint_template(ts))
    start_step, had_replay = int(meta.env_steps), meta.has_replay
    log(f"resumed from {ckpt_dir} at env step {start_step}"
        + ("" if had_replay else " (replay buffer not saved: refilling it with random actions)"))
    if had_replay:
      ts = layout.from_checkpoint(restored)
    else:  # keep the fresh, empty buffer and refill it
      ts = layout.from_checkpoint(restored.replace(replay=None)).replace(
          replay=layout.host(ts.replay))
      ts = warmup_fn(ts).replace(env_steps=ts.env_steps)
  elif opts.resume:
    log(f"no checkpoint in {ckpt_dir}: starting from scratch")
  if layout.is_main_process:  # after the resume checks: a refused resume changes nothing
    save_run_options(dataclasses.replace(opts, run_dir=run_dir))
  logger = MetricsWriter(run_dir, keep_up_to=start_step if start_step is not None else -1,
                   write_files=layout.is_main_process)
  # A resumed run's clock continues from its last kept row, so wall_s never steps back.
  wall_offset = logger.rows[-1]["wall_s"] if logger.rows else 0.0
  mem = memory_report(ts)
  log("memory: " + ", ".join(f"{k[:-6]} {v / 2**20:.1f} MiB" for k, v in mem.items()))
  if start_step is None:
    ts = warmup_fn(ts)
    log(f"warm-up: {cfg.warmup_iterations * cfg.num_envs} random-action env steps per seed "
        f"({time.time() - t0:.1f}s incl. compile)")

  chunk_size = (f"{cfg.iterations_per_chunk} vectorised steps, "
                f"{cfg.iterations_per_chunk * cfg.updates_per_iteration} updates")
  if jax.process_count() > 1:
    # pmap's ahead-of-time executable expects global shapes once several processes take
    # part; the ordinary call path compiles on the first chunk instead.
    compiled_chunk, compile_s = chunk_fn, 0.0
    log(f"the training chunk ({chunk_size}) compiles during the first chunk")
  else:
    t_compile = time.time()
    compiled_chunk = chunk_fn.lower(ts).compile()
    compile_s = time.time() - t_compile
    log(f"compiled the training chunk ({chunk_size}) in {compile_s:.1f}s")

  env_steps = int(np.asarray(first(ts.env_steps)).reshape(-1)[0])
  first_chunk = (env_steps - cfg.warmup_iterations * cfg.num_envs) // cfg.chunk_env_steps
  train_s = 0.0
  chunk_times = []
  try:
    for chunk in range(first_chunk, cfg.num_chunks):
      t_chunk = time.time()
      ts, metrics = compiled_chunk(ts)
      metrics = jax.device_get(first(metrics))
      dt = time.time() - t_chunk
      train_s += dt
      chunk_times.append(dt)
      prev_steps, env_steps = env_steps, int(np.asarray(first(ts.env_steps)).reshape(-1)[0])
      bad = [k for k in LOSS_KEYS if not np.all(np.isfinite(metrics[k]))]
      if bad:
        last = checkpointer.latest_step()
        raise NonFiniteError(
            f"non-finite {', '.join(bad)} at env step {env_steps}; the run stopped and the "
            f"bad state was not saved (last good checkpoint: "
            f"{'none' if last is None else f'env step {last} in {ckpt_dir}'})")
      last_chunk = chunk == cfg.num_chunks - 1
      if _crossed(prev_steps, env_steps, cfg.eval_every) or last_chunk:
        metrics.update(jax.device_get(eval_fn(ts.agent, _eval_keys(cfg, env_steps))))
      row = {"env_steps": env_steps, "wall_s": round(wall_offset + time.time() - t0, 3),
             "chunk_s": round(dt, 4),
             "env_steps_per_s": cfg.chunk_env_steps * cfg.num_agents / dt,
             "updates_per_s": cfg.iterations_per_chunk * cfg.updates_per_iteration
                              * cfg.num_agents / dt}
      row.update(to_row(metrics))
      logger.write(row)
      eta = np.mean(chunk_times[-10:]) * (cfg.num_chunks - chunk - 1)
      evals = [r["eval_return_mean"] for r in logger.rows if r.get("eval_return_mean") is not None]
      per_seed = ""
      if row.get("eval_return") and 1 < cfg.num_agents:
        per_seed = " [" + _per_agent_text(cfg, row["eval_return"]) + "]"
      # The spread controller's M_q (QSMConfig.spread_target), where it runs.
      controller = (f" M_q {row['M_q_mean']:.3g} spread {row['spread_mean']:.3f}"
                    if row.get("M_q_mean") is not None else "")
      log(f"step {env_steps:>9,}/{cfg.total_steps:,} ({100 * env_steps / cfg.total_steps:3.0f}%) | "
          f"{row['env_steps_per_s']:8,.0f} env-steps/s {row['updates_per_s']:7,.0f} updates/s | "
          f"eval {evals[-1] if evals else float('nan'):8.1f}{per_seed} | "
          f"train ret {row['train_return_mean'] if row['train_return_mean'] is not None else float('nan'):8.1f} | "
          f"critic {row['critic_loss_mean']:.3g} actor {row['actor_loss_mean']:.3g} "
          f"sat {row['action_saturation_mean']:.2f}{controller} | ETA {_fmt_time(eta)}")
      if _crossed(prev_steps, env_steps, opts.checkpoint_every) or last_chunk:
        layout.assert_replicas_identical(ts.agent)
        checkpointer.save(env_steps, layout.to_checkpoint(ts), CheckpointMeta(
            env_steps=env_steps, config=cfg.to_dict(), num_devices=num_devices,
            num_processes=jax.process_count(), obs_dim=trainer.obs_dim,
            act_dim=trainer.act_dim))
  finally:
    logger.close()
    checkpointer.close()
  if opts.write_plot and logger.rows and layout.is_main_process:
    png = os.path.join(run_dir, "learning_curve.png")
    title = f"{cfg.algo.upper()} on {cfg.env} ({_agents_text(cfg)})"
    if plot_learning_curve(logger.rows, png, title, _groups(cfg)):
      log(f"wrote {png}")
    else:
      log("matplotlib is not installed: no learning_curve.png (pip install -e '.[plot]')")
  log(f"done: {env_steps:,} env steps per seed | compile {compile_s:.1f}s, training "
      f"{train_s:.1f}s | run folder {run_dir}")
  return RunResult(train_state=ts, rows=logger.rows, compile_s=compile_s, train_s=train_s,
                   run_dir=run_dir)
