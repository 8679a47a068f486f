"""Watch a trained policy (QSM, SAC or TD3): one rollout as Brax's HTML viewer and plots.

DM Control Suite tasks (dmc/...) have no HTML viewer: their frames come from
Playground's renderer (MuJoCo's, needs OpenGL), and the trajectory plot as for Brax.

  python experiments/render.py --run_dir=runs/inverted_pendulum-20261128-101500-s0
  python experiments/render.py --run_dir=runs/ant-... --out=ant.html --episode_length=300

Writes (next to --out, default <run_dir>/rollout_step<N>.html):
  <out>.html         Brax's own viewer (brax.io.html): open it in a browser (it loads
                     the viewer script from a CDN) and watch the agent move
  <out>_trajectory.png   joint positions, actions and reward over time (matplotlib)
  <out>_frames.png   a strip of rendered frames, when MuJoCo can open an OpenGL context
                     here (EGL / OSMesa; skipped with a note otherwise)
"""
import os

from absl import flags

from qsm_jax.cli.common import define_policy_flags, fail, load_for_rollouts, run_command

# Headless frame rendering: MuJoCo picks its OpenGL platform when it is first imported.
os.environ.setdefault("MUJOCO_GL", "egl")

FLAGS = flags.FLAGS
define_policy_flags(flags)
flags.DEFINE_integer("agent", 0, "Which of the run's agents (seeds x sweep values).")
flags.DEFINE_integer("seed", 0, "Seed of the initial state and sampler noise.")
flags.DEFINE_string("out", None, "HTML output (default: <run_dir>/rollout_step<N>.html).")
flags.DEFINE_integer("frames", 6, "Frames in the PNG strip (0: none).")
flags.DEFINE_integer("height", 480, "Height of the HTML viewer in pixels.")


def plot_trajectory(q, actions, rewards, path, title):
  """Joint positions, actions and rewards against time, one panel each."""
  import matplotlib  # pylint: disable=import-outside-toplevel
  matplotlib.use("Agg")
  import matplotlib.pyplot as plt  # pylint: disable=import-outside-toplevel
  fig, axes = plt.subplots(3, 1, figsize=(8, 7), sharex=True)
  axes[0].plot(q, lw=1)
  axes[0].set_ylabel("joint positions q")
  axes[1].plot(actions, lw=1)
  axes[1].set_ylabel("actions")
  axes[1].set_ylim(-1.05, 1.05)
  axes[2].plot(rewards, lw=1, color="C2")
  axes[2].set_ylabel("reward")
  axes[2].set_xlabel("env step")
  axes[0].set_title(title)
  for ax in axes:
    ax.grid(alpha=0.3)
  fig.tight_layout()
  fig.savefig(path, dpi=100)
  plt.close(fig)


def render_frames(env, states, count, path, dmc=False):
  """A strip of ``count`` frames rendered by MuJoCo (needs an OpenGL context): Brax's
  renderer for Brax envs, Playground's for DM Control Suite tasks."""
  import types  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from PIL import Image  # pylint: disable=import-outside-toplevel
  picks = [states[int(i)] for i in np.linspace(0, len(states) - 1, count)]
  if dmc:
    from mujoco_playground import render_array  # pylint: disable=import-outside-toplevel
    frames = render_array(env.unwrapped.mj_model,
                          [types.SimpleNamespace(data=d) for d in picks], height=240, width=320)
  else:
    from brax.io import image  # pylint: disable=import-outside-toplevel
    frames = image.render_array(env.sys, picks, height=240, width=320)
  Image.fromarray(np.concatenate(frames, axis=1)).save(path)


def main(argv):
  del argv
  from absl import logging  # pylint: disable=import-outside-toplevel
  logging.set_verbosity(logging.WARNING)
  import jax  # pylint: disable=import-outside-toplevel
  import numpy as np  # pylint: disable=import-outside-toplevel
  from brax.io import html  # pylint: disable=import-outside-toplevel
  from qsm_jax.envs import is_dmc  # pylint: disable=import-outside-toplevel
  from qsm_jax.evaluation import make_policy_rollout  # pylint: disable=import-outside-toplevel
  if FLAGS.frames < 0:
    fail(f"--frames must be >= 0, got {FLAGS.frames}")
  run, _, (agent,), (env, env_name, backend, episode_length) = load_for_rollouts(
      FLAGS, FLAGS.agent)
  cfg = run.config

  rollout = make_policy_rollout(env, 1, episode_length, cfg.action_repeat, FLAGS.explore,
                                FLAGS.temperature, record=True)
  result = jax.device_get(rollout(agent, jax.random.PRNGKey(FLAGS.seed)))
  traj = result["trajectory"]
  steps = int(traj["alive"][:, 0].sum())  # vectorised steps until the episode ended
  # Episode 0 only; the states before each step plus the one after the last.
  states = [jax.tree.map(lambda x, t=t: x[t, 0], traj["pipeline_state"])
            for t in range(steps + 1)]
  out = FLAGS.out or os.path.join(run.run_dir, f"rollout_step{run.env_steps}.html")
  stem = out[:-5] if out.endswith(".html") else out
  os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
  dmc = is_dmc(env_name)
  ret = float(result["returns"][0])
  print(f"{env_name} ({backend}) | agent {FLAGS.agent} at env step {run.env_steps:,} | "
        f"{steps} steps, return {ret:.2f}")
  if dmc:  # Brax's viewer draws Brax systems only
    print("no HTML viewer for DM Control Suite tasks (Brax's viewer needs a Brax system): "
          "see the frame strip and trajectory plot")
  else:
    with open(out, "w") as f:
      f.write(html.render(env.sys, states, height=FLAGS.height))
    print(f"wrote {out} (open it in a browser)")
  q = traj["pipeline_state"].qpos if dmc else traj["pipeline_state"].q
  try:
    plot_trajectory(np.asarray(q[:steps + 1, 0]),
                    traj["action"][:steps, 0], traj["reward"][:steps, 0],
                    stem + "_trajectory.png",
                    f"{cfg.algo.upper()} on {env_name}, agent {FLAGS.agent}, env step {run.env_steps:,}: "
                    f"return {ret:.1f}")
    print(f"wrote {stem}_trajectory.png")
  except ImportError:
    print("matplotlib is not installed: no trajectory plot (pip install -e '.[plot]')")
  if FLAGS.frames:
    try:
      render_frames(env, states, FLAGS.frames, stem + "_frames.png", dmc)
      print(f"wrote {stem}_frames.png")
    except Exception as e:  # pylint: disable=broad-except  # no OpenGL here: keep the rest
      first_line = (str(e).strip().splitlines() or [""])[0][:200]
      print(f"no frame strip: MuJoCo could not render here ({type(e).__name__}: {first_line})")


def run():
  """The qsm-render console command (experiments/render.py runs it too)."""
  run_command(main, __name__, "qsm_jax.cli.common")


if __name__ == "__main__":
  run()
