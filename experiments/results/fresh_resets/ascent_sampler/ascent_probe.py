"""The paper's DDPM step against the ascent step (QSMConfig.ascent_sampler) on a quadratic critic.

As sampler_probe.py: a 1-D Q(a) = -k/2 (a - a*)^2, a noise model equal to QSM's running
target -M_q grad_a Q / s (s: the mean |grad_a Q| over noised replay actions), the replay
holding the policy's own draws plus N(0, 0.1^2), iterated 8 times toward a fixed point.
Prints, over 8,000 draws (T=5 vp), the mean draw against a* = 0.3 / 0.7, its std, and the
share within 0.01 of a bound, for both steps, at sampler temperatures 0 (the
deterministic draw), 0.25, 0.5 and 1 and M_q 1 and 2.

  python experiments/results/fresh_resets/ascent_sampler/ascent_probe.py   # about 2 min on 2 cores
"""
import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.diffusion import ddpm_sample, make_schedule, noise_actions

N = 8000


def draws(M_q, a_star, temperature, ascent, T=5, beta="vp", key=jax.random.PRNGKey(0)):
  schedule = make_schedule(T, beta)
  replay = jax.random.uniform(key, (N, 1), minval=-1, maxval=1)
  for _ in range(8):
    key, k_t, k_eps, k_draw, k_explore = jax.random.split(key, 5)
    t = jax.random.randint(k_t, (N,), 0, T)
    a_t = noise_actions(schedule, replay, t, jax.random.normal(k_eps, replay.shape))
    s = float(jnp.mean(jnp.abs(a_t - a_star)))  # k = 1: the running target is free of k
    eps_fn = lambda obs, x, t_in, s=s: M_q * (x - a_star) / s  # = -M_q grad_a Q / s
    a = ddpm_sample(schedule, eps_fn, jnp.zeros((N, 1)), 1, k_draw, temperature=temperature,
                    ascent=ascent)
    replay = jnp.clip(a + 0.1 * jax.random.normal(k_explore, a.shape), -1, 1)
  a = np.asarray(a)[:, 0]
  return f"{a.mean():+.3f} ± {a.std():.3f} ({np.mean(np.abs(a) > 0.99):.0%} at a bound)"


def main():
  print("T=5 vp, running target; cells: a* = 0.3 | a* = 0.7")
  for temperature in (0.0, 0.25, 0.5, 1.0):
    for M_q in (1.0, 2.0):
      for ascent in (False, True):
        name = "ascent" if ascent else "DDPM  "
        cells = [draws(M_q, a_star, temperature, ascent) for a_star in (0.3, 0.7)]
        print(f"  temperature {temperature:<4} M_q {M_q:<3} {name} " + " | ".join(cells),
              flush=True)


if __name__ == "__main__":
  main()
