"""Brax's own SAC trainer on our env and settings: the external reference for our SAC.

  python experiments/brax_sac.py --env=inverted_pendulum --num_seeds=3 --run_dir=runs/brax_sac
  python experiments/brax_sac.py --total_steps=5000 --num_envs=8 --critic_hidden=32,32

Settings come from the env's qsm_jax preset (qsm_jax/presets.py), overridden by the given
flags, and are mapped onto ``brax.training.agents.sac.train.train`` (see ``brax_settings``).
Brax trains one seed per call, so the seeds run one after another (seed i uses Brax
``seed=cfg.seed + i``). The run folder gets:
  config.json    our TrainConfig (``algo`` set to "brax_sac"), the Brax keyword arguments
                 used ("brax_sac") and the seeds;
  metrics.jsonl  our row format, one row per evaluation: "env_steps", "wall_s",
                 per-seed lists ("eval_return", "eval_return_std", "eval_episode_length",
                 "critic_loss", "actor_loss", "alpha", ...) and their "<name>_mean".

Row semantics (where Brax differs from our runner):
  * Brax evaluates the untrained policy at env step 0, then after the replay prefill
    (``warmup_steps``) every ``ceil((total - prefill) / (num_evals - 1))`` env steps
    (rounded up to whole vectorised steps), ending at or just after ``total_steps``.
    ``num_evals`` is chosen so that the spacing is about ``eval_every``. Every seed has
    the same schedule (it depends only on the settings), so rows are aligned by eval
    index; if the env steps of the seeds ever differed, a row holds their mean and the
    per-seed values in "env_steps_per_seed".
  * "env_steps" is in our units (agent steps; Brax counts physics steps, i.e. times
    ``action_repeat``).
  * "wall_s": the seeds run one after another, so a row's wall_s is the SUM over seeds of
    each seed's time from its ``train`` call to that evaluation (compilation and earlier
    evaluations included): the machine time it took to get every seed to that point,
    comparable to a vmapped run's wall_s. "wall_s_per_seed" holds the parts.
  * "chunk_s": the sum over seeds of Brax's training time since the previous evaluation
    ("training/walltime" differences; the first includes the prefill and the compilation
    of Brax's training epoch, which our runner compiles ahead of time and leaves out).
"""
from __future__ import annotations

import dataclasses
import functools
import json
import math
import os
import sys
import time
from typing import Callable, Optional


ALGO = "brax_sac"

# Brax metric name -> our per-seed metric name (metrics.jsonl).
BRAX_METRICS = {
    "eval/episode_reward": "eval_return",
    "eval/episode_reward_std": "eval_return_std",
    "eval/avg_episode_length": "eval_episode_length",
    "training/critic_loss": "critic_loss",
    "training/actor_loss": "actor_loss",
    "training/alpha_loss": "alpha_loss",
    "training/alpha": "alpha",
    "training/sps": "train_env_steps_per_s",
}

# Flags that override the preset (same names and meaning as experiments/run.py).
LOOP_FLAGS = ("backend", "episode_length", "action_repeat", "num_envs", "num_eval_envs",
              "total_steps", "warmup_steps", "utd", "batch_size", "buffer_size",
              "reward_scale", "log_every", "eval_every", "seed", "num_seeds")


def config_from_preset(env: str, overrides: Optional[dict] = None):
  """TrainConfig of ``env``'s preset with ``overrides`` (flat names: loop, QSMConfig or
  QSMHyperparams fields; None values are ignored)."""
  from qsm_jax.presets import preset  # pylint: disable=import-outside-toplevel
  from qsm_jax.config import TrainConfig  # pylint: disable=import-outside-toplevel
  settings = preset(env)
  settings["env"] = env
  settings.setdefault("seed", 0)
  qsm_fields = {f.name for f in dataclasses.fields(TrainConfig().qsm)}
  hparam_fields = {f.name for f in dataclasses.fields(TrainConfig().hparams)}
  for name, value in (overrides or {}).items():
    if value is None:
      continue
    if name in qsm_fields:
      settings["qsm"][name] = tuple(value) if isinstance(value, list) else value
    elif name in hparam_fields:
      settings["hparams"][name] = value
    else:
      settings[name] = value
  settings["qsm"] = {k: list(v) if isinstance(v, tuple) else v
                     for k, v in settings["qsm"].items()}
  return TrainConfig.from_dict(settings)


def eval_schedule(cfg) -> tuple[int, int, list[int]]:
  """(num_evals, env steps per Brax epoch, the env steps of every eval), our units."""
  prefill = math.ceil(cfg.warmup_steps / cfg.num_envs) * cfg.num_envs
  after_init = max(1, round((cfg.total_steps - prefill) / cfg.eval_every))
  epoch_iters = -(-(cfg.total_steps - prefill) // (after_init * cfg.num_envs))
  epoch = epoch_iters * cfg.num_envs
  return after_init + 1, epoch, [0] + [prefill + i * epoch for i in range(1, after_init + 1)]


def brax_settings(cfg, seed: int, deterministic_eval: bool = True) -> dict:
  """Keyword arguments of brax's sac.train for one seed of ``cfg`` (JSON-able; the
  network factory is built from "actor_hidden" / "critic_hidden" by ``_network_factory``).

  Brax has one learning rate for the actor and the critic (ours: critic_lr; see
  ``unmatched``), counts env steps with action repeat, and takes its replay prefill in
  transitions (ceil(min_replay_size / num_envs) vectorised steps, like our warm-up).
  """
  num_evals, _, _ = eval_schedule(cfg)
  return {
      "num_timesteps": cfg.total_steps * cfg.action_repeat,
      "episode_length": cfg.episode_length,
      "action_repeat": cfg.action_repeat,
      "num_envs": cfg.num_envs,
      "num_eval_envs": cfg.num_eval_envs,
      "learning_rate": float(cfg.hparams.critic_lr),
      "discounting": float(cfg.hparams.gamma),
      "seed": seed,
      "batch_size": cfg.batch_size,
      "num_evals": num_evals,
      "normalize_observations": False,
      "reward_scaling": float(cfg.reward_scale),
      "tau": float(cfg.hparams.tau),
      "min_replay_size": cfg.warmup_steps,
      "max_replay_size": cfg.replay_capacity,
      "grad_updates_per_step": cfg.updates_per_iteration,
      "deterministic_eval": deterministic_eval,
      "actor_hidden": list(cfg.qsm.actor_hidden),
      "critic_hidden": list(cfg.qsm.critic_hidden),
  }


# How Brax's SAC itself differs from qsm_jax's (qsm_jax/sac.py), whatever the settings.
BRAX_DIFFERENCES = (
    "target entropy -0.5 * act_dim (qsm_jax sac: -act_dim)",
    "alpha's Adam learning rate is fixed at 3e-4 (qsm_jax sac: actor_lr)",
    "time-limit truncations are dropped from the critic loss (qsm_jax: bootstrapped from "
    "the true next observation)",
    "Brax's networks: lecun_uniform init, policy std softplus(.) + 0.001 (not a clipped log std)",
)


def unmatched(cfg) -> list[str]:
  """Settings of ``cfg`` Brax's SAC cannot take, one line each (logged, and saved)."""
  notes = ["replay prefill (warmup_steps) acts with the initial SAC policy, not uniform "
           "random actions"]
  if float(cfg.hparams.actor_lr) != float(cfg.hparams.critic_lr):
    notes.append(f"one learning rate for actor and critic: critic_lr {cfg.hparams.critic_lr:g} "
                 f"used, actor_lr {cfg.hparams.actor_lr:g} ignored")
  if cfg.qsm.num_critics != 2:
    notes.append(f"Brax SAC always uses 2 critics (num_critics={cfg.qsm.num_critics} ignored)")
  if cfg.sweep_values:
    notes.append(f"sweep over {cfg.sweep_name} ignored (Brax trains one setting)")
  return notes


def _network_factory(actor_hidden, critic_hidden):
  """Brax's SAC networks with our widths: the policy of one make_sac_networks call with
  the actor widths, the twin Q network of one with the critic widths."""
  from brax.training.agents.sac import networks as sac_networks  # pylint: disable=import-outside-toplevel
  make = sac_networks.make_sac_networks
  if tuple(actor_hidden) == tuple(critic_hidden):
    return functools.partial(make, hidden_layer_sizes=tuple(actor_hidden))

  def factory(observation_size, action_size, preprocess_observations_fn, **kwargs):
    actor = make(observation_size, action_size, preprocess_observations_fn,
                 hidden_layer_sizes=tuple(actor_hidden), **kwargs)
    critic = make(observation_size, action_size, preprocess_observations_fn,
                  hidden_layer_sizes=tuple(critic_hidden), **kwargs)
    return actor.replace(q_network=critic.q_network)
  return factory


def _scalar(value) -> Optional[float]:
  import numpy as np  # pylint: disable=import-outside-toplevel
  v = float(np.asarray(value).reshape(-1)[0])
  return v if math.isfinite(v) else None


def jax_compat() -> None:
  """Brax 0.14.2's trainers call ``jax.device_put_replicated``, which jax 0.10 removed:
  put it back (a leading device axis, one slice per device, as pmap expects) so the
  reference runs on every jax this package supports."""
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  if hasattr(jax, "device_put_replicated"):
    return

  def device_put_replicated(x, devices):
    devices = list(devices)
    stack = lambda a: jnp.broadcast_to(jnp.asarray(a), (len(devices),) + jnp.shape(a))
    return jax.pmap(lambda t: t, devices=devices)(jax.tree.map(stack, x))
  jax.device_put_replicated = device_put_replicated


def train_one_seed(cfg, seed: int, deterministic_eval: bool = True,
                   on_eval: Callable[[dict], None] = lambda r: None) -> list[dict]:
  """Brax SAC for one seed; returns one record per eval: env_steps (ours), wall_s (since
  the call), chunk_s (training time since the previous eval) and our metric names."""
  import brax.envs  # pylint: disable=import-outside-toplevel
  from brax.training.agents.sac import train as sac_train  # pylint: disable=import-outside-toplevel
  jax_compat()
  from qsm_jax.envs import check_env, dmc_tasks, is_dmc  # pylint: disable=import-outside-toplevel
  settings = brax_settings(cfg, seed, deterministic_eval)
  kwargs = {k: v for k, v in settings.items() if k not in ("actor_hidden", "critic_hidden")}
  backend = check_env(cfg.env, cfg.backend)
  if is_dmc(cfg.env):  # Playground's env with Playground's wrappers for Brax's trainers
    from mujoco_playground import dm_control_suite, wrapper  # pylint: disable=import-outside-toplevel
    env = dm_control_suite.load(dmc_tasks()[cfg.env], config_overrides={"impl": "jax"})
    kwargs["wrap_env_fn"] = wrapper.wrap_for_brax_training
  else:
    env = brax.envs.get_environment(cfg.env, backend=backend)
  records = []
  last_train_s = [0.0]
  t0 = time.time()

  def progress(step, metrics):
    train_s = float(metrics.get("training/walltime", last_train_s[0]))
    record = {"env_steps": int(step) // cfg.action_repeat, "wall_s": time.time() - t0,
              "chunk_s": train_s - last_train_s[0]}
    last_train_s[0] = train_s
    for brax_name, name in BRAX_METRICS.items():
      if brax_name in metrics:
        record[name] = _scalar(metrics[brax_name])
    records.append(record)
    on_eval(record)

  sac_train.train(environment=env, network_factory=_network_factory(settings["actor_hidden"],
                                                                     settings["critic_hidden"]),
                  progress_fn=progress, **kwargs)
  return records


def merge_seeds(per_seed: list[list[dict]]) -> list[dict]:
  """Per-seed eval records -> our metrics.jsonl rows (aligned by eval index)."""
  import numpy as np  # pylint: disable=import-outside-toplevel
  rows = []
  for records in zip(*per_seed):
    steps = [r["env_steps"] for r in records]
    row = {"env_steps": int(round(float(np.mean(steps))))}
    if len(set(steps)) > 1:
      row["env_steps_per_seed"] = steps
    row["wall_s"] = round(sum(r["wall_s"] for r in records), 3)
    row["wall_s_per_seed"] = [round(r["wall_s"], 3) for r in records]
    row["chunk_s"] = round(sum(r["chunk_s"] for r in records), 4)
    names = [n for n in BRAX_METRICS.values() if any(n in r for r in records)]
    for name in names:
      values = [r.get(name) for r in records]
      row[name] = values
      finite = [v for v in values if v is not None]
      row[f"{name}_mean"] = float(np.mean(finite)) if finite else None
    rows.append(row)
  return rows


def run_config(cfg, seeds: list[int], deterministic_eval: bool = True) -> dict:
  """What run_brax_sac writes to config.json."""
  d = cfg.to_dict()
  d["algo"] = ALGO
  d[ALGO] = brax_settings(cfg, seeds[0], deterministic_eval)
  d[ALGO].pop("seed")
  d["brax_seeds"] = list(seeds)
  d["brax_unmatched"] = unmatched(cfg)
  d["brax_differences"] = list(BRAX_DIFFERENCES)
  return d


def run_brax_sac(cfg, run_dir: str, log: Callable[[str], None] = print,
                 deterministic_eval: bool = True) -> list[dict]:
  """Trains cfg.num_seeds seeds of Brax SAC one after another; writes ``run_dir``'s
  config.json and metrics.jsonl (rewritten after every seed); returns the rows."""
  import brax  # pylint: disable=import-outside-toplevel
  cfg.validate()
  seeds = [cfg.seed + i for i in range(cfg.num_seeds)]
  os.makedirs(run_dir, exist_ok=True)
  config = run_config(cfg, seeds, deterministic_eval)
  config["brax_version"] = brax.__version__
  with open(os.path.join(run_dir, "config.json"), "w") as f:
    json.dump(config, f, indent=2)
  metrics_path = os.path.join(run_dir, "metrics.jsonl")
  if os.path.exists(metrics_path):
    os.remove(metrics_path)
  num_evals, epoch, steps = eval_schedule(cfg)
  log(f"brax_sac | env {cfg.env} | {cfg.num_seeds} seed(s) {seeds} one after another | "
      f"{cfg.num_envs} envs, {cfg.updates_per_iteration} updates per vectorised step | "
      f"{num_evals} evals: env step 0, {steps[1]:,}, then every {epoch:,} to {steps[-1]:,}")
  for note in unmatched(cfg):
    log(f"brax_sac: not matched: {note}")
  per_seed = []
  t0 = time.time()
  for seed in seeds:
    def on_eval(r, seed=seed):
      length = r.get("eval_episode_length")
      log(f"brax_sac seed {seed} | step {r['env_steps']:>9,}/{cfg.total_steps:,} | "
          f"eval {r.get('eval_return') if r.get('eval_return') is not None else float('nan'):8.1f}"
          + (f" (len {length:.0f})" if length is not None else "")
          + (f" | critic {r['critic_loss']:.3g} actor {r['actor_loss']:.3g} "
             f"alpha {r['alpha']:.3g}" if r.get("critic_loss") is not None else "")
          + f" | {r['wall_s']:.1f}s")
    per_seed.append(train_one_seed(cfg, seed, deterministic_eval, on_eval))
    counts = {len(records) for records in per_seed}
    if len(counts) > 1:
      raise RuntimeError(f"brax_sac: seeds logged different numbers of evals: {sorted(counts)}")
    rows = merge_seeds(per_seed)
    # Rows hold every seed trained so far; the file is rewritten after each seed, so a
    # complete file has len(brax_seeds) values per row.
    with open(metrics_path, "w") as f:
      f.writelines(json.dumps(r) + "\n" for r in rows)
  final = rows[-1]
  log(f"brax_sac done: {final['env_steps']:,} env steps per seed | eval "
      f"{final['eval_return_mean']:.1f} (seeds: "
      f"{', '.join(f'{v:.0f}' for v in final['eval_return'] if v is not None)}) | "
      f"{time.time() - t0:.1f}s | run folder {os.path.abspath(run_dir)}")
  return rows


def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("env", "inverted_pendulum", "Brax env name.")
  flags.DEFINE_string("run_dir", None, "Run folder (default: runs/brax_sac-<env>-<time>).")
  flags.DEFINE_bool("deterministic_eval", True, "Evaluate the mode of the policy (tanh of "
                    "the mean), as our runs evaluate without exploration noise.")
  flags.DEFINE_string("backend", None, "Brax backend (default: per env, qsm_jax/envs.py).")
  for name in LOOP_FLAGS[1:]:
    if name in ("utd", "reward_scale"):
      flags.DEFINE_float(name, None, f"TrainConfig.{name} (default: the env's preset).")
    else:
      flags.DEFINE_integer(name, None, f"TrainConfig.{name} (default: the env's preset).")
  flags.DEFINE_list("actor_hidden", None, "Policy MLP widths, e.g. 64,64.")
  flags.DEFINE_list("critic_hidden", None, "Q MLP widths, e.g. 64,64.")
  for name in ("gamma", "tau", "critic_lr"):
    flags.DEFINE_float(name, None, f"QSMHyperparams.{name} (default: the env's preset).")


def main(argv):
  del argv
  from absl import flags, logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  values = flags.FLAGS
  names = [n for n in LOOP_FLAGS + ("actor_hidden", "critic_hidden", "gamma", "tau",
                                    "critic_lr") if values[n].present]
  overrides = {n: values[n].value for n in names}
  try:
    for name in ("actor_hidden", "critic_hidden"):
      if overrides.get(name) is not None:
        try:
          overrides[name] = [int(w) for w in overrides[name]]
        except ValueError as e:
          raise ValueError(f"--{name} must be comma-separated integers, got "
                           f"{','.join(overrides[name])}") from e
    cfg = config_from_preset(values.env, overrides).validate()
  except ValueError as e:
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  run_dir = values.run_dir or os.path.join(
      "runs", f"brax_sac-{cfg.env}-{time.strftime('%Y%m%d-%H%M%S')}")
  run_brax_sac(cfg, run_dir, log=lambda s: print(s, flush=True),
               deterministic_eval=values.deterministic_eval)


def run():
  """experiments/brax_sac.py's command line."""
  from absl import app  # pylint: disable=import-outside-toplevel
  _define_flags()
  app.run(main)


if __name__ == "__main__":
  run()
