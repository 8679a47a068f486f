"""Compare algorithms x seeds on one env: learning curves and a table of returns.

  python experiments/compare.py --env=inverted_pendulum --algos=qsm,sac,td3,brax_sac \\
      --num_seeds=3 --out=experiments/results/inverted_pendulum
  python experiments/compare.py ... --total_steps=50000       # flags override the preset
  python experiments/compare.py --out=experiments/results/inverted_pendulum --plot_only
  python experiments/compare.py --env=hopper --algos=qsm,qsm_paper --reward_scales=0.1,1,10,100

Every algorithm runs from the SAME TrainConfig (the env's preset, qsm_jax/presets.py,
overridden by the given flags), differing only in ``algo``, each in ``<out>/<algo>/``:
  qsm, sac, td3   one ``qsm_jax.runner.train`` call each, all seeds vmapped in one program;
  qsm_paper       the same for QSM in the paper's form (fixed -M_q grad_a Q, M_q 50:
                  qsm_jax/presets.py PAPER_FORM) on the same preset;
  brax_sac        Brax's own SAC trainer (experiments/brax_sac.py), the seeds one after
                  another, the external reference for our sac.
An algorithm whose folder already holds a complete run with the same settings is skipped
(so a long comparison can be continued); an incomplete qsm/sac/td3 run with checkpoints is
resumed; a folder with other settings is an error unless --overwrite. Then:
  <out>/curves.png     eval return vs env steps: the mean over seeds and its min-max band
  <out>/summary.md     a table of returns and times (also printed; its columns are defined
                       in qsm_jax/cli/report.py, which writes the report), and summary.json
With --reward_scales=0.1,1,10,100 the whole comparison runs once per reward scale, in
<out>/reward_scale_<s>/, and <out>/reward_scale.png / .md / .json put each algorithm's
final eval return (env units) against the scale.
"""
from __future__ import annotations

import dataclasses
import math
import os
import shutil
import sys
import time
from typing import Callable

from qsm_jax.cli.report import (existing_run_dirs, read_config, read_rows, reward_scale_dir,
                                write_report, write_reward_scale_report)

ALL_ALGOS = ("qsm", "qsm_paper", "sac", "td3", "brax_sac")
BRAX = "brax_sac"
# Settings that may differ between a saved run and the request without a rerun: they do
# not change the result up to the saved run's end (qsm_jax.runner.RESUMABLE_CHANGES).
RESUMABLE_CHANGES = ("total_steps", "eval_every", "num_eval_envs")
# Brax settings that a complete brax_sac folder may differ in (the schedule of evals).
BRAX_RESUMABLE = ("num_timesteps", "num_evals", "num_eval_envs")


class CompareError(ValueError):
  """A bad request (one line, printed as 'error: ...')."""


# ---------------------------------------------------------------- algorithms and config

def our_algos() -> tuple:
  """What qsm_jax's runner can train: TrainConfig.algo values and QSM variants."""
  from qsm_jax.algorithms import ALGORITHMS  # pylint: disable=import-outside-toplevel
  from qsm_jax.presets import QSM_VARIANTS  # pylint: disable=import-outside-toplevel
  return tuple(ALGORITHMS) + tuple(QSM_VARIANTS)


def parse_algos(text: str) -> list[str]:
  """'qsm,sac' -> ['qsm', 'sac']; CompareError for unknown, repeated or no names."""
  names = [n.strip() for n in (text or "").split(",") if n.strip()]
  if not names:
    raise CompareError("--algos: no algorithm given; choose from " + ", ".join(ALL_ALGOS))
  valid = tuple(a for a in ALL_ALGOS if a == BRAX or a in our_algos())
  unknown = [n for n in names if n not in valid]
  if unknown:
    raise CompareError(f"--algos: unknown algorithm(s) {', '.join(map(repr, unknown))}; "
                       f"choose from {', '.join(valid)}")
  repeated = sorted({n for n in names if names.count(n) > 1})
  if repeated:
    raise CompareError(f"--algos: {', '.join(repeated)} given more than once")
  return names


def algo_config(cfg, algo: str):
  """``cfg`` for ``algo`` (brax_sac reads the shared config as it is; a QSM variant such
  as qsm_paper is QSM with the variant's settings, qsm_jax/presets.py QSM_VARIANTS)."""
  from qsm_jax.presets import QSM_VARIANTS, apply_variant  # pylint: disable=import-outside-toplevel
  if algo == BRAX:
    return cfg
  if algo in QSM_VARIANTS:
    return apply_variant(cfg, algo)
  return dataclasses.replace(cfg, algo=algo)

# ---------------------------------------------------------------- run folders

def _requested_config(cfg, algo: str) -> dict:
  if algo == BRAX:
    from qsm_jax.cli.brax_sac import run_config  # pylint: disable=import-outside-toplevel
    return run_config(cfg, [cfg.seed + i for i in range(cfg.num_seeds)])
  return algo_config(cfg, algo).to_dict()


def _with_defaults(saved: dict, algo: str) -> dict:
  """A saved qsm_jax run's config with the fields added since it was written at their
  defaults (what it ran with), as ``--resume`` reads it; unchanged if it does not parse
  (the diff then names what differs) or for brax_sac (only its Brax settings count)."""
  if algo == BRAX:
    return saved
  from qsm_jax.config import TrainConfig  # pylint: disable=import-outside-toplevel
  try:
    return TrainConfig.from_saved(saved).to_dict()
  except ValueError:
    return saved


def _flatten(d: dict, prefix: str = "") -> dict:
  """{'hparams': {'M_q': 5}} -> {'hparams.M_q': 5}."""
  flat = {}
  for k, v in d.items():
    if isinstance(v, dict):
      flat.update(_flatten(v, f"{prefix}{k}."))
    else:
      flat[f"{prefix}{k}"] = v
  return flat


def config_diffs(saved: dict, requested: dict, algo: str) -> list[str]:
  """Settings that differ between a saved run and the request (beyond resumable ones)."""
  if algo == BRAX:  # only what Brax was given (QSM-only fields do not matter to it)
    saved_b, req_b = dict(saved.get(BRAX, {})), dict(requested.get(BRAX, {}))
    pairs = [(k, saved_b.get(k), req_b.get(k)) for k in sorted(set(saved_b) | set(req_b))
             if k not in BRAX_RESUMABLE]
    pairs += [("env", saved.get("env"), requested.get("env")),
              ("backend", saved.get("backend"), requested.get("backend")),
              ("brax_seeds", saved.get("brax_seeds"), requested.get("brax_seeds"))]
  else:
    flat_saved, flat_requested = _flatten(saved), _flatten(requested)
    pairs = [(k, flat_saved.get(k), flat_requested.get(k))
             for k in sorted(set(flat_saved) | set(flat_requested)) if k not in RESUMABLE_CHANGES]
  return [f"{k}: saved {a!r} != requested {b!r}" for k, a, b in pairs if a != b]


def is_complete(rows: list[dict], total_steps: int, num_seeds: int) -> bool:
  """A finished run: its last row has an eval of every seed at or after total_steps."""
  if not rows:
    return False
  last = rows[-1]
  return (last.get("env_steps", -1) >= total_steps and bool(last.get("eval_return"))
          and len(last["eval_return"]) == num_seeds)


def run_status(run_dir: str, algo: str, cfg) -> tuple[str, str]:
  """(status, reason) of ``algo``'s folder for the request ``cfg``; status is one of
  'missing' (nothing there), 'complete' (skip it), 'resumable' (qsm/sac/td3 run with a
  checkpoint, not finished), 'partial' (unfinished, start again), 'mismatch' (other
  settings)."""
  saved = read_config(run_dir)
  rows = read_rows(run_dir)
  if saved is None and not rows:
    return "missing", ""
  if saved is not None:
    diffs = config_diffs(_with_defaults(saved, algo), _requested_config(cfg, algo), algo)
    if diffs:
      return "mismatch", "; ".join(diffs)
  if saved is not None and is_complete(rows, cfg.total_steps, cfg.num_seeds):
    return "complete", f"{rows[-1]['env_steps']:,} env steps"
  ckpt = os.path.join(run_dir, "checkpoints")
  if algo != BRAX and saved is not None and os.path.isdir(ckpt) and os.listdir(ckpt):
    return "resumable", f"{rows[-1]['env_steps'] if rows else 0:,} env steps logged"
  return "partial", f"{rows[-1]['env_steps'] if rows else 0:,} env steps logged"


def plan(out: str, algos: list[str], cfg, overwrite: bool = False) -> list[tuple]:
  """(algo, run_dir, action, reason) per algo; action: 'skip', 'run', 'resume' or 'rerun'
  (a partial run or --overwrite: the folder is deleted first). CompareError for a folder
  with other settings (unless ``overwrite``), before anything runs."""
  steps, errors = [], []
  for algo in algos:
    run_dir = os.path.join(out, algo)
    status, reason = run_status(run_dir, algo, cfg)
    if status == "missing":
      action = "run"
    elif overwrite:
      action, reason = "rerun", "--overwrite"
    elif status == "complete":
      action = "skip"
    elif status == "resumable":
      action = "resume"
    elif status == "partial":
      action = "rerun"
    else:
      errors.append(f"{run_dir} holds a {algo} run with other settings ({reason})")
      continue
    steps.append((algo, run_dir, action, reason))
  if errors:
    raise CompareError("; ".join(errors) + "; pass --overwrite to replace it or choose "
                       "another --out")
  return steps


def run_algo(cfg, algo: str, run_dir: str, action: str, log: Callable[[str], None],
             checkpoint_every: int = 50_000) -> None:
  """Trains ``algo`` into ``run_dir`` as ``plan`` decided."""
  if action == "skip":
    return
  if action == "rerun" and os.path.exists(run_dir):
    shutil.rmtree(run_dir)
  if algo == BRAX:
    from qsm_jax.cli.brax_sac import run_brax_sac  # pylint: disable=import-outside-toplevel
    run_brax_sac(cfg, run_dir, log=log)
    return
  from qsm_jax.runner import RunOptions, train  # pylint: disable=import-outside-toplevel
  train(algo_config(cfg, algo), RunOptions(run_dir=run_dir, resume=action == "resume",
                                           checkpoint_every=checkpoint_every), log=log)


# ---------------------------------------------------------------- reward scale

def parse_scales(values) -> list[float]:
  """['0.1', '1'] -> [0.1, 1.0]; CompareError unless positive, finite and distinct."""
  try:
    scales = [float(v) for v in values]
  except ValueError as e:
    raise CompareError(f"--reward_scales must be numbers, got {','.join(values)}") from e
  if not scales or any(not (math.isfinite(v) and v > 0) for v in scales):
    raise CompareError(f"--reward_scales must be positive numbers, got {','.join(values)}")
  if len(set(scales)) != len(scales):
    raise CompareError(f"--reward_scales: a value is given twice in {','.join(values)}")
  return scales


# ---------------------------------------------------------------- command line

def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel
  from qsm_jax.cli.config_flags import define_config_flags  # pylint: disable=import-outside-toplevel
  flags.DEFINE_string("env", "inverted_pendulum", "Brax env name.")
  flags.DEFINE_string("algos", ",".join(ALL_ALGOS), "Comma-separated algorithms: "
                      + ", ".join(ALL_ALGOS) + ".")
  flags.DEFINE_string("out", None, "Output folder (default: experiments/results/<env>).")
  flags.DEFINE_bool("overwrite", False, "Retrain algorithms whose folders already hold a run.")
  flags.DEFINE_bool("plot_only", False, "Only re-plot and re-summarise the run folders in "
                    "--out (those named by --algos if given, any folder names).")
  flags.DEFINE_list("reward_scales", None, "Train every algorithm at each of these reward "
                    "scales (<out>/reward_scale_<s>/<algo>, each with its own curves and "
                    "summary) and plot the final return against the scale "
                    "(<out>/reward_scale.png, .md, .json).")
  flags.DEFINE_float("fraction", 0.9, "Steps/time to this fraction of the best mean return.")
  flags.DEFINE_integer("checkpoint_every", 50_000, "Env steps between checkpoints of the "
                       "qsm_jax runs (a stopped comparison resumes from them).")
  # Every training setting but --algo (qsm_jax/cli/config_flags.py): overrides the preset.
  return define_config_flags(exclude=("algo",))


def main(argv, override_names):
  from absl import flags, logging  # pylint: disable=import-outside-toplevel
  from qsm_jax.cli.config_flags import given_override  # pylint: disable=import-outside-toplevel
  from qsm_jax.presets import preset_config  # pylint: disable=import-outside-toplevel
  from qsm_jax.runner import NonFiniteError  # pylint: disable=import-outside-toplevel
  if len(argv) > 1:
    print(f"error: unexpected arguments {' '.join(argv[1:])}", file=sys.stderr, flush=True)
    sys.exit(1)
  logging.set_verbosity(logging.WARNING)  # orbax logs every file it writes at INFO
  fv = flags.FLAGS
  out = fv.out or os.path.join("experiments", "results", fv.env)
  os.makedirs(out, exist_ok=True)
  log_path = os.path.join(out, "compare.log")

  def log(message):
    print(message, flush=True)
    with open(log_path, "a") as f:
      f.write(message + "\n")

  try:
    if not 0 < fv.fraction <= 1:
      raise CompareError(f"--fraction must be in (0, 1], got {fv.fraction}")
    if fv.plot_only and not fv.reward_scales:
      # Any folder names of --out (e.g. a renamed run), in the order given.
      algos = ([n.strip() for n in fv.algos.split(",") if n.strip()]
               if fv["algos"].present else None)
      run_dirs = existing_run_dirs(out, algos, known=ALL_ALGOS)
      missing = [a for a in algos or () if a not in run_dirs]
      if missing or not run_dirs:
        raise CompareError(f"--plot_only: no run folder with a metrics.jsonl in {out}"
                           + (f" for {', '.join(missing)}" if missing else ""))
      env = (read_config(next(iter(run_dirs.values()))) or {}).get("env", fv.env)
      write_report(out, run_dirs, env, fv.fraction, log)
      return
    if fv.plot_only and fv.reward_scales:
      scales = parse_scales(fv.reward_scales)
      algos = parse_algos(fv.algos)
      write_reward_scale_report(out, scales, algos, fv.env, fv.fraction, log)
      return
    algos = parse_algos(fv.algos)
    cfg = preset_config(fv.env, given_override(override_names))
    for algo in algos:
      algo_config(cfg, algo).validate()
    # One comparison per reward scale (or just the one): all planned before anything
    # runs, so a folder with other settings stops the command at once.
    scales = parse_scales(fv.reward_scales) if fv.reward_scales else None
    jobs = [(out, cfg)] if scales is None else [
        (reward_scale_dir(out, v), dataclasses.replace(cfg, reward_scale=v)) for v in scales]
    plans = [(job_out, job_cfg, plan(job_out, algos, job_cfg, fv.overwrite))
             for job_out, job_cfg in jobs]
    for job_out, job_cfg, steps in plans:
      os.makedirs(job_out, exist_ok=True)
      log(f"compare | {fv.env} | {', '.join(algos)} | {job_cfg.num_seeds} seed(s) | "
          f"{job_cfg.total_steps:,} env steps | reward scale {job_cfg.reward_scale:g} | "
          f"{time.strftime('%Y-%m-%d %H:%M:%S')}")
      for algo, run_dir, action, reason in steps:
        log(f"== {algo}: {action}" + (f" ({reason})" if reason else "") + f" -> {run_dir}")
        run_algo(job_cfg, algo, run_dir, action, log, fv.checkpoint_every)
      write_report(job_out, {algo: run_dir for algo, run_dir, _, _ in steps}, job_cfg.env,
                   fv.fraction, log)
    if scales is not None:
      write_reward_scale_report(out, scales, algos, cfg.env, fv.fraction, log)
  except ValueError as e:  # CompareError, invalid settings, config mismatches
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  except NonFiniteError as e:  # a loss became NaN or infinite
    print(f"error: {e}", file=sys.stderr, flush=True)
    sys.exit(1)
  except KeyboardInterrupt:
    print("interrupted: run the same command again to continue (finished algorithms are "
          "skipped, qsm_jax runs resume from their last checkpoint)", file=sys.stderr,
          flush=True)
    sys.exit(130)


def run():
  """The qsm-compare console command (experiments/compare.py runs it too)."""
  from qsm_jax.cli.common import run_command  # pylint: disable=import-outside-toplevel
  names = _define_flags()
  run_command(lambda argv: main(argv, names), __name__, "qsm_jax.cli.config_flags")


if __name__ == "__main__":
  run()
