"""Updates/s of one QSM update: qsm_jax (jitted, and lax.scan of K updates) vs PyTorch (eager,
torch.compile), side by side in one process, with achieved FLOP/s against a measured matmul peak.

  python benchmarks/bench_update.py            # spec (ant, 512-wide) and small (256-wide) sizes,
                                               # batch 256 / 1024 / 4096
  python benchmarks/bench_update.py --quick    # about a minute: small size, batch 256, no compile
  python benchmarks/bench_update.py --json out.json

Runs unchanged on a GPU machine (jax's default backend, torch on cuda when available).
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import jax.numpy as jnp
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position
import torch_qsm as tq  # pylint: disable=wrong-import-position

import qsm_jax as q  # pylint: disable=wrong-import-position
from qsm_jax.presets import preset  # pylint: disable=wrong-import-position

OBS_DIM, ACT_DIM = 27, 8  # Brax ant
SIZES = {
    "spec": q.QSMConfig(**preset("ant")["qsm"]),                       # 512-wide (the spec)
    "small": q.QSMConfig(actor_hidden=(256, 256), critic_hidden=(256, 256)),
}


# ------------------------------------------------------------------------------ FLOPs

def _dense(in_dim, widths):
  dims = [in_dim, *widths]
  return list(zip(dims[:-1], dims[1:]))


def update_flops(cfg: q.QSMConfig, obs_dim: int, act_dim: int, batch: int) -> dict:
  """Matmul FLOPs of one QSM update (2 per multiply-add) by phase, counted from layer sizes.

  The noise model's per-row layers run on every row; its time path (Fourier features,
  time MLP and the embedding's rows of the first layer) runs on the T diffusion steps
  once per call (``NoiseModel(num_steps=T)``, mirrored in torch_qsm). Elementwise work
  (activations, Adam, the sampler's arithmetic) is left out: it is a few percent and not
  what a matmul peak measures.
  """
  fwd = lambda rows, layers: sum(2 * rows * i * o for i, o in layers)
  hidden = cfg.actor_hidden
  noise_rows = _dense(act_dim + obs_dim, (*hidden, act_dim))
  noise_steps = ([(1, cfg.fourier_size // 2)] + _dense(cfg.fourier_size, cfg.time_hidden)
                 + [(cfg.time_hidden[-1], hidden[0])])
  noise = lambda passes: passes * fwd(batch, noise_rows) + passes * fwd(cfg.T, noise_steps)
  critic = _dense(obs_dim + act_dim, (*cfg.critic_hidden, 1))
  e = cfg.num_critics
  return {
      "sampler": cfg.T * noise(1),                              # T noise-model passes at s'
      "target": e * fwd(batch, critic),                         # target critics at (s', a')
      "critic_step": e * (2 * fwd(batch, critic) + fwd(batch, critic[1:])),  # fwd, weight
                                                                # grads, input grads
      "grad_q": e * 2 * fwd(batch, critic),                     # fwd, input grads down to a
      "actor_step": noise(3) - fwd(batch, noise_rows[:1]),      # fwd, weight grads, input
                                                                # grads (none into the input)
  }


def xla_flops(compiled) -> float:
  cost = compiled.cost_analysis()
  cost = cost[0] if isinstance(cost, (list, tuple)) else cost
  return float(cost.get("flops", float("nan")))


# ----------------------------------------------------------------------- contenders

def random_batch(key, batch_size):
  k = jax.random.split(key, 5)
  return q.Batch(obs=jax.random.normal(k[0], (batch_size, OBS_DIM)),
                 action=jax.random.uniform(k[1], (batch_size, ACT_DIM), minval=-1, maxval=1),
                 reward=jax.random.normal(k[2], (batch_size,)),
                 next_obs=jax.random.normal(k[3], (batch_size, OBS_DIM)),
                 mask=(jax.random.uniform(k[4], (batch_size,)) > 0.01).astype(jnp.float32))


def scan_updates(state, batch, keys):
  """K updates in one program (the shape of the training loop): no per-update dispatch."""
  def body(s, k):
    s, metrics = q.qsm_update(s, batch, k)
    return s, metrics["critic_loss"]
  return jax.lax.scan(body, state, keys)


class Rate:
  """A contender: warm it up once (timed), then each call measures updates/s."""

  def __init__(self, run, updates_per_call: int, target_s: float):
    self.run = run                      # run(calls) -> None, blocks until done
    self.per_call = updates_per_call
    self.first_call_s = common.timed(lambda: run(1))
    est = common.timed(lambda: run(1))  # a second call: compiled / warm
    self.calls = max(1, int(round(target_s / max(est, 1e-6))))

  def __call__(self) -> float:
    return self.calls * self.per_call / common.timed(lambda: self.run(self.calls))


def jax_contenders(cfg, batch_size, target_s, scan_len):
  state = q.init_state(jax.random.PRNGKey(0), OBS_DIM, ACT_DIM, config=cfg)
  batch = random_batch(jax.random.PRNGKey(1), batch_size)
  key = [jax.random.PRNGKey(2)]
  holder = {"jit": state, "scan": jax.tree.map(jnp.copy, state)}

  t0 = time.perf_counter()
  compiled = q.qsm_update.lower(state, batch, key[0]).compile()
  compile_s = time.perf_counter() - t0
  flops_xla = xla_flops(compiled)

  def run_jit(calls):
    s = holder["jit"]
    for _ in range(calls):
      key[0], k = jax.random.split(key[0])
      s, _ = q.qsm_update(s, batch, k)  # the library's jitted entry point, as users call it
    holder["jit"] = jax.block_until_ready(s)

  scan_fn = jax.jit(scan_updates, donate_argnums=0)
  keys = jax.random.split(jax.random.PRNGKey(3), scan_len)
  t0 = time.perf_counter()
  scan_compiled = scan_fn.lower(holder["scan"], batch, keys).compile()
  scan_compile_s = time.perf_counter() - t0

  def run_scan(calls):
    s = holder["scan"]
    for _ in range(calls):
      s, _ = scan_compiled(s, batch, keys)
    holder["scan"] = jax.block_until_ready(s)

  jit_rate, scan_rate = Rate(run_jit, 1, target_s), Rate(run_scan, scan_len, target_s)
  jit_rate.compile_s, scan_rate.compile_s = compile_s, scan_compile_s
  return {"jax_jit": jit_rate, f"jax_scan{scan_len}": scan_rate}, batch, flops_xla


def torch_contenders(cfg, batch, target_s, with_compile):
  device = common.torch_device()
  tcfg = tq.TorchQSMConfig.from_qsm(OBS_DIM, ACT_DIM, cfg, q.QSMHyperparams())
  tbatch = tq.Batch(*(torch.tensor(np.asarray(getattr(batch, f)), device=device)
                      for f in ("obs", "action", "reward", "next_obs", "mask")))
  out = {}
  default_threads = torch.get_num_threads()
  variants = [("torch_eager", False, default_threads)]
  if device.type == "cpu" and default_threads > 1:
    # On a busy shared CPU, OpenMP's barrier per op stalls whenever one of its threads is
    # descheduled; one thread sidesteps that. Measured too, so PyTorch gets its best shot.
    variants.append(("torch_eager_1thread", False, 1))
  if with_compile:
    variants.append(("torch_compile", True, default_threads))
  for name, compile_, threads in variants:
    agent = tq.TorchQSM(tcfg, device=device, compile=compile_)

    def run(calls, agent=agent, threads=threads):
      torch.set_num_threads(threads)
      for _ in range(calls):
        agent.update(tbatch)
      common.torch_sync()
      torch.set_num_threads(default_threads)

    try:
      out[name] = Rate(run, 1, target_s)
      out[name].compile_s = out[name].first_call_s
    except Exception as e:  # pylint: disable=broad-except
      print(f"  {name} failed: {type(e).__name__}: {e}", flush=True)
  return out


# ------------------------------------------------------------------------ matmul peak

def matmul_peak(n: int, reps: int, target_s: float) -> dict:
  """fp32 GFLOP/s of an n x n matmul, jax and torch, interleaved; the peak is the faster."""
  a = jax.random.normal(jax.random.PRNGKey(0), (n, n), jnp.float32)
  jmm = jax.jit(jnp.matmul)
  ta = torch.randn(n, n, device=common.torch_device())
  flops = 2.0 * n**3

  def run_jax(calls):
    for _ in range(calls):
      out = jmm(a, a)
    out.block_until_ready()

  def run_torch(calls):
    for _ in range(calls):
      torch.mm(ta, ta)
    common.torch_sync()

  rates = common.interleaved({"jax": Rate(run_jax, 1, target_s),
                              "torch": Rate(run_torch, 1, target_s)}, reps)
  med = {k: common.median(v) * flops / 1e9 for k, v in rates.items()}
  return {"n": n, "jax_gflops": med["jax"], "torch_gflops": med["torch"],
          "peak_gflops": max(med.values())}


# ------------------------------------------------------------------------------- main

def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true", help="about a minute: small size, batch 256")
  p.add_argument("--sizes", default=None, help="comma list of: " + ",".join(SIZES))
  p.add_argument("--batch_sizes", default=None, help="comma list, e.g. 256,1024,4096")
  p.add_argument("--reps", type=int, default=None, help="interleaved repetitions")
  p.add_argument("--scan_len", type=int, default=None, help="updates per lax.scan call")
  p.add_argument("--target_s", type=float, default=None, help="seconds per measurement")
  p.add_argument("--compile", dest="compile", action="store_true", default=None,
                 help="include torch.compile (default: on, off with --quick)")
  p.add_argument("--no_compile", dest="compile", action="store_false")
  p.add_argument("--torch_threads", type=int, default=None, help="torch.set_num_threads")
  p.add_argument("--json", default=None, help="write the results here")
  args = p.parse_args(argv)
  quick = args.quick
  sizes = (args.sizes or ("small" if quick else "spec,small")).split(",")
  batch_sizes = [int(b) for b in (args.batch_sizes or ("256" if quick else "256,1024,4096")).split(",")]
  reps = args.reps or (2 if quick else 5)
  scan_len = args.scan_len or (4 if quick else 10)
  target_s = args.target_s or (0.3 if quick else 1.5)
  with_compile = (not quick) if args.compile is None else args.compile
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)

  info = common.machine_info()
  common.print_machine(info)
  peak = matmul_peak(1024 if quick else 2048, reps, target_s)
  print(f"fp32 matmul peak ({peak['n']}^3): jax {peak['jax_gflops']:.1f} GFLOP/s, torch "
        f"{peak['torch_gflops']:.1f} GFLOP/s -> peak {peak['peak_gflops']:.1f} GFLOP/s", flush=True)

  rows, results = [], []
  for size in sizes:
    cfg = SIZES[size]
    for batch_size in batch_sizes:
      parts = update_flops(cfg, OBS_DIM, ACT_DIM, batch_size)
      flops = sum(parts.values())
      # XLA's cost analysis counts a while loop's body once: the sampler's scan is 1 of T.
      flops_one_sampler_step = flops - parts["sampler"] * (cfg.T - 1) // cfg.T
      print(f"\n{size} (actor {cfg.actor_hidden}, critic {cfg.critic_hidden}), batch "
            f"{batch_size}: {flops / 1e9:.2f} GFLOP/update", flush=True)
      contenders, batch, flops_xla = jax_contenders(cfg, batch_size, target_s, scan_len)
      print(f"  cross-check, XLA cost analysis: {flops_xla / 1e9:.2f} GFLOP vs "
            f"{flops_one_sampler_step / 1e9:.2f} GFLOP counted with the sampler loop's body "
            f"once, as XLA counts loops ({flops_xla / flops_one_sampler_step:.3f}x; the rest "
            f"is elementwise work)", flush=True)
      contenders.update(torch_contenders(cfg, batch, target_s, with_compile))
      rates = common.interleaved(contenders, reps, log=lambda s: print(s, flush=True))
      eager = common.median(rates["torch_eager"]) if "torch_eager" in rates else float("nan")
      best_torch = max([common.median(r) for n, r in rates.items() if n.startswith("torch")]
                       or [float("nan")])
      for name, rs in rates.items():
        med = common.median(rs)
        gflops = med * flops / 1e9
        row = {"size": size, "batch": batch_size, "impl": name, "updates_per_s": med,
               "ms_per_update": 1e3 / med, "gflops": gflops,
               "pct_peak": 100 * gflops / peak["peak_gflops"], "vs_torch_eager": med / eager,
               "vs_best_torch": med / best_torch,
               "first_call_s": contenders[name].compile_s, "rates": rs,
               "flops": flops, "flops_xla": flops_xla}
        results.append(row)
        rows.append([size, batch_size, name, med, 1e3 / med, gflops, row["pct_peak"],
                     med / eager, med / best_torch, contenders[name].compile_s])

  header = ["size", "batch", "impl", "updates/s", "ms/update", "GFLOP/s", "% peak",
            "x torch eager", "x best torch", "compile/first call s"]
  print("\n## QSM update throughput (medians of %d interleaved repetitions)\n" % reps)
  print(common.markdown_table(header, rows))
  info["load_avg_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  print(f"\nload average (1 min) at start {info['load_avg_1m_at_start']}, at end "
        f"{info['load_avg_1m_at_end']}")
  if args.json:
    common.write_json(args.json, {"machine": info, "peak": peak, "rows": results,
                                  "args": vars(args)})


if __name__ == "__main__":
  main()
