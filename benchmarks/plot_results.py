"""Plots the benchmarks' JSON output: updates/s vs batch size, env steps/s vs num_envs.

  python benchmarks/plot_results.py update.json train.json benchmarks/throughput_cpu_1201.png
"""
from __future__ import annotations

import json
import sys

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # pylint: disable=wrong-import-position

STYLE = {"spec": "-", "small": "--"}


def plot(update_json: str, train_json: str, out_png: str) -> None:
  with open(update_json) as f:
    upd = json.load(f)
  with open(train_json) as f:
    trn = json.load(f)
  fig, (ax1, ax2) = plt.subplots(1, 2, figsize=(12, 4.8))
  impls = sorted({r["impl"] for r in upd["rows"]})
  colors = {name: f"C{i}" for i, name in enumerate(impls)}
  for size in ("spec", "small"):
    for impl in impls:
      rows = sorted((r for r in upd["rows"] if r["size"] == size and r["impl"] == impl),
                    key=lambda r: r["batch"])
      if rows:
        ax1.plot([r["batch"] for r in rows], [r["updates_per_s"] for r in rows], STYLE[size],
                 marker="o", color=colors[impl], label=f"{impl} ({size})")
  ax1.set(xscale="log", yscale="log", xlabel="batch size", ylabel="QSM updates / s",
          title="one QSM update (ant dims): spec 512-wide solid, 256-wide dashed")
  batches = sorted({r["batch"] for r in upd["rows"]})
  ax1.set_xticks(batches, [str(b) for b in batches], minor=False)
  ax1.set_xticks([], minor=True)
  ax1.grid(alpha=0.3, which="both")
  ax1.legend(fontsize=7)

  impls = sorted({r["impl"] for r in trn["rows"]})
  for i, impl in enumerate(impls):
    for size in ("spec", "small"):
      rows = sorted((r for r in trn["rows"] if r["size"] == size and r["impl"] == impl),
                    key=lambda r: r["num_envs"])
      if rows:
        ax2.plot([r["num_envs"] for r in rows], [r["env_steps_per_s"] for r in rows],
                 STYLE[size], marker="o", color=f"C{i}", label=f"{impl} ({size})")
  ax2.set(xscale="log", yscale="log", xlabel="num_envs (utd 1: num_envs updates per step)",
          ylabel="env steps / s (= updates / s)", title="end-to-end training, ant")
  envs = sorted({r["num_envs"] for r in trn["rows"]})
  ax2.set_xticks(envs, [str(n) for n in envs], minor=False)
  ax2.set_xticks([], minor=True)
  ax2.grid(alpha=0.3, which="both")
  lo, hi = ax2.get_ylim()
  ax2.set_ylim(lo, hi * 3)  # headroom for the legend above the curves
  ax2.legend(fontsize=7, loc="upper center", ncol=2)
  m = upd["machine"]
  fig.suptitle(f"{m['cpu']}, {m['cpu_cores']} cores, GPU: {m['gpu'] or 'none'} | "
               f"jax {m['jax']}, torch {m['torch']}", fontsize=9)
  fig.tight_layout()
  fig.savefig(out_png, dpi=100)
  print(f"wrote {out_png}")


if __name__ == "__main__":
  plot(*sys.argv[1:4])
