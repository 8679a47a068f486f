"""The report of a comparison (qsm_jax/cli/compare.py): what its run folders hold, as
numbers (summary.json), a table (summary.md) and plots (curves.png; reward_scale.* for a
sweep over --reward_scales). It only reads run folders: planning and training are in
compare.py, the drawing in qsm_jax/plots.py.

Columns (evals at env step > 0: Brax also evaluates the untrained policy at step 0, which
is plotted but not counted): final eval return (mean +- std over seeds at the last eval;
std is numpy's, ddof=0), best eval return (mean over seeds of each seed's best eval), the
highest point of the mean curve, env steps per seed, wall-clock time (end to end,
compilation and evals included, all seeds; a resumed run adds up its sessions), the
training time without compilation where it can be told apart, and the env steps /
wall-clock time at which the mean curve first reaches ``fraction`` (0.9) of the best
mean-curve point of all algorithms in the comparison.
"""
from __future__ import annotations

import json
import math
import os
from typing import Callable, Optional

import numpy as np

from qsm_jax.plots import plot_curves, plot_reward_scale


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


# ---------------------------------------------------------------- summary

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
  """The run folder as summary.json records it: relative to the working directory when it
  lies inside it (a report committed with a repository then names no machine's paths)."""
  path = os.path.abspath(run_dirs[algo])
  relative = os.path.relpath(path)
  return path if relative.startswith("..") else relative


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


def write_report(out: str, run_dirs: dict, env: str, fraction: float = 0.9,
                 log: Callable[[str], None] = print) -> dict:
  """curves.png, summary.md and summary.json in ``out``; returns the summary."""
  summary = summarise(run_dirs, fraction)
  seeds = sorted({s["num_seeds"] for s in summary["algos"].values()})
  seeds_text = "/".join(map(str, seeds))
  summary["env"] = env
  title = f"{env}: eval return, {seeds_text} seed(s) per algorithm"
  png = os.path.join(out, "curves.png")
  curves = {algo: load_curve(run_dir)[:2] for algo, run_dir in run_dirs.items()}
  if plot_curves(curves, png, title):
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


def existing_run_dirs(out: str, algos: Optional[list[str]] = None,
                      known: tuple = ()) -> dict:
  """{algo: folder} of ``out``'s run folders with a metrics.jsonl (in ``algos`` order, or
  the ``known`` algorithms first, then any other folder alphabetically)."""
  if not os.path.isdir(out):
    return {}
  names = algos or (
      [a for a in known if os.path.isdir(os.path.join(out, a))]
      + sorted(n for n in os.listdir(out) if n not in known))
  return {n: os.path.join(out, n) for n in names
          if os.path.exists(os.path.join(out, n, "metrics.jsonl"))}


# ---------------------------------------------------------------- reward scale

def reward_scale_dir(out: str, scale: float) -> str:
  """The comparison folder of one --reward_scales value."""
  return os.path.join(out, f"reward_scale_{scale:g}")


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
  plot_reward_scale(summary, os.path.join(out, "reward_scale.png"), env)
  log("\n" + table)
  return summary
