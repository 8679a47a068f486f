"""TD3's delayed actor step in the training loop: paired updates vs one lax.cond per update.

Under the loop's vmap over seeds a ``lax.cond`` on the update counter becomes a select, so
``td3_update`` computes the actor step and both Polyak updates on every update.
``td3_update_pair`` (what the loop runs for an even number of updates per vectorised step)
does the actor's work once per pair. This times the same training chunk both ways, side
by side in one process (interleaved repetitions), on inverted_pendulum with the CPU
preset's sizes and with 256-wide networks, 5 seeds vmapped.

  python benchmarks/bench_td3_delay.py            # about 3 minutes on 2 CPU cores
  python benchmarks/bench_td3_delay.py --json out.json
"""
from __future__ import annotations

import argparse
import dataclasses
import os
import sys

import jax

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import common  # pylint: disable=wrong-import-position

from qsm_jax import algorithms  # pylint: disable=wrong-import-position
from qsm_jax.config import QSMConfig, TrainConfig  # pylint: disable=wrong-import-position
from qsm_jax.training import make_trainer  # pylint: disable=wrong-import-position


def compiled_chunk(cfg: TrainConfig, paired: bool):
  """The vmapped, compiled train_chunk and a state for it (paired or cond-ed TD3)."""
  td3 = algorithms.ALGORITHMS["td3"]
  algorithms.ALGORITHMS["td3"] = td3 if paired else td3._replace(update_pair=None)
  try:
    trainer = make_trainer(cfg)
  finally:
    algorithms.ALGORITHMS["td3"] = td3
  keys = jax.random.split(jax.random.PRNGKey(0), cfg.num_seeds)
  ts = jax.jit(jax.vmap(trainer.warmup))(jax.jit(jax.vmap(trainer.init))(keys))
  chunk = jax.jit(jax.vmap(trainer.train_chunk)).lower(ts).compile()
  return chunk, jax.block_until_ready(ts)


def main():
  parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
  parser.add_argument("--reps", type=int, default=5)
  parser.add_argument("--json", default=None)
  args = parser.parse_args()
  info = common.machine_info()
  common.print_machine(info)
  rows, results = [], {}
  for width in (64, 256):
    cfg = TrainConfig(algo="td3", env="inverted_pendulum", num_envs=4, num_eval_envs=4,
                      warmup_steps=1000, total_steps=10**9, batch_size=256,
                      buffer_size=100_000, log_every=1000, num_seeds=5,
                      qsm=dataclasses.replace(QSMConfig(), actor_hidden=(width, width),
                                              critic_hidden=(width, width)))
    updates = cfg.iterations_per_chunk * cfg.updates_per_iteration * cfg.num_seeds
    runs = {name: compiled_chunk(cfg, paired) for name, paired in
            (("paired", True), ("cond", False))}

    def measure(name):
      chunk, ts = runs[name]
      def rate():
        seconds = common.timed(lambda: jax.block_until_ready(chunk(ts)))
        return updates / seconds
      return rate
    rates = common.interleaved({n: measure(n) for n in runs}, args.reps,
                               log=lambda s: print(s, flush=True))
    paired, cond = common.median(rates["paired"]), common.median(rates["cond"])
    rows.append([f"{width}x{width}", cond, paired, paired / cond])
    results[width] = {"cond_updates_per_s": cond, "paired_updates_per_s": paired,
                      "rates": rates}
  print(common.markdown_table(["networks", "cond updates/s", "paired updates/s", "speed-up"],
                              rows))
  if args.json:
    common.write_json(args.json, {"machine": info, "results": results})


if __name__ == "__main__":
  main()
