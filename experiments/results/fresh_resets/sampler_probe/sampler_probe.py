"""Where the sampler puts its draws when the noise model equals its Q-score target exactly.

A 1-D quadratic critic Q(a) = -k/2 (a - a*)^2. The target is -M_q grad_a Q / s, with s the
mean |grad_a Q| over noised replay actions (score_scale 'running', the presets') or s = 1
('fixed', the paper's). The replay holds the policy's own draws plus the exploration
noise N(0, 0.1^2), iterated 8 times toward a fixed point (the running scale follows the
policy's own spread). Prints, over 8,000 draws, the mean draw against a*, its std, and the
share within 0.01 of a bound.

  python experiments/results/fresh_resets/sampler_probe/sampler_probe.py   # about 2 min on 2 cores
"""
import jax
import jax.numpy as jnp
import numpy as np

from qsm_jax.diffusion import ddpm_sample, make_schedule, noise_actions

N = 8000


def draws(T, beta, M_q, k, a_star, temperature, scale_free=True, key=jax.random.PRNGKey(0),
          ascent=False):
  """The draws' summary; ``ascent``: the ascent sampler's step (ascent_sampler/ascent_probe.py)."""
  schedule = make_schedule(T, beta)
  replay = jax.random.uniform(key, (N, 1), minval=-1, maxval=1)
  for _ in range(8):
    key, k_t, k_eps, k_draw, k_explore = jax.random.split(key, 5)
    t = jax.random.randint(k_t, (N,), 0, T)
    a_t = noise_actions(schedule, replay, t, jax.random.normal(k_eps, replay.shape))
    s = float(jnp.mean(jnp.abs(k * (a_t - a_star)))) if scale_free else 1.0
    eps_fn = lambda obs, x, t_in, s=s: M_q * k * (x - a_star) / s  # = -M_q grad_a Q / s
    a = ddpm_sample(schedule, eps_fn, jnp.zeros((N, 1)), 1, k_draw, temperature=temperature,
                    ascent=ascent)
    replay = jnp.clip(a + 0.1 * jax.random.normal(k_explore, a.shape), -1, 1)
  a = np.asarray(a)[:, 0]
  return f"{a.mean():+.3f} ± {a.std():.3f} ({np.mean(np.abs(a) > 0.99):.0%} at a bound)"


def main():
  print("1. The critic's sharpness (T=5 vp, M_q 1, a* = 0.3, temperature 1): draws for k = 1 / 10 / 100")
  for scale_free in (True, False):
    name = "running (scale-free)" if scale_free else "fixed (the paper's)"
    cells = [draws(5, "vp", 1.0, k, 0.3, 1.0, scale_free) for k in (1, 10, 100)]
    print(f"  {name:<21} " + " | ".join(cells))
  for temperature, what in ((0.0, "the mode the deterministic sampler finds"),
                            (1.0, "the draws at temperature 1, the exploring policy's width")):
    print(f"{2 if temperature == 0 else 3}. {what} (running target), a* = 0.3 / 0.7")
    for T, beta in ((5, "vp"), (10, "vp"), (20, "cosine")):
      for M_q in (1.0, 2.0, 3.0, 4.0):
        cells = [draws(T, beta, M_q, 1.0, a_star, temperature) for a_star in (0.3, 0.7)]
        print(f"  T={T:<2} {beta:<6} M_q {M_q:<3} " + " | ".join(cells), flush=True)


if __name__ == "__main__":
  main()
