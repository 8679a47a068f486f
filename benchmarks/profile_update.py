"""Where one QSM update's time goes: a jax.profiler trace of lax.scan'd updates, by op kind.

  python benchmarks/profile_update.py [--size spec] [--batch 256] [--updates 5]
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import sys
import tempfile

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_update import OBS_DIM, ACT_DIM, SIZES, random_batch, scan_updates  # pylint: disable=wrong-import-position

import qsm_jax as q  # pylint: disable=wrong-import-position


def kind(op: str) -> str | None:
  """Groups XLA CPU thunk names; None for host/runtime events that are not ops."""
  if op.startswith(("dot", "ynn_fusion")):
    return "matmuls (dot)"
  if any(s in op for s in ("tanh", "log-plus-one", "exponential")):
    return "mish / softplus (tanh, exp, log1p fusions)"
  if "copy" in op or "transpose" in op:
    return "copies / transposes"
  if op.startswith(("$", "Thunk", "while", "Pjit", "Common", "Slinky", "Parse")):
    return None
  return "other elementwise and RNG"


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="spec", choices=list(SIZES))
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--updates", type=int, default=5)
  args = p.parse_args()
  state = q.init_state(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config=SIZES[args.size])
  batch = random_batch(jax.random.PRNGKey(1), args.batch)
  keys = jax.random.split(jax.random.PRNGKey(3), args.updates)
  fn = jax.jit(scan_updates)
  jax.block_until_ready(fn(state, batch, keys))
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      jax.block_until_ready(fn(state, batch, keys))
    with gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[0]) as f:
      events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
  by_kind, by_op = collections.Counter(), collections.Counter()
  for e in events:
    k = kind(e["name"])
    if k:
      by_kind[k] += e.get("dur", 0)
      by_op[e["name"]] += e.get("dur", 0)
  total = sum(by_kind.values())
  print(f"{args.size}, batch {args.batch}: op time per update by kind")
  for k, us in by_kind.most_common():
    print(f"  {us / args.updates / 1e3:7.2f} ms  {100 * us / total:5.1f}%  {k}")
  print("top ops:")
  for name, us in by_op.most_common(15):
    print(f"  {us / args.updates / 1e3:7.2f} ms  {name}")


if __name__ == "__main__":
  main()
