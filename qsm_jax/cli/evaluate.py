"""Evaluate a trained policy (QSM, SAC or TD3): episodes on device, return and length stats.

  python experiments/evaluate.py --run_dir=runs/inverted_pendulum-20261128-101500-s0
  python experiments/evaluate.py --run_dir=runs/ant-... --episodes=64 --seed=1 --agent=0

Loads the latest checkpoint (or --step) with its saved config, runs --episodes episodes
per agent with the noise-free policy, as the run's own evaluations (QSM: the sampler's
output; SAC: tanh of the Gaussian's mean; TD3: the actor; --explore acts as in training), prints mean / std / min / max of the return and
the episode length, and writes them as JSON into the run folder (or --out).
"""
import json
import os

from absl import flags

from qsm_jax.cli.common import define_policy_flags, fail, load_for_rollouts, run_command


FLAGS = flags.FLAGS
define_policy_flags(flags)
flags.DEFINE_integer("episodes", 16, "Evaluation episodes per agent.")
flags.DEFINE_integer("seed", 0, "Seed of the episodes' initial states and sampler noise.")
flags.DEFINE_integer("agent", None, "Which of the run's agents (seeds x sweep values); "
                     "default: all.")
flags.DEFINE_string("out", None, "JSON output (default: <run_dir>/eval_step<N>_seed<S>.json).")


def main(argv):
  del argv
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=import-outside-toplevel
  from qsm_jax.evaluation import episode_stats, make_policy_rollout  # pylint: disable=import-outside-toplevel
  from qsm_jax.policy import policy_temperature  # pylint: disable=import-outside-toplevel
  if FLAGS.episodes < 1:
    fail(f"--episodes must be a positive integer, got {FLAGS.episodes}")
  run, indices, agents, (env, env_name, backend, episode_length) = load_for_rollouts(
      FLAGS, FLAGS.agent)
  cfg = run.config

  temperature = None
  acting = "exploring" if FLAGS.explore else "no exploration"
  if cfg.algo == "qsm":
    temperature = float(policy_temperature(agents[0], FLAGS.explore, FLAGS.temperature))
    acting = f"sampler temperature {temperature:g}, " + acting
    if agents[0].config.eval_best_of > 1 and not FLAGS.explore:
      acting = f"best of {agents[0].config.eval_best_of} draws by Q, " + acting
  print(f"qsm_jax evaluate | {cfg.algo.upper()} | {env_name} ({backend}) | checkpoint at env "
        f"step {run.env_steps:,} | {FLAGS.episodes} episodes x {len(agents)} agent(s) | "
        f"{acting}", flush=True)
  rollout = make_policy_rollout(env, FLAGS.episodes, episode_length, cfg.action_repeat,
                                FLAGS.explore, FLAGS.temperature)
  key = jax.random.PRNGKey(FLAGS.seed)  # the same episodes for every agent
  print(f"{'agent':>5} {'return mean':>12} {'std':>9} {'min':>9} {'max':>9} {'length':>8}  "
        "trained with")
  results = []
  for index, agent in zip(indices, agents):
    episodes = jax.device_get(rollout(agent, key))
    stats = {"agent": index, "trained_with": cfg.agent_label(index),
             "seed_index": cfg.seed_index(index),
             **episode_stats(episodes["returns"], episodes["lengths"])}
    if cfg.sweep_values:
      stats[cfg.sweep_name] = float(getattr(cfg.agent_hparams(index), cfg.sweep_name))
    results.append(stats)
    print(f"{index:>5} {stats['return_mean']:>12.2f} {stats['return_std']:>9.2f} "
          f"{stats['return_min']:>9.2f} {stats['return_max']:>9.2f} "
          f"{stats['length_mean']:>8.1f}  {stats['trained_with']}", flush=True)
  overall = episode_stats([r for s in results for r in s["returns"]],
                          [l for s in results for l in s["lengths"]])
  if len(results) > 1:
    print(f"{'all':>5} {overall['return_mean']:>12.2f} {overall['return_std']:>9.2f} "
          f"{overall['return_min']:>9.2f} {overall['return_max']:>9.2f} "
          f"{overall['length_mean']:>8.1f}")
  report = {"run_dir": run.run_dir, "checkpoint": run.checkpoint_dir,
            "env_steps": run.env_steps, "env": env_name, "backend": backend,
            "episode_length": episode_length, "episodes": FLAGS.episodes, "seed": FLAGS.seed,
            "algo": cfg.algo, "explore": FLAGS.explore, "temperature": temperature,
            "best_of": (agents[0].config.eval_best_of if cfg.algo == "qsm" and not FLAGS.explore
                        else None),
            **{k: v for k, v in overall.items() if k not in ("returns", "lengths")},
            "agents": results}
  out = FLAGS.out or os.path.join(
      run.run_dir, f"eval_step{run.env_steps}_seed{FLAGS.seed}"
      + (f"_{env_name}" if env_name != cfg.env else "")
      + (f"_temperature{FLAGS.temperature:g}" if FLAGS.temperature is not None else "")
      + (f"_best{FLAGS.best_of}" if FLAGS.best_of is not None else "") + ".json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {out}")


def run():
  """The qsm-evaluate console command (experiments/evaluate.py runs it too)."""
  run_command(main, __name__, "qsm_jax.cli.common")


if __name__ == "__main__":
  run()
