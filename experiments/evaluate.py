"""Evaluate a trained QSM policy: episodes on device, return and length statistics.

  python experiments/evaluate.py --run_dir=runs/inverted_pendulum-20261128-101500-s0
  python experiments/evaluate.py --run_dir=runs/ant-... --episodes=64 --seed=1 --agent=0

Loads the latest checkpoint (or --step) with its saved config, runs --episodes episodes
per agent with the noise-free policy (the sampler's output, as the run's own evaluations;
--explore adds the exploration noise), prints mean / std / min / max of the return and
the episode length, and writes them as JSON into the run folder (or --out).
"""
import json
import os
import sys

from absl import app, flags

from cli import fail  # experiments/cli.py

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), ".."))

FLAGS = flags.FLAGS
flags.DEFINE_string("run_dir", None, "Run folder, or one checkpoints/<step> folder of it.")
flags.DEFINE_integer("step", None, "Env step of the checkpoint (default: the latest).")
flags.DEFINE_integer("episodes", 16, "Evaluation episodes per agent.")
flags.DEFINE_integer("seed", 0, "Seed of the episodes' initial states and sampler noise.")
flags.DEFINE_integer("agent", None, "Which of the run's agents (seeds x sweep values); "
                     "default: all.")
flags.DEFINE_string("env", None, "Evaluate on another Brax env with the same obs/action "
                    "sizes (default: the run's env).")
flags.DEFINE_string("backend", None, "Brax backend (default: the run's).")
flags.DEFINE_integer("episode_length", None, "Episode time limit (default: the run's).")
flags.DEFINE_bool("explore", False, "Add the run's exploration noise to the actions.")
flags.DEFINE_float("temperature", None, "Sampler noise scale (default: the run's; 0: "
                   "deterministic sampler).")
flags.DEFINE_string("out", None, "JSON output (default: <run_dir>/eval_step<N>_seed<S>.json).")
flags.mark_flag_as_required("run_dir")


def main(argv):
  del argv
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=import-outside-toplevel
  from qsm_jax.evaluation import episode_stats, make_eval_env, make_policy_rollout  # pylint: disable=import-outside-toplevel
  from qsm_jax.loading import load_run  # pylint: disable=import-outside-toplevel
  try:
    if FLAGS.episodes < 1:
      raise ValueError(f"--episodes must be a positive integer, got {FLAGS.episodes}")
    if FLAGS.temperature is not None and FLAGS.temperature < 0:
      raise ValueError(f"--temperature must be >= 0, got {FLAGS.temperature}")
    run = load_run(FLAGS.run_dir, FLAGS.step)
    cfg = run.config
    indices = range(cfg.num_agents) if FLAGS.agent is None else [FLAGS.agent]
    agents = [run.agent(i) for i in indices]
    env, env_name, backend, episode_length = make_eval_env(
        cfg, agents[0].obs_dim, agents[0].act_dim, FLAGS.env, FLAGS.backend,
        FLAGS.episode_length)
  except ValueError as e:
    fail(e)

  temperature = (float(agents[0].hparams.temperature) if FLAGS.temperature is None
                 else FLAGS.temperature)
  print(f"qsm_jax evaluate | {env_name} ({backend}) | checkpoint at env step {run.env_steps:,} "
        f"| {FLAGS.episodes} episodes x {len(agents)} agent(s) | sampler temperature "
        f"{temperature:g}, {'with' if FLAGS.explore else 'no'} exploration noise", flush=True)
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
            "explore": FLAGS.explore, "temperature": temperature,
            **{k: v for k, v in overall.items() if k not in ("returns", "lengths")},
            "agents": results}
  out = FLAGS.out or os.path.join(
      run.run_dir, f"eval_step{run.env_steps}_seed{FLAGS.seed}"
      + (f"_{env_name}" if env_name != cfg.env else "") + ".json")
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  with open(out, "w") as f:
    json.dump(report, f, indent=2)
  print(f"wrote {out}")


if __name__ == "__main__":
  app.run(main)
