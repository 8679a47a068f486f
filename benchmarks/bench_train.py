"""End-to-end training throughput: qsm_jax on Brax (the whole loop on device) vs PyTorch QSM
driving gymnasium's vectorised MuJoCo Ant-v5 (host loop), side by side in one process.

Both do the same work per vectorised step of N envs: act with the diffusion policy
(exploration noise), step N envs, insert N transitions, then utd * N QSM updates of
batch 256 on the same networks. Warm-up (random actions) and compilation are timed
apart. The physics differ (Brax ant on the spring backend vs MuJoCo Ant-v5, both
obs 27 / act 8): env cost is part of what is compared.

  python benchmarks/bench_train.py             # spec and small networks, num_envs 1, 4, 16
  python benchmarks/bench_train.py --quick     # about a minute: small networks, num_envs 4
  python benchmarks/bench_train.py --json out.json
"""
from __future__ import annotations

import argparse
import os
import sys
import time

import jax
import numpy as np
import torch

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position
import torch_qsm as tq  # pylint: disable=wrong-import-position
from bench_update import SIZES  # pylint: disable=wrong-import-position

from qsm_jax.config import QSMHyperparams  # pylint: disable=wrong-import-position
from qsm_jax.config import TrainConfig  # pylint: disable=wrong-import-position
from qsm_jax.training import make_trainer  # pylint: disable=wrong-import-position

BATCH = 256


# ------------------------------------------------------------------------- qsm_jax

class JaxLoop:
  """One seed's compiled training chunk (make_trainer's train_chunk, jitted, state donated)."""

  def __init__(self, qsm_cfg, num_envs: int, utd: float, updates_per_chunk: int,
               warmup: bool = True):
    iterations = max(1, updates_per_chunk // int(round(utd * num_envs)))
    self.cfg = TrainConfig(env="ant", num_envs=num_envs, utd=utd, batch_size=BATCH,
                           warmup_steps=max(num_envs, BATCH), total_steps=10**9,
                           buffer_size=max(100_000 // num_envs, 1) * num_envs,
                           log_every=iterations * num_envs, qsm=qsm_cfg)
    trainer = make_trainer(self.cfg)
    t0 = time.perf_counter()
    ts = jax.jit(trainer.init)(jax.random.PRNGKey(0))
    if warmup:  # --quick skips it (a compile of its own): the chunk fills the buffer as it goes
      ts = jax.jit(trainer.warmup)(ts)
    self.state = jax.block_until_ready(ts)
    self.warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    self.chunk = jax.jit(trainer.train_chunk, donate_argnums=0).lower(self.state).compile()
    self.compile_s = time.perf_counter() - t0
    self.env_steps = self.cfg.chunk_env_steps
    self.updates = self.cfg.iterations_per_chunk * self.cfg.updates_per_iteration
    self.run(1)  # first execution (allocations) outside the measurements

  def run(self, chunks: int) -> None:
    for _ in range(chunks):
      self.state, metrics = self.chunk(self.state)
    jax.block_until_ready(metrics)


# ------------------------------------------------------------------------- PyTorch

class TorchLoop:
  """The PyTorch user's loop: gymnasium vector env on the host, replay and updates in torch."""

  def __init__(self, qsm_cfg, num_envs: int, utd: float, updates_per_call: int,
               vector_mode: str, compile_: bool = False, warmup: bool = True,
               threads: int | None = None):
    import gymnasium as gym  # pylint: disable=import-outside-toplevel
    self.device = common.torch_device()
    t0 = time.perf_counter()
    self.env = gym.make_vec("Ant-v5", num_envs=num_envs, vectorization_mode=vector_mode,
                            include_cfrc_ext_in_observation=False,  # obs 27, as Brax's ant
                            vector_kwargs={"autoreset_mode": gym.vector.AutoresetMode.SAME_STEP})
    obs_dim = self.env.single_observation_space.shape[0]
    act_dim = self.env.single_action_space.shape[0]
    self.agent = tq.TorchQSM(
        tq.TorchQSMConfig.from_qsm(obs_dim, act_dim, qsm_cfg, QSMHyperparams()),
        device=self.device, compile=compile_)
    self.threads = threads or torch.get_num_threads()
    self.n, self.updates_per_step = num_envs, int(round(utd * num_envs))
    self.iterations = max(1, updates_per_call // self.updates_per_step)
    cap = max(100_000 // num_envs, 1) * num_envs
    zeros = lambda *shape: torch.zeros((cap, *shape), device=self.device)
    self.buf = {"obs": zeros(obs_dim), "action": zeros(act_dim), "reward": zeros(),
                "next_obs": zeros(obs_dim), "mask": zeros()}
    self.pos, self.size, self.cap = 0, 0, cap
    self.env_s = 0.0  # host time spent stepping the envs
    self.obs, _ = self.env.reset(seed=0)
    for _ in range(max(1, BATCH // num_envs) if warmup else 1):  # random-action warm-up
      self._step(self.env.action_space.sample())
    self.warmup_s = time.perf_counter() - t0
    t0 = time.perf_counter()
    self.run(1)  # first iterations (torch.compile compiles here)
    self.compile_s = time.perf_counter() - t0
    self.env_steps = self.iterations * num_envs
    self.updates = self.iterations * self.updates_per_step

  def _step(self, actions: np.ndarray) -> None:
    next_obs, reward, terminated, truncated, info = self.env.step(actions)
    true_next = next_obs.copy()
    done = terminated | truncated
    if done.any():  # SAME_STEP autoreset: next_obs holds the reset obs, the real s' is here
      true_next[done] = np.stack(info["final_obs"][done])
    rows = {"obs": self.obs, "action": actions, "reward": reward, "next_obs": true_next,
            "mask": 1.0 - terminated}  # 0 only at true terminals, not at truncations
    idx = slice(self.pos, self.pos + self.n)
    for k, v in rows.items():
      self.buf[k][idx] = torch.as_tensor(np.asarray(v, np.float32), device=self.device)
    self.pos = (self.pos + self.n) % self.cap
    self.size = min(self.size + self.n, self.cap)
    self.obs = next_obs

  def run(self, calls: int) -> None:
    default_threads = torch.get_num_threads()
    torch.set_num_threads(self.threads)
    for _ in range(calls * self.iterations):
      obs = torch.as_tensor(np.asarray(self.obs, np.float32), device=self.device)
      actions = self.agent.act(obs).cpu().numpy()
      t0 = time.perf_counter()
      self._step(actions)
      self.env_s += time.perf_counter() - t0
      idx = torch.randint(0, self.size, (self.updates_per_step, BATCH), device=self.device)
      batches = {k: v[idx] for k, v in self.buf.items()}  # all of this step's batches at once
      for i in range(self.updates_per_step):
        self.agent.update(tq.Batch(*(batches[k][i] for k in
                                     ("obs", "action", "reward", "next_obs", "mask"))))
    common.torch_sync()
    torch.set_num_threads(default_threads)


# ------------------------------------------------------------------------------ main

class EnvRate:
  """Measures env steps/s of a loop; calibrated to about target_s per measurement."""

  def __init__(self, loop, target_s: float):
    self.loop = loop
    est = common.timed(lambda: loop.run(1))
    self.calls = max(1, int(round(target_s / max(est, 1e-6))))

  def __call__(self) -> float:
    return self.calls * self.loop.env_steps / common.timed(lambda: self.loop.run(self.calls))


def main(argv=None):
  p = argparse.ArgumentParser(description=__doc__.split("\n")[0])
  p.add_argument("--quick", action="store_true", help="about a minute: small nets, 4 envs")
  p.add_argument("--sizes", default=None, help="comma list of: " + ",".join(SIZES))
  p.add_argument("--num_envs", default=None, help="comma list, e.g. 1,4,16")
  p.add_argument("--utd", type=float, default=1.0, help="updates per env step")
  p.add_argument("--reps", type=int, default=None)
  p.add_argument("--updates_per_call", type=int, default=None,
                 help="updates per measured call (a JAX chunk / torch block)")
  p.add_argument("--target_s", type=float, default=None)
  p.add_argument("--vector_mode", default="sync", choices=("sync", "async"),
                 help="gymnasium vectorisation (sync: one process, the sane choice on 2 cores)")
  p.add_argument("--compile", action="store_true", help="also torch.compile's loop")
  p.add_argument("--torch_threads", type=int, default=None)
  p.add_argument("--json", default=None)
  args = p.parse_args(argv)
  quick = args.quick
  sizes = (args.sizes or ("small" if quick else "spec,small")).split(",")
  env_counts = [int(n) for n in (args.num_envs or ("4" if quick else "1,4,16")).split(",")]
  reps = args.reps or (2 if quick else 3)
  updates_per_call = args.updates_per_call or (8 if quick else 32)
  target_s = args.target_s or (0.5 if quick else 2.0)
  if args.torch_threads:
    torch.set_num_threads(args.torch_threads)

  info = common.machine_info()
  common.print_machine(info)
  rows, results = [], []
  for size in sizes:
    qsm_cfg = SIZES[size]
    for n in env_counts:
      print(f"\n{size} (actor {qsm_cfg.actor_hidden}, critic {qsm_cfg.critic_hidden}), "
            f"{n} envs, utd {args.utd}, batch {BATCH}", flush=True)
      loops = {"qsm_jax+brax": JaxLoop(qsm_cfg, n, args.utd, updates_per_call, not quick)}
      loops["torch_eager+gymnasium"] = TorchLoop(qsm_cfg, n, args.utd, updates_per_call,
                                                 args.vector_mode, warmup=not quick)
      if common.torch_device().type == "cpu" and torch.get_num_threads() > 1:
        # See bench_update.py: OpenMP stalls on a busy shared CPU; one thread avoids it.
        loops["torch_eager_1thread+gymnasium"] = TorchLoop(
            qsm_cfg, n, args.utd, updates_per_call, args.vector_mode, warmup=not quick,
            threads=1)
      if args.compile:
        loops["torch_compile+gymnasium"] = TorchLoop(qsm_cfg, n, args.utd, updates_per_call,
                                                     args.vector_mode, True, not quick)
      for name, loop in loops.items():
        print(f"  {name}: warm-up {loop.warmup_s:.1f}s, compile/first call "
              f"{loop.compile_s:.1f}s", flush=True)
      contenders = {name: EnvRate(loop, target_s) for name, loop in loops.items()}
      for loop in loops.values():
        loop.env_s = 0.0
      rates = common.interleaved(contenders, reps, log=lambda s: print(s, flush=True))
      eager = common.median(rates["torch_eager+gymnasium"])
      for name, rs in rates.items():
        med = common.median(rs)
        loop = loops[name]
        ups = med * loop.updates / loop.env_steps
        env_share = None
        if isinstance(loop, TorchLoop):
          total = sum(contenders[name].calls * loop.env_steps / r for r in rs)
          env_share = 100 * loop.env_s / total
        results.append({"size": size, "num_envs": n, "impl": name, "env_steps_per_s": med,
                        "updates_per_s": ups, "vs_torch_eager": med / eager,
                        "compile_s": loop.compile_s, "env_time_pct": env_share, "rates": rs})
        rows.append([size, n, name, med, ups, med / eager, loop.compile_s,
                     "-" if env_share is None else f"{env_share:.0f}%"])

  header = ["size", "num_envs", "impl", "env steps/s", "updates/s", "x torch eager",
            "compile/first call s", "host env time"]
  print(f"\n## End-to-end training throughput (utd {args.utd}, batch {BATCH}; medians of "
        f"{reps} interleaved repetitions)\n")
  print(common.markdown_table(header, rows))
  info["load_avg_1m_at_end"] = os.getloadavg()[0] if hasattr(os, "getloadavg") else None
  print(f"\nload average (1 min) at start {info['load_avg_1m_at_start']}, at end "
        f"{info['load_avg_1m_at_end']}")
  if args.json:
    common.write_json(args.json, {"machine": info, "rows": results, "args": vars(args)})


if __name__ == "__main__":
  main()
