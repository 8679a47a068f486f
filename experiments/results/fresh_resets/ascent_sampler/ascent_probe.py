"""The paper's DDPM step against the ascent step (QSMConfig.ascent_sampler) on a quadratic critic.

sampler_probe.py's probe (its `draws`, imported): a 1-D Q(a) = -k/2 (a - a*)^2, a noise
model equal to QSM's running target -M_q grad_a Q / s (s: the mean |grad_a Q| over noised
replay actions), the replay holding the policy's own draws plus N(0, 0.1^2), iterated 8
times toward a fixed point.
Prints, over 8,000 draws (T=5 vp), the mean draw against a* = 0.3 / 0.7, its std, and the
share within 0.01 of a bound, for both steps, at sampler temperatures 0 (the
deterministic draw), 0.25, 0.5 and 1 and M_q 1 and 2.

  python experiments/results/fresh_resets/ascent_sampler/ascent_probe.py   # about 2 min on 2 cores
"""
import os
import sys

sys.path.insert(0, os.path.join(os.path.dirname(os.path.abspath(__file__)), "..", "sampler_probe"))
from sampler_probe import draws  # noqa: E402  (the same replay loop, with the ascent step)


def main():
  print("T=5 vp, running target; cells: a* = 0.3 | a* = 0.7")
  for temperature in (0.0, 0.25, 0.5, 1.0):
    for M_q in (1.0, 2.0):
      for ascent in (False, True):
        name = "ascent" if ascent else "DDPM  "
        cells = [draws(5, "vp", M_q, 1.0, a_star, temperature, ascent=ascent)
                 for a_star in (0.3, 0.7)]
        print(f"  temperature {temperature:<4} M_q {M_q:<3} {name} " + " | ".join(cells),
              flush=True)


if __name__ == "__main__":
  main()
