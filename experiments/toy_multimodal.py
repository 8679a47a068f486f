"""The paper's multi-modality toy: a one-step bandit with equally good action modes.

  python experiments/toy_multimodal.py                     # 2 modes, seeds 0,1,2,3
  python experiments/toy_multimodal.py --modes=4 --updates=3000   # all 4 modes need ~3000

Reward r(a) = -min_i ||a - m_i||^2 (obs constant 0, mask 0, so Q(a) = r(a)); modes at
(0.5, 0.5), (-0.5, -0.5) (and (0.5, -0.5), (-0.5, 0.5) with --modes=4). QSM (M_q = 1,
matched to Q's scale) and TD3 train on the same stream of uniform random actions in
[-1, 1]^2 with the same critic sizes and number of updates (tests/test_learning.py's
setup; TD3 takes an actor step every second update). With mask 0 the critic target is r
alone and both critics start from the same init key, so QSM's and TD3's critics are the
same: only the policies differ. The untrained QSM policy is the control: with T=5 the vp
sampler alone already pushes samples toward the boundary and corners (shared/QSM_SPEC.md).
Writes <out>/multimodal[_4modes].png (rows: seeds; columns: untrained QSM, trained QSM,
TD3) and .json (share of samples within --radius of each mode, mean reward).
"""
import functools
import json
import os
import sys
import time

from absl import app, flags


import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

import qsm_jax as q  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_list("seeds", ["0", "1", "2", "3"], "Seeds (network init and data stream).")
flags.DEFINE_integer("updates", 1500, "Updates per algorithm (one fresh batch each).")
flags.DEFINE_integer("batch_size", 256, "Transitions per update.")
flags.DEFINE_integer("modes", 2, "Number of equally good modes: 2 or 4.")
flags.DEFINE_integer("samples", 4000, "Policy samples per panel.")
flags.DEFINE_float("radius", 0.3, "A sample counts for a mode within this distance.")
flags.DEFINE_float("M_q", 1.0, "QSM's M_q (Q is of order 1 here).")
flags.DEFINE_string("out", "experiments/results/toys", "Output folder.")

# tests/test_learning.py's SMALL networks; TD3 uses the same actor/critic widths.
CONFIG = q.QSMConfig(actor_hidden=(64, 64), time_hidden=(32, 32), fourier_size=16,
                     critic_hidden=(64, 64))
HPARAMS = q.QSMHyperparams(actor_lr=1e-3, critic_lr=1e-3, actor_lr_decay_steps=0.0)
MODES = {2: np.array([[0.5, 0.5], [-0.5, -0.5]]),
         4: np.array([[0.5, 0.5], [-0.5, -0.5], [0.5, -0.5], [-0.5, 0.5]])}


def reward(modes, a):
  return -jnp.min(jnp.sum((a[..., None, :] - jnp.asarray(modes, jnp.float32)) ** 2, -1), axis=-1)


def make_batch(modes, key, size):
  """Uniform random actions for the constant obs 0; mask 0: the episode ends."""
  act = jax.random.uniform(key, (size, 2), minval=-1, maxval=1)
  obs = jnp.zeros((size, 1))
  return q.Batch(obs, act, reward(modes, act), obs, jnp.zeros(size))


@functools.lru_cache(maxsize=None)
def trainer(update, modes, num_updates, batch_size):
  """Jitted: num_updates updates on fresh batches in one lax.scan (compiled once per algorithm).

  The batch keys depend on the training key only, so every algorithm sees the same data.
  """
  modes = jnp.asarray(modes, jnp.float32)

  @jax.jit
  def run(state, key):
    def body(s, k):
      batch_key, update_key = jax.random.split(k)
      return update(s, make_batch(modes, batch_key, batch_size), update_key)
    state, metrics = jax.lax.scan(body, state, jax.random.split(key, num_updates))
    return state, jax.tree.map(lambda v: v[-100:].mean(), metrics)
  return run


def train(update, state, modes, key):
  state, metrics = trainer(update, tuple(map(tuple, modes.tolist())), FLAGS.updates,
                           FLAGS.batch_size)(state, key)
  return state, {k: float(v) for k, v in metrics.items()}


def shares(actions, modes, radius):
  near = np.linalg.norm(actions[:, None] - modes[None], axis=-1) < radius
  return [round(float(s), 4) for s in near.mean(0)]


def run_seed(seed, modes, td3):
  """Samples (untrained QSM, trained QSM, TD3 deterministic, TD3 exploring) and their shares."""
  init_key, data_key, sample_key = jax.random.split(jax.random.PRNGKey(seed), 3)
  hp = HPARAMS.replace(M_q=FLAGS.M_q)
  obs = jnp.zeros((FLAGS.samples, 1))
  out, samples = {"seed": seed}, {}

  qsm = q.init_state(init_key, 1, 2, config=CONFIG, hparams=hp)
  samples["qsm_untrained"] = np.asarray(q.sample_actions(qsm, obs, sample_key))
  qsm, out["qsm_metrics"] = train(q.qsm_update, qsm, modes, data_key)
  samples["qsm_trained"] = np.asarray(q.sample_actions(qsm, obs, sample_key))

  state = td3.init(init_key, 1, 2, CONFIG, hp)
  state, out["td3_metrics"] = train(td3.update, state, modes, data_key)
  samples["td3"] = np.asarray(td3.act(state, obs, sample_key, explore=False))
  samples["td3_explore"] = np.asarray(td3.act(state, obs, sample_key, explore=True))
  out["td3_action"] = [round(float(x), 4) for x in samples["td3"][0]]
  out["td3_action_spread"] = float(np.abs(samples["td3"] - samples["td3"][0]).max())
  for name, a in samples.items():
    out[f"shares_{name}"] = shares(a, modes, FLAGS.radius)
    out[f"mean_reward_{name}"] = round(float(reward(modes, a).mean()), 4)
  return out, samples


def plot(path, modes, results, all_samples):
  from qsm_jax.plots import pyplot, save_figure  # pylint: disable=import-outside-toplevel
  plt = pyplot()
  if plt is None:
    print("no plot: matplotlib is not installed (pip install -e '.[plot]')")
    return
  rows = len(results)
  fig, axes = plt.subplots(rows, 3, figsize=(13, 4.3 * rows), squeeze=False)
  g = np.linspace(-1, 1, 201)
  gx, gy = np.meshgrid(g, g)
  r = np.asarray(reward(jnp.asarray(modes), jnp.stack([gx, gy], -1)))
  fmt = lambda s: "[" + ", ".join(f"{x:.2f}" for x in s) + "]"
  for row, (res, smp) in enumerate(zip(results, all_samples)):
    panels = [("untrained QSM", "qsm_untrained"), ("trained QSM", "qsm_trained"),
              ("TD3 (star: deterministic actor,\ndots: its exploration noise)", "td3_explore")]
    for ax, (label, name) in zip(axes[row], panels):
      ax.contourf(gx, gy, r, levels=20, cmap="Greys_r", alpha=0.6)
      a = smp[name]
      ax.scatter(a[:, 0], a[:, 1], s=3, alpha=0.25, color="tab:blue" if "qsm" in name
                 else "tab:orange")
      for m in modes:
        ax.add_patch(plt.Circle(m, FLAGS.radius, fill=False, color="red", lw=1))
      ax.scatter(modes[:, 0], modes[:, 1], marker="x", color="red", s=60, zorder=3)
      share_name = "td3" if name == "td3_explore" else name
      title = f"seed {res['seed']}: {label}\nshare within {FLAGS.radius} of each mode: " \
              f"{fmt(res['shares_' + share_name])}"
      if name == "td3_explore":
        ax.scatter(*smp["td3"][0], marker="*", s=300, color="black", zorder=4)
        title = title.replace("each mode:", "each mode\n(deterministic actor):")
      ax.set_title(title, fontsize=9)
      ax.set_xlim(-1.05, 1.05)
      ax.set_ylim(-1.05, 1.05)
      ax.set_aspect("equal")
  fig.suptitle(f"One-step bandit, r(a) = -min_i ||a - m_i||^2, {len(modes)} modes (red x); "
               f"{FLAGS.updates} updates each", fontsize=11)
  fig.tight_layout(rect=(0, 0, 1, 0.985))
  save_figure(fig, path, dpi=72)


def main(_):
  from qsm_jax.algorithms import get_algorithm  # pylint: disable=import-outside-toplevel
  if FLAGS.modes not in MODES:
    raise app.UsageError(f"--modes must be 2 or 4, got {FLAGS.modes}")
  modes = MODES[FLAGS.modes]
  td3 = get_algorithm("td3")
  os.makedirs(FLAGS.out, exist_ok=True)
  start = time.time()
  results, all_samples = [], []
  for seed in map(int, FLAGS.seeds):
    t0 = time.time()
    res, smp = run_seed(seed, modes, td3)
    res["seconds"] = round(time.time() - t0, 1)
    results.append(res)
    all_samples.append(smp)
    print(f"seed {seed} ({res['seconds']} s): share within {FLAGS.radius} of modes "
          f"{modes.tolist()}, mean reward (best 0)", flush=True)
    for label, name in (("QSM untrained", "qsm_untrained"), ("QSM trained", "qsm_trained"),
                        ("TD3 actor", "td3"), ("TD3 + expl. noise", "td3_explore")):
      print(f"  {label:18s} {res['shares_' + name]}  {res['mean_reward_' + name]:.3f}")
    print(f"  TD3 action {res['td3_action']}; critic loss QSM "
          f"{res['qsm_metrics']['critic_loss']:.5f}, TD3 {res['td3_metrics']['critic_loss']:.5f}",
          flush=True)
  stem = "multimodal" if FLAGS.modes == 2 else f"multimodal_{FLAGS.modes}modes"
  summary = {
      "modes": modes.tolist(), "radius": FLAGS.radius, "updates": FLAGS.updates,
      "batch_size": FLAGS.batch_size, "samples": FLAGS.samples, "M_q": FLAGS.M_q,
      "config": {"actor_hidden": CONFIG.actor_hidden, "critic_hidden": CONFIG.critic_hidden,
                 "T": CONFIG.T}, "seeds": results, "seconds": round(time.time() - start, 1),
      "command": " ".join(["python"] + sys.argv),
  }
  with open(os.path.join(FLAGS.out, stem + ".json"), "w") as f:
    json.dump(summary, f, indent=1)
  plot(os.path.join(FLAGS.out, stem + ".png"), modes, results, all_samples)
  print(f"wrote {FLAGS.out}/{stem}.png and .json ({summary['seconds']} s)")


if __name__ == "__main__":
  app.run(main)
