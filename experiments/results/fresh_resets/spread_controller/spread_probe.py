"""How the exploring policy's width (the spread controller's signal) moves with M_q, per sampler.

The sampler_probe's setting (../sampler_probe/sampler_probe.py): a 1-D quadratic critic
Q(a) = -(a - a*)^2 / 2, a noise model equal to its target -M_q grad_a Q / s (s the mean
|grad_a Q| over noised replay actions: score_scale 'running'), times sigma_t where
weighted (score_sigma_weight), the replay the policy's own draws plus N(0, 0.1^2),
iterated 8 times. Prints, over 4,000 draws at temperature 1: mean ± std, the spread
mean |a - a_0| against the deterministic draw a_0 from the same start (what
QSMConfig.spread_target holds), and the share at a bound; for a* = 0.3 | 0.7.

  python experiments/results/fresh_resets/spread_controller/spread_probe.py   # about 3 min on 2 cores
"""
import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.diffusion import ddpm_sample, make_schedule, noise_actions

N = 4000


def draws(T, beta, M_q, a_star, weighted, key=jax.random.PRNGKey(0)):
  schedule = make_schedule(T, beta)
  sigma = jnp.sqrt(1 - jnp.asarray(schedule.alpha_bars))
  replay = jax.random.uniform(key, (N, 1), minval=-1, maxval=1)
  for _ in range(8):
    key, k_t, k_eps, k_draw, k_explore = jax.random.split(key, 5)
    t = jax.random.randint(k_t, (N,), 0, T)
    a_t = noise_actions(schedule, replay, t, jax.random.normal(k_eps, replay.shape))
    s = float(jnp.mean(jnp.abs(a_t - a_star)))

    def eps_fn(obs, x, t_in, s=s):
      weight = sigma[t_in[:, 0].astype(jnp.int32)][:, None] if weighted else 1.0
      return weight * M_q * (x - a_star) / s
    a = ddpm_sample(schedule, eps_fn, jnp.zeros((N, 1)), 1, k_draw, temperature=1.0)
    replay = jnp.clip(a + 0.1 * jax.random.normal(k_explore, a.shape), -1, 1)
  a0 = ddpm_sample(schedule, eps_fn, jnp.zeros((N, 1)), 1, k_draw, temperature=0.0)
  a, a0 = np.asarray(a)[:, 0], np.asarray(a0)[:, 0]
  return (f"{a.mean():+.3f}±{a.std():.3f} |a-a0| {np.mean(np.abs(a - a0)):.3f} "
          f"bnd {np.mean(np.abs(a) > 0.99):.0%}")


def main():
  for weighted in (False, True):
    for T, beta in ((10, "cosine"), (20, "cosine"), (10, "vp")):
      for M_q in (1., 2., 4., 8., 16., 32.):
        print(f"w={int(weighted)} T={T} {beta} M_q {M_q:<4}", draws(T, beta, M_q, 0.3, weighted),
              "|", draws(T, beta, M_q, 0.7, weighted), flush=True)


if __name__ == "__main__":
  main()
