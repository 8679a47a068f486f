"""Where one QSM update's time goes: a jax.profiler trace of lax.scan'd updates, by op kind,
then the update's matmul shapes timed alone in XLA and in PyTorch (whose GEMM is faster).

  python benchmarks/profile_update.py [--size spec] [--batch 256] [--updates 5] [--no_gemm]
"""
from __future__ import annotations

import argparse
import collections
import glob
import gzip
import json
import os
import re
import sys
import tempfile
import time

import jax
import jax.numpy as jnp

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
from bench_update import OBS_DIM, ACT_DIM, SIZES, random_batch, scan_updates  # pylint: disable=wrong-import-position

import qsm_jax as q  # pylint: disable=wrong-import-position


RUNTIME_EVENTS = ("$", "Thunk", "while", "Pjit", "Common", "Slinky", "Parse")
RNG_OPS = ("random", "_normal", "_uniform", "randint", "threefry")


def op_names(hlo_text: str) -> dict:
  """HLO instruction name -> the JAX op_name in its metadata (which function made it)."""
  return dict(re.findall(r'%([\w.\-]+) = [^\n]*?op_name="([^"]*)"', hlo_text))


def kind(op: str, origin: str) -> str | None:
  """Groups an XLA CPU thunk by what it is and where it came from; None for runtime events."""
  if op.startswith(RUNTIME_EVENTS):
    return None
  if op.startswith(("dot", "ynn_fusion")):
    return "matmuls (dot)"
  if "copy" in op or "transpose" in op:
    return "copies / transposes"
  if any(s in origin for s in RNG_OPS):
    return "random numbers (threefry)"
  if "NoiseModel" in origin:
    return "noise model elementwise (mish, bias, step table)"
  if "Critic" in origin:
    return "critic elementwise (relu, bias)"
  return "other elementwise (Adam, Polyak, sampler, losses)"


def update_gemms(cfg: q.QSMConfig, batch: int) -> list:
  """(name, m, k, n, products of that size per update) of the update's big matmuls.

  Counted as in bench_update.update_flops: the noise model runs T sampler passes, then
  forward, weight grads and input grads (none into its input) in the actor step; the
  critics run the target pass, forward / weight grads / input grads in the critic step,
  and forward / input grads for grad_a Q. Weight and input grads are products of the same
  size, transposed. The critics' first layer is one product for the whole ensemble (its
  input is shared), their hidden layers one per critic.
  """
  e, h, c = cfg.num_critics, cfg.actor_hidden, cfg.critic_hidden
  return [
      ("noise model, first layer", batch, ACT_DIM + OBS_DIM, h[0], cfg.T + 2),
      ("noise model, hidden", batch, h[0], h[1], cfg.T + 3),
      ("noise model, output", batch, h[-1], ACT_DIM, cfg.T + 3),
      ("critics, first layer (ensemble)", batch, OBS_DIM + ACT_DIM, e * c[0], 5),
      ("critic, hidden", batch, c[0], c[1], 6 * e),
  ]


def time_gemm(m: int, k: int, n: int, layers: int = 16, reps: int = 5) -> tuple[float, float]:
  """fp32 GFLOP/s of (m, k) x (k, n) products, XLA vs torch: ``acc += a @ w[l]`` over
  ``layers`` different weights, in one compiled scan (no dispatch per product) and as
  in-place ``addmm_`` calls."""
  import torch  # pylint: disable=import-outside-toplevel
  a = jax.random.normal(jax.random.PRNGKey(0), (m, k))
  w = jax.random.normal(jax.random.PRNGKey(1), (layers, k, n))
  scan = jax.jit(lambda a, w: jax.lax.scan(lambda acc, wl: (acc + a @ wl, None),
                                           jnp.zeros((m, n)), w)[0]).lower(a, w).compile()
  ta, tw, acc = torch.randn(m, k), torch.randn(layers, k, n), torch.zeros(m, n)

  def run_torch():
    for l in range(layers):
      acc.addmm_(ta, tw[l])

  rates = []
  for fn in (lambda: scan(a, w).block_until_ready(), run_torch):
    fn()
    best = float("inf")
    for _ in range(reps):  # the best of several: the machine's quiet moments
      t0 = time.perf_counter()
      fn()
      best = min(best, time.perf_counter() - t0)
    rates.append(2.0 * m * k * n * layers / best / 1e9)
  return rates[0], rates[1]


def main():
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--size", default="spec", choices=list(SIZES))
  p.add_argument("--batch", type=int, default=256)
  p.add_argument("--updates", type=int, default=5)
  p.add_argument("--no_gemm", action="store_true", help="skip timing the matmul shapes")
  args = p.parse_args()
  state = q.init_state(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config=SIZES[args.size])
  batch = random_batch(jax.random.PRNGKey(1), args.batch)
  keys = jax.random.split(jax.random.PRNGKey(3), args.updates)
  fn = jax.jit(scan_updates).lower(state, batch, keys).compile()
  origins = op_names(fn.as_text())
  jax.block_until_ready(fn(state, batch, keys))
  t0 = time.perf_counter()
  jax.block_until_ready(fn(state, batch, keys))
  wall_ms = (time.perf_counter() - t0) / args.updates * 1e3
  with tempfile.TemporaryDirectory() as d:
    with jax.profiler.trace(d):
      jax.block_until_ready(fn(state, batch, keys))
    with gzip.open(glob.glob(f"{d}/**/*.trace.json.gz", recursive=True)[0]) as f:
      events = [e for e in json.load(f)["traceEvents"] if e.get("ph") == "X"]
  by_kind, by_op = collections.Counter(), collections.Counter()
  for e in events:
    k = kind(e["name"], origins.get(e["name"], ""))
    if k:
      by_kind[k] += e.get("dur", 0)
      by_op[e["name"]] += e.get("dur", 0)
  total = sum(by_kind.values())
  print(f"{args.size}, batch {args.batch}: {wall_ms:.2f} ms per update (wall, unprofiled); op "
        "time per update by kind (ops run concurrently on the thread pool, so the sum may "
        "exceed the wall time):")
  for k, us in by_kind.most_common():
    print(f"  {us / args.updates / 1e3:7.2f} ms  {100 * us / total:5.1f}%  {k}")
  print("top ops:")
  for name, us in by_op.most_common(15):
    print(f"  {us / args.updates / 1e3:7.2f} ms  {name}")
  if args.no_gemm or jax.default_backend() != "cpu":
    return
  print("the update's matmul shapes alone, fp32 GFLOP/s (16 products back to back):")
  for name, m, k, n, calls in update_gemms(SIZES[args.size], args.batch):
    xla, torch_ = time_gemm(m, k, n)
    print(f"  {name:32s} {m}x{k}x{n:<5d} x{calls:<3d} XLA {xla:6.1f}  torch {torch_:6.1f}  "
          f"({xla / torch_:.2f}x)")


if __name__ == "__main__":
  main()
