"""The paper's score-alignment toy: on a known Q, eps_theta learns -M_q * grad_a Q.

  python experiments/toy_score_alignment.py                 # 2000 updates, seed 0
  python experiments/toy_score_alignment.py --updates=800 --seed=1

Q(s, a) = -||a - a*(s)||^2 with a*(s) = 0.5 s (s, a in [-1, 1]^2) is a frozen critic
(critic_lr = 0; tests/toy_modules.py's QuadraticCritic), so QSM's actor target is exactly
-M_q * grad_a Q(s, a~) = 2 M_q (a~ - a*(s)) at every noisy action a~ (it points away from
a*: the sampler subtracts eps). The noise model trains on uniform random (s, a) with
qsm_update in one jitted lax.scan. Reported before and after training, over random
(s, a~, t) drawn as in training: the median cosine between eps_theta and the target, the
relative error ||eps - target|| / ||target|| (over the whole draw, and the per-sample
median), per diffusion step t; and the mean distance of policy samples to a*(s).
Writes <out>/score_alignment.png (vector fields at one obs for t = 0 and t = T-1, before
and after; histograms of the cosine and the relative error) and score_alignment.json.
"""
import functools
import json
import os
import sys
import time

from absl import app, flags


import flax.linen as nn  # pylint: disable=wrong-import-position
import jax  # pylint: disable=wrong-import-position
import jax.numpy as jnp  # pylint: disable=wrong-import-position
import numpy as np  # pylint: disable=wrong-import-position

import qsm_jax as q  # pylint: disable=wrong-import-position

FLAGS = flags.FLAGS
flags.DEFINE_integer("seed", 0, "Seed (network init, data stream, evaluation draws).")
flags.DEFINE_integer("updates", 2000, "Actor updates (one fresh batch of 256 each).")
flags.DEFINE_float("M_q", 1.0, "M_q (Q is of order 1 here).")
flags.DEFINE_integer("eval_size", 8192, "Random (s, a~, t) draws for the statistics.")
flags.DEFINE_list("obs", ["0.8", "-0.6"], "The fixed obs of the vector-field panels.")
flags.DEFINE_string("out", "experiments/results/toys", "Output folder.")

CONFIG = q.QSMConfig(actor_hidden=(64, 64), time_hidden=(32, 32), fourier_size=16,
                     critic_hidden=(64, 64))  # tests/test_learning.py's SMALL
OBS_DIM = ACT_DIM = 2


class QuadraticCritic(nn.Module):
  """Q(s, a) = -||a - a*(s)||^2 with a*(s) = 0.5 * s; nothing to learn."""

  @nn.compact
  def __call__(self, obs, action):
    dummy = self.param("unused", nn.initializers.zeros, ())  # keeps the tree non-empty
    return -jnp.sum((action - optimum(obs)) ** 2, axis=-1) + 0.0 * dummy


def optimum(obs):
  return 0.5 * obs[:, :ACT_DIM]


def score_target(obs, x, m_q):
  """-M_q * grad_a Q(s, x) for the quadratic Q."""
  return -m_q * (-2.0 * (x - optimum(obs)))


def make_batch(key, size=256):
  k1, k2 = jax.random.split(key)
  obs = jax.random.uniform(k1, (size, OBS_DIM), minval=-1, maxval=1)
  act = jax.random.uniform(k2, (size, ACT_DIM), minval=-1, maxval=1)
  return q.Batch(obs, act, jnp.zeros(size), obs, jnp.zeros(size))


@functools.partial(jax.jit, static_argnums=2)
def train(state, key, num_updates):
  def body(s, k):
    batch_key, update_key = jax.random.split(k)
    return q.qsm_update(s, make_batch(batch_key), update_key)
  state, metrics = jax.lax.scan(body, state, jax.random.split(key, num_updates))
  return state, metrics["actor_loss"]


def eps_theta(state, obs, x, t):
  return state.noise_model.apply(state.actor_params, obs, x, t[:, None].astype(jnp.float32))


@jax.jit
def statistics(state, key):
  """Per-draw cosine and relative error over random (s, a~, t), and policy distance to a*."""
  k1, k2, k3, k4 = jax.random.split(key, 4)
  n = FLAGS.eval_size
  b = make_batch(k1, n)
  t = jax.random.randint(k2, (n,), 0, CONFIG.T)
  x = q.noise_actions(q.make_schedule(CONFIG.T, CONFIG.beta_schedule), b.action, t,
                      jax.random.normal(k3, b.action.shape))
  eps, target = eps_theta(state, b.obs, x, t), score_target(b.obs, x, state.hparams.M_q)
  cos = jnp.sum(eps * target, -1) / (jnp.linalg.norm(eps, axis=-1) *
                                     jnp.linalg.norm(target, axis=-1))
  rel = jnp.linalg.norm(eps - target, axis=-1) / jnp.linalg.norm(target, axis=-1)
  rel_all = jnp.linalg.norm(eps - target) / jnp.linalg.norm(target)
  actions = q.sample_actions(state, b.obs, k4)
  dist = jnp.mean(jnp.linalg.norm(actions - optimum(b.obs), axis=-1))
  return cos, rel, t, rel_all, dist


def summarize(cos, rel, t, rel_all, dist):
  cos, rel, t = map(np.asarray, (cos, rel, t))
  return {"median_cosine": float(np.median(cos)), "relative_error": float(rel_all),
          "median_relative_error": float(np.median(rel)),
          "median_cosine_per_t": [float(np.median(cos[t == i])) for i in range(CONFIG.T)],
          "median_relative_error_per_t": [float(np.median(rel[t == i]))
                                          for i in range(CONFIG.T)],
          "mean_distance_policy_to_optimum": float(dist)}


def plot(path, states, obs0, stats, m_q):
  from qsm_jax.plots import pyplot, save_figure  # pylint: disable=import-outside-toplevel
  plt = pyplot()
  if plt is None:
    print("no plot: matplotlib is not installed (pip install -e '.[plot]')")
    return
  g = np.linspace(-1.5, 1.5, 13)
  gx, gy = np.meshgrid(g, g)
  x = jnp.asarray(np.stack([gx.ravel(), gy.ravel()], -1), jnp.float32)
  obs = jnp.broadcast_to(jnp.asarray(obs0, jnp.float32), (x.shape[0], OBS_DIM))
  a_star = np.asarray(optimum(obs[:1]))[0]
  target = np.asarray(score_target(obs, x, m_q))
  fig, axes = plt.subplots(2, 3, figsize=(15, 10))
  for row, t in enumerate((0, CONFIG.T - 1)):
    for col, name in enumerate(("before", "after")):
      ax = axes[row, col]
      eps = np.asarray(eps_theta(states[name], obs, x, jnp.full((x.shape[0],), t)))
      cos = np.sum(eps * target, -1) / (np.linalg.norm(eps, axis=-1) *
                                        np.linalg.norm(target, axis=-1) + 1e-12)
      scale = 1.5 * np.abs(target).max() / (g[1] - g[0])
      ax.quiver(gx.ravel(), gy.ravel(), target[:, 0], target[:, 1], color="0.6", width=0.006,
                angles="xy", scale_units="xy", scale=scale, label="target -M_q grad_a Q")
      # An untrained eps_theta is much shorter than the target: enlarge it, and say so.
      zoom = max(1, int(np.abs(target).max() / np.abs(eps).max()))
      ax.quiver(gx.ravel(), gy.ravel(), eps[:, 0], eps[:, 1], color="tab:red", width=0.003,
                angles="xy", scale_units="xy", scale=scale / zoom,
                label="learned eps_theta" + (f" (x{zoom})" if zoom > 1 else ""))
      ax.scatter(*a_star, marker="*", s=250, color="black", zorder=3, label="a*(s)")
      ax.add_patch(plt.Rectangle((-1, -1), 2, 2, fill=False, ls="--", color="0.4"))
      ax.set_title(f"{name} training, t = {t}: median cosine on this grid "
                   f"{np.median(cos):.4f}", fontsize=10)
      ax.set_xlim(-1.7, 1.7)
      ax.set_ylim(-1.7, 1.7)
      ax.set_aspect("equal")
      ax.set_xlabel("noisy action a~_0")
      ax.set_ylabel("noisy action a~_1")
      ax.legend(loc="lower left", fontsize=8)
  bins = {"cosine": np.linspace(-1, 1, 81), "relative error": np.logspace(-4, 1.5, 56)}
  for row, (label, key) in enumerate((("cosine", 0), ("relative error", 1))):
    ax = axes[row, 2]
    for name, color in (("before", "0.5"), ("after", "tab:red")):
      s = stats[name]
      ax.hist(np.asarray(s[key]), bins=bins[label], color=color, alpha=0.6,
              label=f"{name}: median {np.median(np.asarray(s[key])):.4g}")
    if label == "relative error":
      ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel(f"{label} of eps_theta vs -M_q grad_a Q, per (s, a~, t)")
    ax.set_title(f"{label} over {FLAGS.eval_size} random (s, a~, t)", fontsize=10)
    ax.legend(fontsize=8)
  fig.suptitle(f"Score alignment on Q(s, a) = -||a - 0.5 s||^2 (frozen), M_q = {m_q:g}, "
               f"{FLAGS.updates} updates; vector fields at s = {list(obs0)}", fontsize=12)
  fig.tight_layout()
  save_figure(fig, path, dpi=80)


def main(_):
  start = time.time()
  init_key, train_key, eval_key = jax.random.split(jax.random.PRNGKey(FLAGS.seed), 3)
  hp = q.QSMHyperparams(M_q=FLAGS.M_q, critic_lr=0.0, actor_lr=1e-3, actor_lr_decay_steps=0.0)
  state = q.init_state(init_key, OBS_DIM, ACT_DIM, config=CONFIG, hparams=hp,
                       critic=QuadraticCritic())
  trained, actor_loss = train(state, train_key, FLAGS.updates)
  states = {"before": state, "after": trained}
  stats = {name: statistics(s, eval_key) for name, s in states.items()}
  result = {name: summarize(*s) for name, s in stats.items()}
  for name, r in result.items():
    print(f"{name:6s} training: median cosine {r['median_cosine']:.5f}, relative error "
          f"{r['relative_error']:.4f} (per-sample median {r['median_relative_error']:.4f}), "
          f"mean |a - a*| of policy samples {r['mean_distance_policy_to_optimum']:.3f}\n"
          f"        median cosine per t {np.round(r['median_cosine_per_t'], 5).tolist()}")
  os.makedirs(FLAGS.out, exist_ok=True)
  obs0 = [float(v) for v in FLAGS.obs]
  plot(os.path.join(FLAGS.out, "score_alignment.png"), states, obs0, stats, FLAGS.M_q)
  summary = {"seed": FLAGS.seed, "updates": FLAGS.updates, "M_q": FLAGS.M_q,
             "eval_size": FLAGS.eval_size, "plot_obs": obs0, "T": CONFIG.T,
             "final_actor_loss": float(np.asarray(actor_loss)[-100:].mean()), **result,
             "seconds": round(time.time() - start, 1), "command": " ".join(["python"] + sys.argv)}
  with open(os.path.join(FLAGS.out, "score_alignment.json"), "w") as f:
    json.dump(summary, f, indent=1)
  print(f"wrote {FLAGS.out}/score_alignment.png and .json ({summary['seconds']} s)")


if __name__ == "__main__":
  app.run(main)
