"""Returns of two policies that learn nothing, as the floor a learning curve must clear.

  python experiments/reference_policies.py --envs=inverted_pendulum,reacher,hopper

zero: the action 0 at every step (what a policy that never moves scores; on some envs,
e.g. hopper's healthy reward, standing still pays well). uniform: actions uniform in
[-1, 1]^act_dim (the warm-up's random policy). Episodes are evaluated like the training
runs' evaluations (no auto-reset, --episode_length steps at most); results are printed
and written to <out>/<env>/reference.json.
"""
import json
import os

from absl import app, flags

from qsm_jax.cli.common import fail


FLAGS = flags.FLAGS
flags.DEFINE_list("envs", ["inverted_pendulum", "reacher", "hopper"], "Brax env names.")
flags.DEFINE_integer("episodes", 16, "Episodes per policy.")
flags.DEFINE_integer("episode_length", 1000, "Episode time limit (the presets' 1000).")
flags.DEFINE_integer("seed", 0, "Random seed.")
flags.DEFINE_string("out", os.path.join(os.path.dirname(os.path.abspath(__file__)), "results"),
                    "Parent folder of the <env>/reference.json files.")


def main(argv):
  del argv
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=import-outside-toplevel
  import jax.numpy as jnp  # pylint: disable=import-outside-toplevel
  from qsm_jax.envs import check_env, make_env  # pylint: disable=import-outside-toplevel
  from qsm_jax.evaluation import episode_stats, run_episodes  # pylint: disable=import-outside-toplevel
  if FLAGS.episodes < 1 or FLAGS.episode_length < 1:
    fail("--episodes and --episode_length must be positive integers")
  for name in FLAGS.envs:
    try:
      backend = check_env(name, None)
    except ValueError as e:
      fail(e)
    env = make_env(name, backend, FLAGS.episode_length, 1, auto_reset=False)
    act_dim = int(env.action_size)
    policies = {
        "zero": lambda obs, key: jnp.zeros((obs.shape[0], act_dim)),
        "uniform": lambda obs, key: jax.random.uniform(key, (obs.shape[0], act_dim),
                                                       minval=-1.0, maxval=1.0),
    }
    report = {"env": name, "backend": backend, "episodes": FLAGS.episodes,
              "episode_length": FLAGS.episode_length, "seed": FLAGS.seed}
    for label, act in policies.items():
      keys = jax.random.split(jax.random.PRNGKey(FLAGS.seed))
      episodes = jax.jit(lambda k1, k2, act=act: run_episodes(
          env, act, k1, k2, FLAGS.episodes, FLAGS.episode_length, 1))(*keys)
      stats = episode_stats(episodes["returns"], episodes["lengths"])
      report[label] = {k: v for k, v in stats.items() if k not in ("returns", "lengths")}
      print(f"{name:>18} ({backend}) {label:>8}: return {stats['return_mean']:9.1f} "
            f"+- {stats['return_std']:7.1f}, episode length {stats['length_mean']:7.1f}",
            flush=True)
    path = os.path.join(FLAGS.out, name, "reference.json")
    os.makedirs(os.path.dirname(path), exist_ok=True)
    with open(path, "w") as f:
      json.dump(report, f, indent=2)


if __name__ == "__main__":
  app.run(main)
