"""Every plot qsm_jax draws: a run's learning curve, a comparison's curves and its
reward-scale sweep; the toy experiments draw with ``pyplot`` / ``save_figure`` too.

matplotlib is optional (the ``plot`` extra): ``pyplot()`` returns None without it, and
each plot function then returns False instead of drawing.
"""
from __future__ import annotations

import warnings
from typing import Optional

import numpy as np

# One colour and line style per algorithm, the same in every comparison plot.
COLORS = {"qsm": "C0", "qsm_paper": "C4", "sac": "C1", "td3": "C2", "brax_sac": "C3"}
LINESTYLES = {"brax_sac": "--", "qsm_paper": "-."}


def pyplot():
  """matplotlib.pyplot on the file-only Agg backend, or None if matplotlib is missing."""
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
    return None
  return plt


def save_figure(fig, path: str, dpi: int = 100) -> None:
  """Writes ``fig`` to ``path`` and frees it."""
  fig.savefig(path, dpi=dpi)
  pyplot().close(fig)


def plot_learning_curve(rows: list, path: str, title: str,
                        groups: Optional[list] = None) -> bool:
  """A run's eval return (each agent, and the mean of each group) and training return vs
  env steps, from its metrics rows.

  ``groups``: (label, agent indices) pairs, e.g. one per sweep value; default: one group.
  """
  plt = pyplot()
  if plt is None:
    return False
  fig, ax = plt.subplots(figsize=(7, 4.5))
  evals = [r for r in rows if r.get("eval_return")]
  if evals:
    steps = [r["env_steps"] for r in evals]
    per_seed = np.array([[np.nan if v is None else v for v in r["eval_return"]] for r in evals])
    groups = groups or [("", list(range(per_seed.shape[1])))]
    for g, (label, agents) in enumerate(groups):
      color = f"C{g}" if len(groups) > 1 else "C0"
      for i in agents:
        ax.plot(steps, per_seed[:, i], color=color, alpha=0.3, lw=1)
      ax.plot(steps, np.nanmean(per_seed[:, agents], axis=1), color=color, lw=2,
              label=f"eval return {label} (mean)".replace("  ", " "))
  train = [r for r in rows if r.get("train_return_mean") is not None]
  if train:
    ax.plot([r["env_steps"] for r in train], [r["train_return_mean"] for r in train],
            color="gray", lw=1, label="training episode return (all agents)")
  ax.set_xlabel("env steps")
  ax.set_ylabel("return")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend()
  fig.tight_layout()
  save_figure(fig, path, dpi=100)
  return True


def plot_curves(curves: dict, path: str, title: str) -> bool:
  """Comparison curves: eval return vs env steps, the mean over seeds and its min-max
  band, one colour per algorithm. ``curves``: {algo: (env steps (E,), returns (E, seeds),
  NaN where missing)}. False if matplotlib is missing or no algorithm has an eval."""
  plt = pyplot()
  if plt is None or not any(len(steps) for steps, _ in curves.values()):
    return False
  fig, ax = plt.subplots(figsize=(8, 5))
  for i, (algo, (steps, returns)) in enumerate(curves.items()):
    if not len(steps):
      continue
    color = COLORS.get(algo, f"C{4 + i}")
    with warnings.catch_warnings():  # an eval where every seed is NaN: a gap, no warning
      warnings.simplefilter("ignore", RuntimeWarning)
      mean = np.nanmean(returns, axis=1)
      lo, hi = np.nanmin(returns, axis=1), np.nanmax(returns, axis=1)
    ax.fill_between(steps, lo, hi, color=color, alpha=0.18, lw=0)
    ax.plot(steps, mean, color=color, lw=2, ls=LINESTYLES.get(algo, "-"), marker=".",
            label=f"{algo} ({returns.shape[1]} seeds)")
  ax.set_xlabel("env steps (per seed)")
  ax.set_ylabel("eval return")
  ax.set_title(title)
  ax.grid(alpha=0.3)
  ax.legend(title="mean; band: min-max over seeds")
  fig.tight_layout()
  save_figure(fig, path, dpi=110)
  return True


def plot_reward_scale(summary: dict, path: str, env: str) -> bool:
  """Final eval return (mean +- std over seeds) against the reward scale, one line per
  algorithm. ``summary``: {algo: {"scales", "final_means", "final_stds"}} (None where a
  scale has no finished run)."""
  plt = pyplot()
  if plt is None:
    return False
  fig, ax = plt.subplots(figsize=(7, 4.5))
  for i, (algo, s) in enumerate(summary.items()):
    pts = [(x, m, sd or 0.0) for x, m, sd in zip(s["scales"], s["final_means"], s["final_stds"])
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
  save_figure(fig, path, dpi=110)
  return True
