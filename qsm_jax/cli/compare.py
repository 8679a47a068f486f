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
  <out>/summary.md     the table below (also printed), and summary.json with every number
Columns (evals at env step > 0: Brax also evaluates the untrained policy at step 0, which
is plotted but not counted): final eval return (mean +- std over seeds at the last eval;
std is numpy's, ddof=0), best eval return (mean over seeds of each seed's best eval), the
highest point of the mean curve, env steps per seed, wall-clock time (end to end,
compilation and evals included, all seeds; a resumed run adds up its sessions), the
training time without compilation where it can be told apart, and the env steps /
wall-clock time at which the mean curve first reaches --fraction (0.9) of the best
mean-curve point of all algorithms in the comparison.
With --reward_scales=0.1,1,10,100 the whole comparison runs once per reward scale, in
<out>/reward_scale_<s>/, and <out>/reward_scale.png / .md / .json put each algorithm's
final eval return (env units) against the scale.
"""
from __future__ import annotations

import dataclasses
import json
import math
import os
import shutil
import sys
import time
import warnings
from typing import Callable, Optional


import numpy as np  # pylint: disable=wrong-import-position

ALL_ALGOS = ("qsm", "qsm_paper", "sac", "td3", "brax_sac")
BRAX = "brax_sac"
COLORS = {"qsm": "C0", "qsm_paper": "C4", "sac": "C1", "td3": "C2", "brax_sac": "C3"}
LINESTYLES = {"brax_sac": "--", "qsm_paper": "-."}
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

def read_rows(run_dir: str) -> list[dict]:
  """Every row of ``run_dir``/metrics.jsonl ([] if there is none)."""
  path = os.path.join(run_dir, "metrics.jsonl")
  if not os.path.exists(path):
    return []
  with open(path) as f:
    return [json.loads(line) for line in f if line.strip()]


def read_config(run_dir: str) -> Optional[dict]:
  path = os.path.join(run_dir, "config.json")
  if not os.path.exists(path):
    return None
  with open(path) as f:
    return json.load(f)


def _requested_config(cfg, algo: str) -> dict:
  if algo == BRAX:
    from qsm_jax.cli.brax_sac import run_config  # pylint: disable=import-outside-toplevel
    return run_config(cfg, [cfg.seed + i for i in range(cfg.num_seeds)])
  return algo_config(cfg, algo).to_dict()


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
    diffs = config_diffs(saved, _requested_config(cfg, algo), algo)
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


# ---------------------------------------------------------------- summary and plot

def total_wall_s(rows: list[dict]) -> list[Optional[float]]:
  """Each row's wall-clock time since the run began, over resumed sessions. The runner
  now continues the clock on resume; in folders written before that, a resumed run's
  wall_s restarts (drops), and the earlier sessions' times are added here."""
  out, offset, prev = [], 0.0, None
  for r in rows:
    wall = r.get("wall_s")
    if wall is None:
      out.append(None)
      continue
    if prev is not None and wall < prev:
      offset += prev
    prev = wall
    out.append(offset + wall)
  return out


def load_curve(run_dir: str) -> tuple[np.ndarray, np.ndarray, list[dict]]:
  """(env steps (E,), eval returns (E, seeds) with NaN for missing values, all rows)."""
  rows = read_rows(run_dir)
  evals = [r for r in rows if r.get("eval_return")]
  if not evals:
    return np.zeros(0), np.zeros((0, 0)), rows
  width = max(len(r["eval_return"]) for r in evals)
  returns = np.full((len(evals), width), np.nan)
  for i, r in enumerate(evals):
    returns[i, :len(r["eval_return"])] = [np.nan if v is None else v for v in r["eval_return"]]
  return np.array([r["env_steps"] for r in evals], dtype=float), returns, rows


def _f(x) -> Optional[float]:
  return None if x is None or not math.isfinite(float(x)) else float(x)


def _nan_stat(fn, values, **kwargs):
  values = np.asarray(values, float)
  if values.size == 0 or np.all(np.isnan(values)):
    return np.nan
  return fn(values, **kwargs)


def summarise(run_dirs: dict, fraction: float = 0.9) -> dict:
  """Numbers of each algorithm's run folder ({algo: run_dir}), see the module docstring.

  Returns {"fraction", "threshold", "algos": {algo: {...}}}; NaN/absent values are None.
  """
  out = {"fraction": fraction, "threshold": None, "algos": {}}
  curves = {}
  for algo, run_dir in run_dirs.items():
    steps, returns, rows = load_curve(run_dir)
    curves[algo] = (steps, returns, rows)
  peaks = []
  for algo, (steps, returns, rows) in curves.items():
    s = {"run_dir": run_dir_of(run_dirs, algo), "num_seeds": int(returns.shape[1])}
    # The untrained policy's eval at env step 0 (only Brax logs one) is plotted, not counted.
    trained = steps > 0
    steps, returns = steps[trained], returns[trained]
    curves[algo] = (steps, returns, rows)
    s["evals"] = int(len(steps))
    if len(steps):
      final = returns[-1]
      mean_curve = np.array([_nan_stat(np.mean, r[~np.isnan(r)]) for r in returns])
      best = np.array([_nan_stat(np.max, returns[:, i][~np.isnan(returns[:, i])])
                       for i in range(returns.shape[1])])
      peak = int(np.nanargmax(mean_curve)) if not np.all(np.isnan(mean_curve)) else None
      s.update({
          "env_steps": int(steps[-1]),
          "final_returns": [_f(v) for v in final],
          "final_return_mean": _f(_nan_stat(np.mean, final[~np.isnan(final)])),
          "final_return_std": _f(_nan_stat(np.std, final[~np.isnan(final)])),
          "best_returns": [_f(v) for v in best],
          "best_return_mean": _f(_nan_stat(np.mean, best[~np.isnan(best)])),
          "best_return_std": _f(_nan_stat(np.std, best[~np.isnan(best)])),
          "peak_mean_return": None if peak is None else _f(mean_curve[peak]),
          "peak_mean_env_steps": None if peak is None else int(steps[peak]),
      })
      if peak is not None:
        peaks.append(mean_curve[peak])
      s["_mean_curve"] = mean_curve
    walls = total_wall_s(rows)
    s["wall_s"] = _f(walls[-1]) if walls else None
    chunk = [r["chunk_s"] for r in rows if r.get("chunk_s") is not None]
    s["train_s"] = float(sum(chunk)) if chunk else None
    out["algos"][algo] = s
  best_peak = max(peaks) if peaks else None
  if best_peak is not None and best_peak > 0:
    out["threshold"] = float(fraction * best_peak)
  for algo, (steps, _, rows) in curves.items():
    s = out["algos"][algo]
    mean_curve = s.pop("_mean_curve", None)
    s["steps_to_threshold"] = s["wall_s_to_threshold"] = None
    if out["threshold"] is None or mean_curve is None:
      continue
    hit = np.nonzero(np.nan_to_num(mean_curve, nan=-np.inf) >= out["threshold"])[0]
    if len(hit):
      i = int(hit[0])
      s["steps_to_threshold"] = int(steps[i])
      walls = [w for r, w in zip(rows, total_wall_s(rows))
               if r.get("eval_return") and r["env_steps"] > 0]
      s["wall_s_to_threshold"] = _f(walls[i])
  return out


def run_dir_of(run_dirs: dict, algo: str) -> str:
  return os.path.abspath(run_dirs[algo])


def _fmt_s(seconds: Optional[float]) -> str:
  if seconds is None:
    return "-"
  if seconds < 9.95:
    return f"{seconds:.1f}s"
  seconds = int(round(seconds))
  h, rem = divmod(seconds, 3600)
  m, s = divmod(rem, 60)
  return f"{h}h{m:02d}m{s:02d}s" if h else (f"{m}m{s:02d}s" if m else f"{s}s")


def _fmt_ret(mean: Optional[float], std: Optional[float] = None) -> str:
  if mean is None:
    return "-"
  return f"{mean:.1f}" + (f" ± {std:.1f}" if std is not None else "")


def summary_table(summary: dict, title: str = "") -> str:
  """The summary as a Markdown table (with the definitions below it)."""
  frac = summary["fraction"]
  thr = summary["threshold"]
  lines = [f"# {title}", ""] if title else []
  lines += [
      f"| algo | seeds | env steps | final eval return | best eval return | peak of mean "
      f"| steps to {frac:.0%} | time to {frac:.0%} | wall-clock | training |",
      "|---|---|---|---|---|---|---|---|---|---|"]
  for algo, s in summary["algos"].items():
    steps = s.get("env_steps")
    lines.append(
        f"| {algo} | {s['num_seeds']} | {'-' if steps is None else f'{steps:,}'} "
        f"| {_fmt_ret(s.get('final_return_mean'), s.get('final_return_std'))} "
        f"| {_fmt_ret(s.get('best_return_mean'), s.get('best_return_std'))} "
        f"| {_fmt_ret(s.get('peak_mean_return'))}"
        + (f" @ {s['peak_mean_env_steps']:,}" if s.get("peak_mean_env_steps") is not None else "")
        + f" | {'-' if s['steps_to_threshold'] is None else format(s['steps_to_threshold'], ',')} "
        f"| {_fmt_s(s['wall_s_to_threshold'])} | {_fmt_s(s['wall_s'])} | {_fmt_s(s['train_s'])} |")
  lines += [
      "",
      "- final eval return: mean ± std over seeds at the last eval (std: ddof=0).",
      "- best eval return: each seed's best eval, mean ± std over seeds.",
      "- peak of mean: the highest point of the mean-over-seeds curve, and its env step.",
      "- these columns count evals after training began: the untrained policy's eval at env "
      "step 0 (only brax_sac logs one) is plotted but not counted.",
      f"- steps / time to {frac:.0%}: first eval where the mean curve reaches "
      + (f"{thr:.1f} ({frac:.0%} of the best peak of mean of all algorithms)"
         if thr is not None else "n/a (no positive peak)") + "; '-': never.",
      "- wall-clock: end to end for all seeds (compilation and evals included; a resumed "
      "run adds its sessions); brax_sac trains its seeds one after another, so its time is "
      "their sum, the others vmap them.",
      "- training: the training chunks alone (qsm_jax compiles ahead of time and leaves that "
      "out; Brax's first epoch includes its compilation and the replay prefill).",
  ]
  return "\n".join(lines) + "\n"


def plot_curves(run_dirs: dict, path: str, title: str) -> bool:
  """Eval return vs env steps: mean over seeds and min-max band, one colour per algo.
  False if matplotlib is missing or no folder has an eval."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    return False
  fig, ax = plt.subplots(figsize=(8, 5))
  drawn = False
  for i, (algo, run_dir) in enumerate(run_dirs.items()):
    steps, returns, _ = load_curve(run_dir)
    if not len(steps):
      continue
    drawn = True
    color = COLORS.get(algo, f"C{4 + i}")
    with warnings.catch_warnings():  # an eval where every seed is NaN: a gap, no warning
      warnings.simplefilter("ignore", RuntimeWarning)
      mean = np.nanmean(returns, axis=1)
      lo, hi = np.nanmin(returns, axis=1), np.nanmax(returns, axis=1)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    ax.plot(steps, mean, color=color, lw=2, ls=LINESTYLES.get(algo, "-"), marker=".",
            label=f"{algo} ({returns.shape[1]} seeds)")
  if not drawn:
    plt.close(fig)
    return False
  ax.set_xlabel("env steps (per seed)")
  ax.set_ylabel("eval return")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(title="mean; band: min-max over seeds")
  fig.tight_layout()
  fig.savefig(path, dpi=110)
  plt.close(fig)
  return True


def write_report(out: str, run_dirs: dict, env: str, fraction: float = 0.9,
                 log: Callable[[str], None] = print) -> dict:
  """curves.png, summary.md and summary.json in ``out``; returns the summary."""
  summary = summarise(run_dirs, fraction)
  seeds = sorted({s["num_seeds"] for s in summary["algos"].values()})
  seeds_text = "/".join(map(str, seeds))
  summary["env"] = env
  title = f"{env}: eval return, {seeds_text} seed(s) per algorithm"
  png = os.path.join(out, "curves.png")
  if plot_curves(run_dirs, png, title):
    log(f"wrote {png}")
  else:
    log("no curves.png (matplotlib missing, pip install -e '.[plot]', or no evals yet)")
  table = summary_table(summary, title)
  with open(os.path.join(out, "summary.md"), "w") as f:
    f.write(table)
  with open(os.path.join(out, "summary.json"), "w") as f:
    json.dump(summary, f, indent=2)
  log(f"wrote {os.path.join(out, 'summary.md')} and summary.json")
  log("\n" + table)
  return summary


def existing_run_dirs(out: str, algos: Optional[list[str]] = None) -> dict:
  """{algo: folder} of ``out``'s run folders with a metrics.jsonl (in ``algos`` order, or
  the known algorithms first, then any other folder alphabetically)."""
  if not os.path.isdir(out):
    return {}
  names = algos or (
      [a for a in ALL_ALGOS if os.path.isdir(os.path.join(out, a))]
      + sorted(n for n in os.listdir(out) if n not in ALL_ALGOS))
  return {n: os.path.join(out, n) for n in names
          if os.path.exists(os.path.join(out, n, "metrics.jsonl"))}


# ---------------------------------------------------------------- reward scale

def reward_scale_dir(out: str, scale: float) -> str:
  """The comparison folder of one --reward_scales value."""
  return os.path.join(out, f"reward_scale_{scale:g}")


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


def reward_scale_summary(out: str, scales: list[float], algos: list[str],
                         fraction: float = 0.9) -> dict:
  """{algo: {"scales", "final_means", "final_stds", "worst_over_best"}}: each algorithm's
  final eval return (in the env's units: evaluation never scales rewards) per reward scale.
  worst_over_best is the lowest mean over the highest (for positive returns); None where
  a scale has no finished run."""
  result = {}
  for algo in algos:
    means, stds = [], []
    for scale in scales:
      run_dir = os.path.join(reward_scale_dir(out, scale), algo)
      s = summarise({algo: run_dir}, fraction)["algos"][algo] if os.path.isdir(run_dir) else {}
      means.append(s.get("final_return_mean"))
      stds.append(s.get("final_return_std"))
    known = [m for m in means if m is not None]
    ratio = (min(known) / max(known) if len(known) == len(means) and known and max(known) > 0
             else None)
    result[algo] = {"scales": scales, "final_means": means, "final_stds": stds,
                    "worst_over_best": ratio}
  return result


def write_reward_scale_report(out: str, scales: list[float], algos: list[str], env: str,
                              fraction: float = 0.9, log: Callable[[str], None] = print) -> dict:
  """reward_scale.md / .json / .png in ``out``: final return against --reward_scales."""
  summary = reward_scale_summary(out, scales, algos, fraction)
  head = " | ".join(f"x{v:g}" for v in scales)
  lines = [f"# {env}: final eval return against the reward scale", "",
           f"| algo | {head} | worst / best |", "|---|" + "---|" * (len(scales) + 1)]
  for algo, s in summary.items():
    cells = " | ".join(_fmt_ret(m, sd) for m, sd in zip(s["final_means"], s["final_stds"]))
    ratio = s["worst_over_best"]
    lines.append(f"| {algo} | {cells} | {'-' if ratio is None else f'{ratio:.2f}'} |")
  lines += ["", "- rewards are multiplied by the scale before they enter the replay buffer; "
            "returns are in the env's own units (evaluation does not scale them).",
            "- each cell: mean ± std over seeds of the final eval return "
            f"(the run folders are {os.path.basename(reward_scale_dir(out, scales[0]))}/<algo>, ...)."]
  table = "\n".join(lines) + "\n"
  with open(os.path.join(out, "reward_scale.md"), "w") as f:
    f.write(table)
  with open(os.path.join(out, "reward_scale.json"), "w") as f:
    json.dump({"env": env, "algos": summary}, f, indent=2)
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (algo, s) in enumerate(summary.items()):
      pts = [(x, m, sd or 0.0) for x, m, sd in zip(scales, s["final_means"], s["final_stds"])
             if m is not None]
      if pts:
        x, m, sd = map(np.array, zip(*pts))
        ax.errorbar(x, m, yerr=sd, color=COLORS.get(algo, f"C{5 + i}"), marker="o", capsize=3,
                    lw=2, ls=LINESTYLES.get(algo, "-"), label=algo)
    ax.set_xscale("log")
    ax.set_xlabel("--reward_scale")
    ax.set_ylabel("final eval return (env units)")
    ax.set_title(f"{env}: final eval return vs reward scale (mean ± std over seeds)")
    ax.grid(alpha=0.3)
    ax.legend()
    fig.tight_layout()
    fig.savefig(os.path.join(out, "reward_scale.png"), dpi=110)
    plt.close(fig)
  except ImportError:
    pass
  log("\n" + table)
  return summary


# ---------------------------------------------------------------- command line

def _define_flags():
  from absl import flags  # pylint: disable=import-outside-toplevel
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
  ints = ("episode_length", "action_repeat", "num_envs", "num_eval_envs", "total_steps",
          "warmup_steps", "batch_size", "buffer_size", "log_every", "eval_every", "seed",
          "num_seeds", "T", "num_critics")
  floats = ("utd", "reward_scale", "M_q", "gamma", "tau", "actor_lr", "actor_lr_decay_steps",
            "critic_lr", "target_noise", "exploration_noise", "temperature")
  flags.DEFINE_string("backend", None, "Brax backend (default: per env, qsm_jax/envs.py).")
  for name in ints:
    flags.DEFINE_integer(name, None, f"Overrides the preset's {name}.")
  for name in floats:
    flags.DEFINE_float(name, None, f"Overrides the preset's {name}.")
  for name in ("actor_hidden", "critic_hidden", "time_hidden"):
    flags.DEFINE_list(name, None, f"Overrides the preset's {name}, e.g. 64,64.")
  return ("backend",) + ints + floats + ("actor_hidden", "critic_hidden", "time_hidden")


def main(argv, override_names):
  from absl import flags, logging  # pylint: disable=import-outside-toplevel
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
      run_dirs = existing_run_dirs(out, algos)
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
    overrides = {}
    for name in override_names:
      if fv[name].present and fv[name].value is not None:
        value = fv[name].value
        if name.endswith("_hidden"):
          try:
            value = [int(w) for w in value]
          except ValueError as e:
            raise CompareError(f"--{name} must be comma-separated integers, got "
                               f"{','.join(value)}") from e
        overrides[name] = value
    from qsm_jax.cli.brax_sac import config_from_preset  # pylint: disable=import-outside-toplevel
    cfg = config_from_preset(fv.env, overrides)
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
  from absl import app  # pylint: disable=import-outside-toplevel
  names = _define_flags()
  app.run(lambda argv: main(argv, names))


if __name__ == "__main__":
  run()
