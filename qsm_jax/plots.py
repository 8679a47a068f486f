"""Plots of a run: its learning curve (eval return per agent and per group)."""
from __future__ import annotations

from typing import Optional

import numpy as np


def plot_learning_curve(rows: list, path: str, title: str,
                        groups: Optional[list] = None) -> bool:
  """Eval return (each agent, and the mean of each group) and training return vs env steps.

  ``groups``: (label, agent indices) pairs, e.g. one per sweep value; default: one group.
  """
  try:
    import matplotlib  # pylint: disable=import-outside-toplevel
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  except ImportError:
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
  fig.savefig(path, dpi=100)
  plt.close(fig)
  return True
